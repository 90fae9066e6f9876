"""Calibration inside the solver: pupil recovery and per-frame brightness, alternating with the
factor updates of :func:`~ptycho_app.solvers.factorized.iterate`.

The driver calls one object behind a small protocol:

- ``start(b, loss)`` once, with the normalized measurements and the bound loss: the operator's
  pupils are reset to the model's (so every solve starts from the same model);
- ``update(k, active)`` after the evaluation of iteration ``k`` (whose pass recorded the pupil
  gradient and per-frame sums): from ``k >= options.calibration_delay`` on, one pupil step and one
  brightness fit for the problems still active, then the new per-frame pupils go to the operator;
- ``calibration()``: one :class:`~ptycho_app.calibration.Calibration` per problem.

**Pupil step** (``--pupil recover``), per problem: with ``g_l = d loss / d conj(P_l)`` and ``E_l`` the
object's energy behind each pupil pixel (both from the fused pass, no extra FFT), pulled back to the
common pupil through the per-frame composition (:func:`~.pupil.pull_back`),

    P <- P - step * 2 G / (M^2 f ((1 - a) E + a max E)),   G = sum_l sqrt(c_l) g_l,  E = sum_l c_l E_l,

an rPIE-like step (``a = pupil_alpha``) in Gauss-Newton units: ``step = 1`` is the full Gauss-Newton
step of the amplitude loss (``f = 1``; Poisson ``f = 4``; intensity ``f = 4 * mean b``).  With
``pupil_amplitude`` ``fixed`` (the default) only the phase moves: each pixel keeps the model's
amplitude and turns by the step's phase change, at most :data:`MAX_PHASE_STEP`.  Then
:func:`~.pupil.fix_gauges`: zero outside the NA, the starting norm, no piston, no tip/tilt.

**Brightness** (``--calibrate brightness``): per frame, the closed-form scalar ``s_l`` that best
rescales the current prediction ``q_l`` (which includes the current ``c_l``) to the data:
intensity loss ``<q_l, b_l> / <q_l, q_l>``; amplitude loss ``(<sqrt q_l, sqrt b_l> / <q_l, 1>)^2``
(the minimizer of ``||sqrt(s q_l) - sqrt(b_l)||^2``); Poisson ``<b_l, 1> / <q_l, 1>`` (the maximum
likelihood of ``s q_l``).  ``c_l <- c_l s_l``, then divided by its mean over the bright-field frames
(the gauge: the object's scale takes the rest).
"""

from __future__ import annotations

import numpy as np
import torch

from .model import Calibration
from .pupil import compose_frame_pupils, fix_gauges, frame_model
from .zernike import DEFAULT_TERMS, pupil_coordinates, pupil_radius, unwrapped_phase, zernike_basis

#: The brightness moves this fraction of the way (in log) to its closed-form fit each iteration: the
#: factors' step corrects the same mismatch at the same time, and full steps of both overshoot.
BRIGHTNESS_RELAXATION = 0.5

#: Largest change of the pupil's phase at one pixel in one step (radians) with ``pupil_amplitude``
#: ``fixed``: a trust region (the Gauss-Newton step of a pixel behind little object energy can be
#: large; one such step made the loss jump on the blood smear).
MAX_PHASE_STEP = 0.2

#: Per-loss Gauss-Newton factor of the pupil step, relative to the amplitude loss (intensity: times
#: the mean measurement as well).
PUPIL_CURVATURE = {"amplitude": 1.0, "poisson": 4.0, "intensity": 4.0}


def calibration_step(operator, options) -> "CalibrationStep | None":
    """The calibration the options ask for (None: nothing to recover).

    Raises
    ------
    ValueError
        An operator without pupils (or, for ``--calibrate geometry`` / ``all``, without LED positions).
    """
    pupil_mode = getattr(options, "pupil", "fixed")
    calibrate = getattr(options, "calibrate", "none")
    if pupil_mode == "fixed" and calibrate == "none":
        return None
    if calibrate in ("geometry", "all"):  # the LED-array model, around the pupil / brightness step
        from .geometry import geometry_step

        other = CalibrationStep(operator, options) if pupil_mode == "recover" or calibrate == "all" else None
        return geometry_step(operator, options, other)
    if not hasattr(operator, "set_pupils"):
        raise ValueError(f"--pupil recover and --calibrate need an FP operator; {type(operator).__name__} has no "
                         "pupil (use --pupil fixed --calibrate none)")
    return CalibrationStep(operator, options)


class CalibrationStep:
    """Pupil recovery and brightness calibration of a batch (see the module docstring).

    Parameters
    ----------
    operator : LiftedFP
    options : SolverOptions
        ``pupil``, ``calibrate``, ``calibration_delay``, ``pupil_step``, ``pupil_alpha``, ``loss``.
    """

    def __init__(self, operator, options):
        self.operator = operator
        self.options = options
        self.recover_pupil = options.pupil == "recover"
        self.fit_brightness = options.calibrate in ("brightness", "all")
        self.delay = options.calibration_delay

    def start(self, b: torch.Tensor, loss):
        """Reset the operator to the model's pupils and take the batch's measurements.

        Parameters
        ----------
        b : (B, L, M, M) real
            Normalized measurements (as the loss is bound to).
        loss : Loss
            The bound loss.
        """
        operator = self.operator
        acquisition = operator.acquisition
        model = operator.model_pupils
        start = model if model.dim() == 2 else torch.as_tensor(acquisition.pupil_function())
        batch, L = b.shape[0], acquisition.n_frames
        dtype, device = operator.dtype, operator.device
        self.support = start.to(device) != 0  # (M, M): the NA disc
        self.pupil = start.to(device=device, dtype=dtype).expand(batch, -1, -1).clone()  # (B, M, M)
        self.norm = torch.linalg.vector_norm(self.pupil.flatten(1), dim=1).real
        self.brightness = torch.ones(batch, L, dtype=operator.real_dtype, device=device)
        self.bright_field = torch.as_tensor(acquisition.bright_field, device=device)
        if not bool(self.bright_field.any()):
            self.bright_field = torch.ones_like(self.bright_field)
        # the exact sub-pixel model of every frame (moved windows: GeometryStep sets it again)
        self.model = frame_model(acquisition, acquisition.window_remainders) if acquisition.subpixel else None
        self.curvature = torch.full((batch,), PUPIL_CURVATURE[loss.name], dtype=operator.real_dtype, device=device)
        if loss.name == "intensity":
            self.curvature = self.curvature * b.flatten(1).mean(dim=1)
        # the first pupil step unwraps the model's phase; later ones fit the plane of each step's change
        self._gauges_fixed = False
        self._layout_key = self._layout = None
        # the same for every problem at the start: (L, M, M), which the preconditioner's set-up takes
        self.operator.set_pupils(self._frame_pupils()[0])
        self._record(self.delay <= 0)

    def _record(self, on: bool):
        self.operator.record_pupil_terms = on and self.recover_pupil
        self.operator.record_frame_sums = on and self.fit_brightness

    def _frame_pupils(self) -> torch.Tensor:
        L = self.operator.acquisition.n_frames
        brightness = self.brightness if self.fit_brightness else None
        return compose_frame_pupils(self.pupil, brightness, self.model, n_frames=L)

    def _support_layout(self):
        """The operator's support as window positions (K,), and the sub-pixel model there: ``ratio``,
        ``edge`` (L, K) complex and ``|ratio|^2`` (L, K) real, or Nones (cached while the operator's
        support and the model stay the same objects)."""
        operator = self.operator
        key = (operator._support, self.model)
        if self._layout_key is None or any(a is not b for a, b in zip(self._layout_key, key, strict=True)):
            positions = operator.window_positions()
            ratio = edge = power = None
            if self.model is not None:
                ratio, edge = (part.reshape(len(part), -1)[:, positions.cpu()].to(device=operator.device,
                                                                                   dtype=operator.dtype)
                               for part in self.model)
                power = ratio.abs().square()
            self._layout_key, self._layout = key, (positions, ratio, edge, power)
        return self._layout

    def _apply(self):
        operator = self.operator
        if not hasattr(operator, "set_support_pupils"):
            operator.set_pupils(self._frame_pupils())
            return
        # compose_frame_pupils on the support only: sqrt(c_l) (ratio_l P + edge_l)
        positions, ratio, edge, _ = self._support_layout()
        frames = self.pupil.flatten(1)[:, positions][:, None]  # (B, 1, K)
        if ratio is not None:
            frames = frames * ratio + edge
        if self.fit_brightness:
            frames = frames * self.brightness.clamp_min(0).sqrt().to(frames.dtype)[..., None]
        operator.set_support_pupils(frames)  # (B, L, K), or (B, 1, K): one pupil for all frames

    def update(self, k: int, active: torch.Tensor | None = None):
        """After the evaluation of iteration ``k``: one calibration step (from the delay on).

        Parameters
        ----------
        k : int
        active : (B,) bool, optional
            Problems still iterating; the others keep their calibration.

        Returns
        -------
        (B, n, 1) complex or None
            The factor the object's spectrum (the rows of ``U``) takes so that the gauges fixed in
            the pupil (tip/tilt) leave the loss unchanged
            (the driver multiplies its factors by it after the step); None when nothing changed.
        """
        operator = self.operator
        if k < self.delay:
            self._record(k + 1 >= self.delay)
            return None
        gauge = None
        changed = False
        if self.recover_pupil and operator.pupil_gradient is not None:
            pupil, gauge = self._pupil_step()
            if active is not None:
                pupil = torch.where(active[:, None, None], pupil, self.pupil)
                gauge = torch.where(active[:, None], gauge, torch.ones_like(gauge))
            self.pupil, changed = pupil, True
        if self.fit_brightness and operator.frame_sums is not None:
            # (the object does not take the brightness gauge's scale: with momentum, that feedback
            # made UDU oscillate and diverge; the factors adapt to it within a few steps)
            brightness = self._brightness_fit(operator.frame_sums)
            if active is not None:
                brightness = torch.where(active[:, None], brightness, self.brightness)
            self.brightness, changed = brightness, True
        if changed:
            self._apply()
        return None if gauge is None else gauge[:, :, None]

    def _pupil_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stepped pupil (B, M, M) with its gauges fixed, and the object's tilt factor (B, n)."""
        operator = self.operator
        M = operator.linear.frame_size
        batch = len(self.pupil)
        # pull_back on the support: G = sum_l sqrt(c_l) conj(ratio_l) g_l, E = sum_l c_l |ratio_l|^2 E_l
        positions, ratio, _, power = self._support_layout()
        gradient_frames, energy_frames = operator.pupil_gradient, operator.pupil_energy  # (B, L, K)
        if ratio is not None:
            gradient_frames = gradient_frames * ratio.conj()
            energy_frames = energy_frames * power.to(energy_frames.dtype)
        if self.fit_brightness:
            c = self.brightness.clamp_min(0)
            gradient_on = (c.sqrt().to(gradient_frames.dtype)[:, None, :] @ gradient_frames)[:, 0]
            energy_on = (c.to(energy_frames.dtype)[:, None, :] @ energy_frames)[:, 0]
        else:
            gradient_on, energy_on = gradient_frames.sum(dim=1), energy_frames.sum(dim=1)
        alpha = self.options.pupil_alpha
        peak = energy_on.amax(dim=1, keepdim=True)  # (the energy is zero off the support)
        denominator = (1 - alpha) * energy_on + alpha * peak
        denominator = denominator * (M**2 * self.curvature)[:, None]
        tiny = torch.finfo(denominator.dtype).tiny
        step = 2 * self.options.pupil_step * gradient_on / denominator.clamp_min(tiny).to(gradient_on.dtype)
        stepped = self.pupil.flatten(1).clone()
        stepped[:, positions] -= step  # (off the support the gradient, hence the step, is zero)
        stepped = stepped.reshape(batch, M, M)
        if self.options.pupil_amplitude == "fixed":  # the aberration phase only, at most MAX_PHASE_STEP a step
            change = torch.angle(stepped * self.pupil.conj()).clamp(-MAX_PHASE_STEP, MAX_PHASE_STEP)
            stepped = self.pupil * torch.polar(torch.ones_like(change), change)
        pupil, tilt, _ = fix_gauges(stepped, self.support, self.norm,
                                    reference=self.pupil if self._gauges_fixed else None)
        self._gauges_fixed = True
        # the object's spectrum takes the tilt gauge: exp(+i tilt . k) keeps the loss unchanged
        # (a separable ramp: the outer product of one exp per axis)
        N = operator.linear.grid_size
        k = torch.arange(N, device=pupil.device, dtype=torch.float64) - N // 2
        tilt = tilt.to(pupil.device)
        rows = torch.polar(torch.ones_like(k), tilt[:, 0, None] * k).to(pupil.dtype)  # (B, N)
        cols = torch.polar(torch.ones_like(k), tilt[:, 1, None] * k).to(pupil.dtype)
        # (the pupil's scale gauge is not moved onto the object: UDU's ball would clip it every step)
        gauge = (rows[:, :, None] * cols[:, None, :]).reshape(len(pupil), N * N)
        return pupil, gauge

    def _brightness_fit(self, sums) -> torch.Tensor:
        tiny = torch.finfo(sums["q"].dtype).tiny
        name = self.options.loss
        if name == "intensity":
            scale = sums["qb"] / sums["qq"].clamp_min(tiny)
        elif name == "amplitude":
            scale = (sums["rqb"] / sums["q"].clamp_min(tiny)).square()
        else:  # poisson
            scale = sums["b"] / sums["q"].clamp_min(tiny)
        scale = torch.where(sums["q"] > 0, scale, torch.ones_like(scale))
        brightness = (self.brightness * scale**BRIGHTNESS_RELAXATION).clamp_min(tiny)
        return brightness / brightness[:, self.bright_field].mean(dim=1, keepdim=True)

    def calibration(self) -> list[Calibration]:
        """One :class:`Calibration` per problem: the common pupil (M, M) complex128, its Zernike
        coefficients (radians, Noll 1 .. 15), the brightness (L,) (when fitted)."""
        acquisition = self.operator.acquisition
        radius = pupil_radius(acquisition)
        attrs = {"pupil_mode": self.options.pupil, "calibrate": self.options.calibrate}
        out = []
        for k in range(self.pupil.shape[0]):
            pupil = self.pupil[k].detach().cpu().numpy().astype(np.complex128)
            zernike = _fit_zernike(pupil, radius, DEFAULT_TERMS) if self.recover_pupil else None
            brightness = (self.brightness[k].detach().cpu().numpy().astype(np.float64)
                          if self.fit_brightness else None)
            out.append(Calibration(pupil=pupil if self.recover_pupil else None, zernike=zernike,
                                   brightness=brightness, attrs=dict(attrs)))
        return out


def _fit_zernike(pupil: np.ndarray, radius: float, n_terms: int) -> np.ndarray:
    """:func:`~.zernike.fit_zernike` (same support, unwrapping and least squares: LAPACK's gelsd) with
    the least squares in torch.  numpy's OpenBLAS, woken at every yield, leaves its threads spinning
    for about 0.1 s after the call, against the solver's threads: on a 2-core machine that slowed the
    following iterations of ``--pupil recover`` by 1 to 2 ms each on average (FP-256)."""
    basis = zernike_basis(n_terms, pupil.shape[-1], radius)
    rho, _ = pupil_coordinates(pupil.shape[-1], radius)
    support = (np.abs(pupil) > 0) & (rho <= 1 + 1e-12)
    phase = unwrapped_phase(pupil, support)
    design = torch.as_tensor(np.ascontiguousarray(basis[:, support].T))
    return torch.linalg.lstsq(design, torch.as_tensor(phase[support])[:, None], driver="gelsd").solution[:, 0].numpy()
