"""Solver options as a small dataclass that round-trips through a plain dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..validation import is_finite_real, is_integer

METHODS = ("bm", "udu")

#: Default normalized steps. BM is stable up to about 0.5 / (tr X / tau) (0.25 to 0.5 on the
#: problems tried); UDU's ``U`` curvature grows like ``d`` (about ``1 / radius^2`` at the
#: solution), so its ``U`` step is smaller, and its ``D`` step larger, which speeds up the fit
#: without losing the exact low rank (see docs/solvers.md for the sweep behind these numbers).
DEFAULT_STEP = {"bm": 0.25, "udu": 0.05}
DEFAULT_STEP_D = 0.3


@dataclass
class SolverOptions:
    """Options of the factorized solvers.

    Step, ``xi`` and ``radius`` are *normalized*: the solver divides the data by a trace estimate
    ``tau`` (so the normalized ``X`` has trace about 1) and the step by the curvature estimate
    ``lambda_max(A^*(b / tau))``.  The same defaults therefore work for simulated and real data,
    whatever the photon count or grid size (see :mod:`ptycho_app.solvers.normalization`).

    Attributes
    ----------
    method : {"bm", "udu"} or sequence of them
        ``bm``: X = U U^* (Burer-Monteiro gradient descent); ``udu``: X = U D U^* with
        ``||U||_F <= radius`` and ``D >= 0`` (projected gradient descent). A sequence gives each
        problem of a batch its own method, so BM and UDU can run side by side in one batched
        solve (``step=None`` then takes each method's default).
    rank : int
        ``r``, number of factor columns.
    step : float or None
        Normalized step for ``U``: the actual step is ``step / lambda_max(A^*(b / tau))``.
        ``None``: 0.25 for BM, 0.05 for UDU.
    step_d : float or None
        Normalized step for ``D`` (UDU only). ``None``: 0.3. Set it equal to ``step`` for the
        authors' single shared step (slower to fit, same exact low rank).
    xi : float
        Norm of the initial ``U`` (in units of ``sqrt(tau)``): ``U0 = xi * randn / ||randn||_F``.
        Small values give the implicit low-rank bias.
    radius : float
        UDU's bound on ``||U||_F`` in units of ``sqrt(tau)`` (the normalized ``X`` has trace
        about 1). Smaller radii strengthen the low-rank bias (the ``D`` entries grow to about
        ``1 / radius^2``) but need a smaller ``step``; 0.5 gives exact low rank on FP and
        matrix completion; at 2 or more ``U`` never reaches the ball and UDU behaves like BM.
    max_iters : int
        Iteration limit.
    rel_tol : float
        Stop when the relative change of the loss over one iteration falls below this
        (checked every ``yield_every`` iterations); 0 disables it.
    yield_every : int
        The generator yields the state every this many iterations (and at the end).
    seed : int or sequence of int
        Random start: problem ``k`` of a batch uses ``seed + k`` (int) or ``seed[k]``.
    """

    method: str = "udu"
    rank: int = 4
    step: float | None = None
    step_d: float | None = None
    xi: float = 1e-3
    radius: float = 0.5
    max_iters: int = 500
    rel_tol: float = 0.0
    yield_every: int = 10
    seed: int | tuple = 0

    def __post_init__(self):
        methods = [self.method] if isinstance(self.method, str) else list(self.method)
        if not methods or any(m not in METHODS for m in methods):
            raise ValueError(f"method must be one of {METHODS} (or a list of them, one per problem), "
                             f"got {self.method!r}")
        if not isinstance(self.method, str):
            self.method = tuple(methods)
        if self.step is None:
            steps = {DEFAULT_STEP[m] for m in methods}
            self.step = steps.pop() if len(steps) == 1 else None  # mixed: per-method defaults
        if self.step_d is None and "udu" in methods:
            self.step_d = DEFAULT_STEP_D
        integers = {"rank": 1, "max_iters": 0, "yield_every": 1}
        for name, low in integers.items():
            value = getattr(self, name)
            if not is_integer(value) or value < low:
                raise ValueError(f"solver option {name} must be an integer >= {low}, got {value!r}")
            setattr(self, name, int(value))
        positives = (["step"] if self.step is not None else []) + ["xi", "radius"] + (
            ["step_d"] if self.step_d is not None else [])
        for name in positives + ["rel_tol"]:
            value = getattr(self, name)
            low_ok = value >= 0 if name == "rel_tol" else value > 0
            if not is_finite_real(value) or not low_ok:
                bound = ">= 0" if name == "rel_tol" else "> 0"
                raise ValueError(f"solver option {name} must be a finite number {bound}, got {value!r}")
            setattr(self, name, float(value))
        if is_integer(self.seed):
            self.seed = int(self.seed)
        elif isinstance(self.seed, (list, tuple)) and all(is_integer(s) for s in self.seed):
            self.seed = tuple(int(s) for s in self.seed)
        else:
            raise ValueError(f"solver option seed must be an integer or a list of integers, got {self.seed!r}")

    def methods(self, batch: int) -> tuple:
        """The method of each of ``batch`` problems."""
        if isinstance(self.method, str):
            return (self.method,) * batch
        if len(self.method) != batch:
            raise ValueError(f"got {len(self.method)} methods for a batch of {batch}")
        return self.method

    def steps(self, batch: int) -> tuple:
        """The normalized U step of each problem (``step``, or each method's default)."""
        return tuple(self.step if self.step is not None else DEFAULT_STEP[m] for m in self.methods(batch))

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
