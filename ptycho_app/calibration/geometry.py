"""LED geometry calibration (``--calibrate geometry`` / ``all``) inside the solver.

The global LED-array model ``(dy, dx, rotation, distance)`` (:mod:`.leds`) is refined alternating with
the factor updates of :func:`~ptycho_app.solvers.factorized.iterate`, from ``calibration_delay`` on,
every :data:`GEOMETRY_EVERY` iterations, by a search per frame and a Gauss-Newton fit of the model:

1. with the current factors, every frame's window is tried at the model's exact shift ``t_l`` and at
   ``t_l + h (i, j)``, ``i, j in {-1, 0, 1}`` (:data:`SEARCH_STEP` ``h`` pixels): 9 passes of the fused
   evaluation, all frames at once (each frame's loss depends on its own window only), the per-frame
   losses from the pass's per-frame sums;
2. a parabola through the three values along each axis gives the frame's best shift ``t_l*``;
3. one weighted Gauss-Newton step of the 4 parameters on ``sum_l w_l |t_l(p) - t_l*|^2``
   (Jacobian :func:`.leds.shift_jacobian`, ``w_l`` the parabolas' curvatures: dark frames count less).

Why not a plain gradient step with a line search on the loss: with the object held fixed, a common
move of all LEDs is nearly a gauge (a phase ramp on the object), and an object recovered under a wrong
geometry is consistent with it; the loss then rises along every direction of the 4 parameters and the
search stalls (measured on FP-256: rotation stuck at 1.8 of 2 degrees).  Frame by frame, the dark-field
frames still see where their windows fit best relative to the bright-field spectrum, which is what
moves the model out of that valley (the approach of position-correcting FPM, Sun et al. 2016, with
the global array model of Eckert et al. 2018 on top).

Each tried geometry crops at its own integer windows ``round(t_l)`` (:meth:`LiftedFP.move_windows`:
the operator and the factors stay) with the exact pupils ``P(k - delta_l)`` of the remainders
(``Acquisition.pupil_function(shift=...)``; a recovered pupil is shifted bilinearly); the operator's
support is widened by a pixel so that shifted discs are not cut.

Per-frame refinement (``--geometry-model array+frames``): once the model has settled (the search step
at :data:`MIN_SEARCH_STEP`), each frame's window sits at the model's shift plus a correction ``c_l`` of
its own; the search is made about ``t_l + c_l``, the model is fitted to the frames' optima as before, and
each frame moves :data:`FRAME_DAMPING` of the way to its optimum, ``|c_l| <=`` :data:`MAX_CORRECTION`
pixels per axis.  The calibration's direction sines are then the frames' (``led_model`` the array's).

A batch shares one operator and so one set of windows: geometry calibration takes one problem at a
time (a batch of more than one is refused).
"""

from __future__ import annotations

import numpy as np
import torch

from .leds import led_model, led_sines, nominal_parameters, require_leds, shift_jacobian
from .leds import window_shifts as led_window_shifts
from .model import Calibration
from .pupil import frame_model

#: Iterations between two geometry steps.
GEOMETRY_EVERY = 5
#: The per-frame search's first and smallest step ``h``, pixels of the object spectrum: ``h`` follows
#: the model's last move (four times its largest window move), within these bounds.
SEARCH_STEP, MIN_SEARCH_STEP = 0.5, 0.125
#: Per-frame refinement: the fraction of the way to its optimum a frame moves per step, and the largest
#: correction (pixels per axis) a frame may take from the model's shift.
FRAME_DAMPING, MAX_CORRECTION = 0.5, 1.0


class GeometryStep:
    """Refines the LED-array model of one problem (see the module docstring).

    Parameters
    ----------
    operator : LiftedFP
    options : SolverOptions
        ``calibrate``, ``calibration_delay``, ``pupil``.
    other : CalibrationStep, optional
        The pupil / brightness step running alongside (``--calibrate all``, ``--pupil recover``): the
        frames' pupils are its pupil and brightness moved by this step's remainders.

    Attributes
    ----------
    parameters : (4,) float64
        The current fit ``(dy, dx, rotation, distance)`` (metres, degrees, metres).
    corrections : (L, 2) float64
        Each frame's window shift minus the model's, pixels (zero unless ``geometry_model`` is
        ``array+frames``).
    """

    def __init__(self, operator, options, other=None):
        if not hasattr(operator, "move_windows"):
            raise ValueError(f"--calibrate {options.calibrate} needs an FP operator; {type(operator).__name__} has "
                             "no LED geometry (use --calibrate none)")
        self.operator, self.options, self.other = operator, options, other
        self.acquisition = operator.acquisition
        self.grid, _ = require_leds(self.acquisition)
        self.delay = options.calibration_delay
        self.parameters = nominal_parameters(self.acquisition)
        self.per_frame = getattr(options, "geometry_model", "array") == "array+frames"
        self.corrections = np.zeros((len(self.grid), 2))
        self.refining = False
        self.steps_taken = 0

    # ---- protocol ---------------------------------------------------------------------------
    def start(self, b: torch.Tensor, loss):
        """Nominal geometry, a support one pixel wider than the NA, the model's pupils.

        Parameters
        ----------
        b : (1, L, M, M) real
            Normalized measurements (one problem).
        loss : Loss
            Bound to ``b``.
        """
        if b.shape[0] != 1:
            raise ValueError(f"--calibrate {self.options.calibrate} refines one LED geometry per solve: reconstruct "
                             f"these {b.shape[0]} inputs one at a time (--batch-size 1)")
        if self.other is not None:
            self.other.start(b, loss)
        self.b, self.loss = b, loss
        acquisition = self.acquisition
        M = acquisition.frame_size
        f = (np.arange(M) - M // 2) * acquisition.frequency_step
        radius = acquisition.na / acquisition.wavelength + acquisition.frequency_step  # one pixel wider
        self.operator.widen_support(np.hypot(f[:, None], f[None, :]) <= radius)
        self.parameters = nominal_parameters(acquisition)
        self.corrections = np.zeros((len(self.grid), 2))
        self.refining = False
        self.steps_taken = 0
        self.search_step = SEARCH_STEP
        self._apply(self.parameters, per_problem=False)  # (L, M, M): what the preconditioner's set-up takes

    def update(self, k: int, active: torch.Tensor | None = None):
        """After the pass of iteration ``k``: the other step's update (once the geometry has settled:
        its search step at :data:`MIN_SEARCH_STEP`), then (every :data:`GEOMETRY_EVERY` iterations
        from the delay on) one geometry step.

        Returns
        -------
        (1, n, 1) complex or None
            The other step's gauge factor for the object (the geometry step moves none).
        """
        # the pupil / brightness steps wait until the geometry has settled: a misplaced window's frame
        # would otherwise be explained by its brightness (and the pupil), which misleads the search
        settled = self._settled()
        gauge = None
        if self.other is not None and (k < self.delay or settled):
            gauge = self.other.update(k, active)
        due = k >= self.delay and (k - self.delay) % GEOMETRY_EVERY == 0
        stepped = due and (active is None or bool(active[0])) and self.operator.last_point is not None
        if stepped:
            self._search_step()
        if gauge is not None or stepped:
            self._apply(self.parameters)
        return gauge

    def calibration(self) -> list[Calibration]:
        """The other step's calibration with ``direction_sines`` and ``led_model`` filled in."""
        out = self.other.calibration() if self.other is not None else [Calibration()]
        sines = led_sines(self.grid, self.parameters).numpy()
        if self.per_frame:  # shift = sines / (wavelength dk)
            sines = sines + self.corrections * (self.acquisition.wavelength * self.acquisition.frequency_step)
        for one in out:
            one.direction_sines = sines.copy()
            one.led_model = led_model(self.parameters)
            one.attrs = {"pupil_mode": self.options.pupil, **one.attrs, "calibrate": self.options.calibrate,
                         "geometry_steps": self.steps_taken}
            if self.per_frame:
                one.attrs["led_per_frame"] = True
        return out

    # ---- internals --------------------------------------------------------------------------
    def _settled(self) -> bool:
        """The model has taken a step and its search step is at its minimum."""
        return self.steps_taken > 0 and self.search_step <= MIN_SEARCH_STEP

    def frame_shifts(self, parameters=None) -> np.ndarray:
        """(L, 2) float64: the frames' window shifts, the model's (at ``parameters``, default the fit's)
        plus the per-frame corrections."""
        parameters = self.parameters if parameters is None else parameters
        return led_window_shifts(self.acquisition, parameters) + self.corrections

    def _frame_pupils(self, delta, per_problem=True) -> torch.Tensor:
        """Frames' pupils for remainders ``delta`` (L, 2): (L, M, M) or (1, L, M, M)."""
        other, acquisition = self.other, self.acquisition
        if other is not None:  # its pupil and brightness on the exact model of these remainders
            other.model = frame_model(acquisition, delta)
            pupils = other._frame_pupils()  # (B, L, M, M)
        else:
            pupils = torch.as_tensor(acquisition.pupil_function(shift=delta))  # exact disc and defocus
        if not per_problem and pupils.dim() == 4:
            pupils = pupils[0]
        return pupils

    def _use_shifts(self, shifts, per_problem=True) -> bool:
        """Windows at ``round(shifts)``, pupils moved by the rest; False when a window would leave the
        spectrum (nothing changed then)."""
        whole = np.round(shifts).astype(np.int64)
        try:
            self.operator.move_windows(self.acquisition.grid_size // 2 + whole)
        except ValueError:
            return False
        delta = shifts - whole
        self.operator.set_pupils(self._frame_pupils(delta, per_problem))
        return True

    def _apply(self, parameters, per_problem=True):
        if not self._use_shifts(self.frame_shifts(parameters), per_problem):
            raise ValueError("--calibrate geometry: the fitted LED array moves illumination windows out of the "
                             "object spectrum (increase --upsample)")

    def frame_losses(self, shifts, U, d) -> np.ndarray:
        """(L,) per-frame losses (up to per-frame constants) with the windows at ``shifts`` (L, 2)
        pixels; inf for all when a window would leave the spectrum."""
        operator = self.operator
        if not self._use_shifts(shifts):
            return np.full(len(shifts), np.inf)
        recording = operator.record_pupil_terms, operator.record_frame_sums
        operator.record_pupil_terms, operator.record_frame_sums = False, True
        operator.evaluate(U, d, self.b, self.loss, residual=False)
        operator.record_pupil_terms, operator.record_frame_sums = recording
        sums = {key: value[0].detach().cpu().numpy().astype(np.float64) for key, value in operator.frame_sums.items()}
        if self.loss.name == "intensity":
            return 0.5 * sums["qq"] - sums["qb"]
        return 0.5 * (sums["q"] + sums["b"]) - sums["rqb"]  # amplitude (and Poisson's stand-in)

    def _search_step(self):
        """Each frame's best window shift about the model's, then one Gauss-Newton step of the model."""
        U, d = self.operator.last_point
        # frames move on their own once the model has settled (and go on doing so)
        self.refining = refine = self.per_frame and (self.refining or self._settled())
        shifts = self.frame_shifts()
        h = self.search_step
        grid = np.empty((len(shifts), 3, 3))
        for i in range(3):
            for j in range(3):
                grid[:, i, j] = self.frame_losses(shifts + h * np.array([i - 1, j - 1]), U, d)
        best = np.zeros_like(shifts)
        curvatures = []
        for axis, line in enumerate((grid[:, :, 1], grid[:, 1, :])):  # parabolas through the centre
            curvature = line[:, 0] - 2 * line[:, 1] + line[:, 2]
            slope = (line[:, 2] - line[:, 0]) / 2
            convex = np.isfinite(curvature) & (curvature > 0)
            best[:, axis] = np.where(convex, np.clip(-slope / np.where(convex, curvature, 1), -1, 1), 0) * h
            curvatures.append(np.where(convex, curvature, 0))
        weights = np.sqrt(curvatures[0] + curvatures[1])
        jacobian = shift_jacobian(self.acquisition, self.parameters)  # (L, 2, 4)
        weighted = (jacobian * weights[:, None, None]).reshape(-1, 4)
        # the model's target: each frame's optimum, t_l + c_l + best_l
        target = self.corrections + best
        move, *_ = np.linalg.lstsq(weighted, (target * weights[:, None]).reshape(-1), rcond=None)
        if refine:  # each frame part of the way to its optimum; the correction is relative to the moved model
            self.corrections = np.clip(self.corrections + FRAME_DAMPING * best - jacobian @ move,
                                       -MAX_CORRECTION, MAX_CORRECTION)
        self.parameters = self.parameters + move
        self.steps_taken += 1
        largest = float(np.abs(jacobian @ move).max())
        self.search_step = float(np.clip(4 * largest, MIN_SEARCH_STEP, SEARCH_STEP))


def geometry_step(operator, options, other=None) -> GeometryStep:
    """The step of ``--calibrate geometry`` / ``all`` around ``other`` (pupil / brightness, or None)."""
    return GeometryStep(operator, options, other)
