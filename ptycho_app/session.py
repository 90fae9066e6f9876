"""One run path: every front end (``reconstruct``, ``demo``, ``sense``, the napari widget) solves here.

- :class:`RunOptions`: what a run needs besides the solver options (which methods side by side,
  the preset, device, precision), with help texts for every front end, as :class:`SolverOptions`.
- :func:`batch_options`: the solver options of one batched solve (each input by each method, side by
  side, from the same random start).
- :func:`run`: the solve as a generator of states, behind a tqdm bar when asked; :func:`run_to_end`
  keeps the last state and turns Ctrl-C into an interrupted (resumable) run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields

import torch
from tqdm.auto import tqdm

from .analysis import factor_eigh, leading_from_eigh
from .device import resolve_device, resolve_dtype
from .solvers import DEFAULT_PRESET, METHODS, PRESETS, SolverOptions, iterate
from .solvers.factorized import check_options
from .solvers.options import default_yield_every

#: ``both``: BM and UDU side by side in one batched solve.
METHOD_CHOICES = (*METHODS, "both")
#: Methods each kind of problem offers (uv and udv fit only asymmetric sensing).
PROBLEM_METHODS = {"fp": ("bm", "udu", "both"), "sense": METHOD_CHOICES}

#: Progress records (one line per record) go to this logger; the CLI shows them on stderr with
#: ``--no-progress``, so batch jobs without a terminal can be followed.
logger = logging.getLogger("ptycho_app")
#: Seconds between two progress records (the first update and the last are always recorded).
LOG_SECONDS = 10.0


@dataclass
class RunOptions:
    """Options of a run besides the solver's (defaults and help texts for the CLI and the widget)."""

    method: str = field(default="both", metadata={
        "help": "bm (X = U U^*), udu (X = U D U^*) or both, side by side in one batched solve from the same start "
                "(asymmetric sensing: uv, udv, both = uv and udv)",
        "choices": METHOD_CHOICES})
    preset: str = field(default=DEFAULT_PRESET["fp"], metadata={
        "help": "fast: amplitude loss, spectral preconditioner, Nesterov momentum, frame start (the best measured "
                "on FP); paper: the papers' exact algorithms (intensity loss, plain gradient descent, small "
                "random start). Options given explicitly override the preset's", "choices": tuple(PRESETS)})
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu or cuda"})
    precision: str = field(default="single", metadata={"help": "single or double", "choices": ("single", "double")})

    def __post_init__(self):
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")

    def methods(self, asymmetric: bool = False) -> tuple:
        """The methods to run: ``("bm", "udu")`` for ``both`` (``("uv", "udv")`` for an asymmetric problem)."""
        if self.method == "both":
            return tuple(name for name, method in METHODS.items() if method.asymmetric == asymmetric)
        return (self.method,)

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def dtype(self, is_complex: bool = True) -> torch.dtype:
        return resolve_dtype(self.precision, is_complex)


def batch_options(methods, preset: str, seeds, **overrides) -> SolverOptions:
    """Solver options of one batched solve: every input (one seed each) by every method.

    Problem ``m * len(seeds) + k`` is input ``k`` solved by ``methods[m]`` from seed ``seeds[k]``: BM
    and UDU of the same input start from the same random draw.  ``overrides`` are
    :class:`SolverOptions` fields (``None`` values are ignored: the preset's hold).
    """
    seeds = tuple(int(s) for s in seeds)
    given = {k: v for k, v in overrides.items() if v is not None}
    method = tuple(m for m in methods for _ in seeds)
    options = SolverOptions.preset(preset, **{**given, "method": method if len(method) > 1 else method[0],
                                              "seed": seeds * len(methods)})
    if "yield_every" not in given:  # one reporting interval for every front end (it also paces --tol)
        options.yield_every = default_yield_every(options.max_iters)
    return options


def problem_history(state, k: int):
    """Iterations problem ``k`` of a batch ran (it may have stopped early with ``rel_tol``) and its losses.

    Returns
    -------
    ran : int
    losses : (ran + 1,) ndarray
    """
    ran = int(state.iterations[k])
    return ran, state.losses[:ran + 1, k].cpu().numpy()


def progress_record(state, options: SolverOptions, label: str) -> str:
    """One line on a state: label (methods and input), iteration, each problem's loss and relative residual."""
    methods = options.methods(len(state.loss))
    losses = ", ".join(f"{m.upper()} {v:.4e}" for m, v in zip(methods, state.loss.tolist(), strict=True))
    residuals = ", ".join(f"{m.upper()} {v:.3e}" for m, v in
                          zip(methods, state.relative_residual.tolist(), strict=True))
    return (f"{label or 'solve'}: iteration {state.iteration}/{options.max_iters}, loss {losses}; "
            f"relative residual {residuals}; {state.elapsed:.1f} s")


def run(operator, b, options: SolverOptions, init=None, progress: bool = False, label: str = "",
        log_seconds: float = LOG_SECONDS, mask=None):
    """Solve and yield each :class:`~ptycho_app.solvers.SolverState` (behind a tqdm bar with ``progress``).

    A one-line progress record (:func:`progress_record`) is logged at INFO level on the
    ``ptycho_app`` logger at the first update, then at most every ``log_seconds``, and at the end.
    ``mask`` (B, *measurement_shape) bool: the measurements the loss uses (see :func:`iterate`).
    """
    check_options(operator, options)
    logged = None
    with tqdm(total=options.max_iters, desc=label, unit="it", disable=not progress, dynamic_ncols=True) as bar:
        for state in iterate(operator, b, options, init=init, mask=mask):
            bar.update(state.iteration - bar.n)
            bar.set_postfix(loss=f"{state.loss.max().item():.3e}",
                            rel_res=f"{state.relative_residual.max().item():.2e}")
            if logged is None or state.done or time.monotonic() - logged >= log_seconds:
                logged = time.monotonic()
                logger.info(progress_record(state, options, label))
            yield state


def rank_one_residual(operator, b, state, mask=None) -> torch.Tensor:
    """``||A(lambda_1 v v^*) - b|| / ||b||`` per problem: the residual of the rank-one ``X`` whose
    object is shown and written (``v`` the top eigenvector of ``X``), not of the rank-``r`` ``X`` fitted;
    over the measurements ``mask`` (optional, like ``b``, True = used) keeps.

    Parameters
    ----------
    operator : LiftedOperator
    b : (B, *measurement_shape) real
        The measurements solved for (physical units).
    state : SolverState

    Returns
    -------
    (B,) float64 tensor (one forward pass)
    """
    high = torch.complex128 if state.U.is_complex() else torch.float64
    x = leading_from_eigh(*factor_eigh(state.U.to(high), state.physical_weights().to(torch.float64)))
    ones = torch.ones(x.shape[0], 1, dtype=operator.real_dtype, device=operator.device)
    measured = operator.measure(x[:, :, None].to(device=operator.device, dtype=operator.dtype), ones)
    b = torch.as_tensor(b).to(device=measured.device, dtype=torch.float64)
    difference = measured.to(torch.float64) - b
    if mask is not None:
        keep = torch.as_tensor(mask).to(device=measured.device, dtype=torch.float64)
        difference, b = difference * keep, b * keep
    return torch.linalg.vector_norm(difference.flatten(1), dim=1) / torch.linalg.vector_norm(b.flatten(1), dim=1)


def run_to_end(operator, b, options: SolverOptions, init=None, progress: bool = True, label: str = "",
               on_update=None, mask=None):
    """Solve to the end (or to Ctrl-C) and return ``(last state, interrupted)``.

    The last state is None when Ctrl-C came before the first update.  ``on_update`` is called with
    each state; ``mask`` as in :func:`run`.
    """
    state, interrupted = None, False
    try:
        for state in run(operator, b, options, init=init, progress=progress, label=label, mask=mask):
            if on_update is not None:
                on_update(state)
    except KeyboardInterrupt:
        interrupted = True
    return state, interrupted


def problem_options(options: SolverOptions, k: int, batch: int, preset: str | None = None) -> dict:
    """The options problem ``k`` of a batch ran with, as a flat dict for result files.

    Options that belong to another method (UDU's ``radius`` and ``step_d`` in a BM result) are left
    out; ``step`` is the step this problem used; ``preset`` is recorded when known.
    """
    from .solvers import get_method

    method = options.methods(batch)[k]
    values = options.to_dict()
    values.update(method=method, step=options.steps(batch)[k],
                  seed=options.seed + k if isinstance(options.seed, int) else options.seed[k])
    own = set(get_method(method).records)
    for other in METHODS.values():
        for name in other.records:
            if name not in own:
                values.pop(name, None)
    values.pop("yield_every", None)
    if preset is not None:
        values["preset"] = preset
    return values
