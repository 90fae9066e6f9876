"""Solver options: one dataclass, the single source of defaults, help texts and presets.

Every front end (the CLI's flags, the napari widget's form, the demo, ``sense``) is built from the
field metadata here (``help``, ``choices``), so a default or a help text is written once.

Presets bundle the choices that belong together:

- ``paper``: the papers' algorithms exactly (intensity loss, plain gradient descent from the small
  random start ``U0 = xi * randn / ||randn||_F``, ``D0 = I``); the dataclass defaults.  ``sense`` and
  the published-behaviour tests use it.
- ``fast``: what reconstructs FP data best and fastest (measured in ``benchmarks/study.py``, see
  docs/solvers.md): the default of ``reconstruct``, ``demo`` and the napari widget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..lifting.losses import LOSSES
from ..validation import is_finite_real, is_integer
from .methods import METHODS

PRECONDITIONERS = ("none", "spectral")
MOMENTA = ("none", "nesterov")
STARTS = ("random", "spectral", "frame")
STEP_SCHEDULES = ("constant", "adaptive")
PUPIL_AMPLITUDES = ("fixed", "free")
PUPIL_MODES = ("fixed", "recover")
CALIBRATIONS = ("none", "brightness", "geometry", "all")
GEOMETRY_MODELS = ("array", "array+frames")

#: Default normalized ``U`` steps per (method, loss), for the intensity loss those of the papers'
#: preset.  Intensity-loss steps are in units of ``1 / lambda_max(A^*(b / tau))``; amplitude and
#: Poisson steps in Gauss-Newton units, where 1 is one parallel alternating-projection step with
#: the spectral preconditioner.  UDU's ``U`` curvature grows like ``d`` (about ``1 / radius^2`` at
#: the solution), so its ``U`` step is smaller.  See docs/solvers.md for the sweeps behind them.
DEFAULT_STEP = {
    ("bm", "intensity"): 0.25, ("udu", "intensity"): 0.05,
    ("bm", "amplitude"): 1.0, ("udu", "amplitude"): 0.25,
    ("bm", "poisson"): 1.0, ("udu", "poisson"): 0.25,
}
# the asymmetric methods are BM and UDU on the embedding W = [U; V] (ptycho_app.lifting.asymmetric)
DEFAULT_STEP.update({({"bm": "uv", "udu": "udv"}[m], loss): step for (m, loss), step in list(DEFAULT_STEP.items())})
#: Default normalized ``D`` steps (UDU) per loss.  The amplitude and Poisson ``d`` steps are in
#: Gauss-Newton units: a slow ``d`` keeps ``U`` pressing against its ball while the scale is fitted,
#: and that pressure collapses the surplus columns (0.3 fits faster and leaves lambda_2 / lambda_1
#: near 3e-4 instead of 1e-7 on FP-256; docs/solvers.md).
DEFAULT_STEP_D = {"intensity": 0.3, "amplitude": 0.02, "poisson": 0.02}

#: Largest seed: torch's generators take seeds below 2^64, and problem ``k`` of a batch uses ``seed + k``.
MAX_SEED = 2**63 - 1


def _option(default, help, choices=None):
    """A dataclass field with its help text (and choices) for every front end."""
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


@dataclass
class SolverOptions:
    """Options of the factorized solvers (defaults: the ``paper`` preset).

    Step, ``xi`` and ``radius`` are *normalized*: the solver divides the data by a trace estimate
    ``tau`` (so the normalized ``X`` has trace about 1) and the step by a curvature estimate
    (see :mod:`ptycho_app.solvers.normalization`).  The same defaults therefore work for simulated
    and real data, whatever the photon count or grid size.  Each field's ``help`` metadata is its
    documentation (shown by ``ptycho-app reconstruct --help`` and the napari widget).
    """

    method: str | tuple = _option("udu", "factorization: bm (X = U U^*) or udu (X = U D U^*, ||U||_F <= radius, "
                                  "D >= 0); uv / udv for asymmetric sensing (X = U V^* / U D V^*); a list gives "
                                  "each problem of a batch its own", METHODS)
    rank: int = _option(4, "factor rank r (columns of U)")
    loss: str = _option("intensity", "data fit: intensity (the papers' 1/2||A(X)-b||^2), amplitude "
                        "(1/2||sqrt(A(X))-sqrt(b)||^2, what alternating projection fits) or poisson "
                        "(photon-counting likelihood)", LOSSES)
    precondition: str = _option("none", "spectral: divide the U gradient by sum_l |P_l(k)|^2, the "
                                "curvature of each spectral pixel (FP only), so dark-field frequencies "
                                "move as fast as bright-field ones", PRECONDITIONERS)
    precondition_alpha: float = _option(0.0, "blend of the spectral preconditioner with its maximum, as in "
                                        "rPIE: 1/((1-alpha) m + alpha max m)")
    momentum: str = _option("none", "nesterov: accelerated steps with adaptive restart (restarts when the "
                            "loss rises), once the residual leaves the start plateau", MOMENTA)
    restart_backoff: float = _option(1.0, "with nesterov: multiply a problem's steps by this at each restart (its "
                                     "loss rose: the accelerated step overshot), down to half the initial steps; 1: "
                                     "off. On the blood smear the fast preset's 0.7 ends UDU's restart cycles "
                                     "(docs/solvers.md)")
    init: str = _option("random", "start: random (the papers' U0 = xi randn/||randn||_F, D0 = I), spectral "
                        "(top eigenvector of A^*(b)) or frame (the on-axis frame's field, FP only); the "
                        "last two add small random columns for rank > 1", STARTS)
    step: float | None = _option(None, "normalized U step (unset: the default of the method and loss, "
                                 "DEFAULT_STEP; see docs/solvers.md)")
    step_d: float | None = _option(None, "UDU's normalized D step (unset: 0.3 for the intensity loss, 0.02 for "
                                   "the others)")
    step_schedule: str = _option("constant", "adaptive: halve the step whenever the loss falls by less than "
                                 "1e-3 (relative) over 10 iterations, for noisy data (Zuo, Sun, Chen 2016)",
                                 STEP_SCHEDULES)
    scaled_lambda: float = _option(0.0, "> 0: ScaledGD(lambda) right preconditioner (W^*W + lambda I)^-1 on "
                                   "the U gradient, W = U D^1/2 (a documented variant; 0: off)")
    xi: float = _option(1e-3, "norm of the random start U0 (normalized units); small values give the "
                        "implicit low-rank bias")
    radius: float = _option(0.5, "UDU's bound on ||U||_F (normalized units, trace of X about 1)")
    max_iters: int = _option(6000, "iterations")
    rel_tol: float = _option(0.0, "stop a problem when its loss changes by less than this per iteration "
                             "(0: off)")
    yield_every: int = _option(10, "report (yield) the state every this many iterations")
    seed: int | tuple = _option(0, "random start: problem k uses seed + k (or seed[k])")
    pupil: str = _option("fixed", "recover: also recover the pupil (aberrations) alternating with the object, "
                         "inside the NA, up to its scale, piston and tip/tilt (FP only); fixed: use the "
                         "measurement's", PUPIL_MODES)
    calibrate: str = _option("none", "LED calibration: brightness (a scalar per frame, in closed form), "
                             "geometry (the LED array's shift, rotation and distance; one input per solve), "
                             "all (both)", CALIBRATIONS)
    geometry_model: str = _option("array", "with --calibrate geometry or all: array fits the LED array's shift, "
                                  "rotation and distance; array+frames then also moves each LED on its own (within 1 "
                                  "pixel of the array's position) once the array fit has settled; measured so far "
                                  "it is less accurate than array alone (docs/calibration.md)", GEOMETRY_MODELS)
    calibration_delay: int = _option(100, "iterations before pupil recovery and calibration start")
    pupil_step: float = _option(0.5, "pupil recovery step (1: a full Gauss-Newton step of the amplitude loss)")
    pupil_amplitude: str = _option("fixed", "with --pupil recover: fixed recovers the aberration phase only (the "
                                   "model's amplitude is kept; robust on real data), free recovers the amplitude "
                                   "too (apodization; it can absorb model errors and made UDU collapse on the blood "
                                   "smear, docs/calibration.md)", PUPIL_AMPLITUDES)
    pupil_alpha: float = _option(0.001, "pupil step normalizer 1/((1-alpha) E + alpha max E), E the object's "
                                 "energy behind each pupil pixel (as in rPIE; 1: ePIE). Small: the object's DC "
                                 "peak would otherwise set the step of every pupil pixel (docs/calibration.md)")

    def __post_init__(self):
        methods = [self.method] if isinstance(self.method, str) else list(self.method)
        if not methods or any(m not in METHODS for m in methods):
            raise ValueError(f"method must be one of {tuple(METHODS)} (or a list of them, one per problem), "
                             f"got {self.method!r}")
        if not isinstance(self.method, str):
            self.method = tuple(methods)
        for name in ("loss", "precondition", "momentum", "init", "step_schedule", "pupil", "pupil_amplitude",
                     "calibrate", "geometry_model"):
            allowed = fields_by_name()[name].metadata["choices"]
            if getattr(self, name) not in allowed:
                raise ValueError(f"solver option {name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.geometry_model != "array" and self.calibrate not in ("geometry", "all"):
            raise ValueError(f"--geometry-model {self.geometry_model} refines the LED geometry: it needs --calibrate "
                             f"geometry or all, got --calibrate {self.calibrate}")
        if self.step is None:
            steps = {DEFAULT_STEP[m, self.loss] for m in methods}
            self.step = steps.pop() if len(steps) == 1 else None  # mixed: per-method defaults
        if self.step_d is None and any("step_d" in METHODS[m].records for m in methods):
            self.step_d = DEFAULT_STEP_D[self.loss]
        integers = {"rank": 1, "max_iters": 0, "yield_every": 1, "calibration_delay": 0}
        for name, low in integers.items():
            value = getattr(self, name)
            if not is_integer(value) or value < low:
                raise ValueError(f"solver option {name} must be an integer >= {low}, got {value!r}")
            setattr(self, name, int(value))
        positives = (["step"] if self.step is not None else []) + ["xi", "radius"] + (
            ["step_d"] if self.step_d is not None else []) + ["pupil_step"]
        for name in positives + ["rel_tol", "scaled_lambda", "precondition_alpha", "pupil_alpha"]:
            value = getattr(self, name)
            low_ok = value > 0 if name in positives else value >= 0
            if not is_finite_real(value) or not low_ok:
                bound = "> 0" if name in positives else ">= 0"
                raise ValueError(f"solver option {name} must be a finite number {bound}, got {value!r}")
            setattr(self, name, float(value))
        if not (is_finite_real(self.restart_backoff) and 0 < self.restart_backoff <= 1):
            raise ValueError(f"solver option restart_backoff must be in (0, 1], got {self.restart_backoff!r}")
        self.restart_backoff = float(self.restart_backoff)
        if self.precondition_alpha > 1:
            raise ValueError(f"solver option precondition_alpha must be in [0, 1], got {self.precondition_alpha}")
        if self.pupil_alpha > 1:
            raise ValueError(f"solver option pupil_alpha must be in [0, 1], got {self.pupil_alpha}")
        if is_integer(self.seed):
            self.seed = int(self.seed)
        elif isinstance(self.seed, (list, tuple)) and all(is_integer(s) for s in self.seed):
            self.seed = tuple(int(s) for s in self.seed)
        else:
            raise ValueError(f"solver option seed must be an integer or a list of integers, got {self.seed!r}")
        for seed in (self.seed,) if isinstance(self.seed, int) else self.seed:
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"solver option seed must be an integer in 0..{MAX_SEED} (2^63 - 1), got {seed}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "SolverOptions":
        """Options of preset ``name`` (see :data:`PRESETS`), with ``overrides`` on top."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    def methods(self, batch: int) -> tuple:
        """The method of each of ``batch`` problems."""
        if isinstance(self.method, str):
            return (self.method,) * batch
        if len(self.method) != batch:
            raise ValueError(f"got {len(self.method)} methods for a batch of {batch}")
        return self.method

    def steps(self, batch: int) -> tuple:
        """The normalized U step of each problem (``step``, or each method's default for the loss)."""
        return tuple(self.step if self.step is not None else DEFAULT_STEP[m, self.loss]
                     for m in self.methods(batch))

    def to_dict(self) -> dict:
        """Plain dict (for HDF5 attributes, CLI configs, GUI forms)."""
        values = asdict(self)
        for key in ("seed", "method"):
            if isinstance(values[key], (list, tuple)):
                values[key] = list(values[key])
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "SolverOptions":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown solver options: {sorted(unknown)}")
        return cls(**values)


def fields_by_name() -> dict:
    """``name -> dataclasses.Field`` of :class:`SolverOptions` (defaults, help, choices)."""
    return {f.name: f for f in fields(SolverOptions)}


#: Presets: name -> option values over the dataclass defaults (which are the papers' algorithms).
PRESETS = {
    "paper": {},
    "fast": {"loss": "amplitude", "precondition": "spectral", "momentum": "nesterov", "init": "frame",
             "restart_backoff": 0.7, "max_iters": 500},
}

#: Presets each kind of problem offers (``fast`` is FP-only: spectral preconditioner, frame start,
#: non-negative data) and the one it starts from when the user names none.
PROBLEM_PRESETS = {"fp": ("fast", "paper"), "sense": ("paper",)}

DEFAULT_PRESET = {kind: presets[0] for kind, presets in PROBLEM_PRESETS.items()}


def default_yield_every(max_iters: int) -> int:
    """How often a front end reports: about 100 times a run, at most every 50 iterations."""
    return max(1, min(50, max_iters // 100))
