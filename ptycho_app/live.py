"""Live reconstruction for viewers: the solver's states, turned into images and spectra.

Qt-free: the napari plugin runs :func:`live_reconstruction` in a worker thread and only draws
what it yields.  BM and UDU run side by side in one batched solve when both are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .analysis import factor_eigh, leading_from_eigh
from .batch import Input, results_from_state
from .io.measurement import Measurement
from .io.results import result_path, write_result
from .lifting import LiftedFP
from .physics import spectrum_to_object
from .session import RunOptions, batch_options, rank_one_residual, run


@dataclass
class SolverView:
    """What a viewer shows of one method at one update.

    Attributes
    ----------
    amplitude, phase : (N, N) float32
    eigenvalues : (r,) float64
        Eigenvalues of X, decreasing.
    losses : (T + 1,) float64
        Loss history so far.
    relative_residual : float
        ``||A(X) - b|| / ||b||`` of the rank-r ``X`` fitted.
    relative_residual_rank1 : float
        The same for the shown object's rank-one ``x x^*`` (:func:`~ptycho_app.session.rank_one_residual`).
    pupil : (M, M) complex128 or None
        The pupil recovered so far (``state.calibration``), None when the run recovers none.
    """

    amplitude: np.ndarray
    phase: np.ndarray
    eigenvalues: np.ndarray
    losses: np.ndarray
    relative_residual: float = float("nan")
    relative_residual_rank1: float = float("nan")
    pupil: np.ndarray | None = None


@dataclass
class LiveUpdate:
    """One update of a live reconstruction.

    Attributes
    ----------
    iteration : int
    methods : dict
        ``"bm"``/``"udu"`` -> :class:`SolverView` (one per method run).
    seconds : float
        Solver time so far.
    done : bool
    state : SolverState
        The batched state (for saving).
    options : SolverOptions
        The options of the run (for saving).
    run : RunOptions
        Methods, preset, device and precision of the run (for saving).
    """

    iteration: int
    methods: dict = field(default_factory=dict)
    seconds: float = 0.0
    done: bool = False
    state: object = None
    options: object = None
    run: object = None


def live_reconstruction(measurement: Measurement, method="both", preset=None, device="auto", precision="single",
                        update_every=50, seed=0, **options):
    """Run BM, UDU or both on one measurement and yield a :class:`LiveUpdate` every ``update_every``
    iterations (and at the end).

    ``method``, ``preset``, ``device`` and ``precision`` are :class:`~ptycho_app.session.RunOptions`
    fields; ``options`` are :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's
    (``max_iters``, ``rank``, ...; None: the preset's).  Closing the generator (a viewer's Stop)
    ends the run between updates; the last update holds the state reached.
    """
    settings = RunOptions(method=method, device=device, precision=precision,
                          **({"preset": preset} if preset is not None else {}))
    methods = settings.methods()
    solver_options = batch_options(methods, settings.preset, (seed,), **{**options, "yield_every": update_every})
    operator = LiftedFP(measurement.acquisition, device=settings.torch_device, dtype=settings.dtype())
    b = torch.as_tensor(measurement.intensities())[None].expand(len(methods), -1, -1, -1)
    N = measurement.acquisition.grid_size
    for state in run(operator, b, solver_options):
        U = state.U.to(torch.complex128)
        weights = state.physical_weights().to(torch.float64)
        values, vectors = factor_eigh(U, weights)
        objects = spectrum_to_object(leading_from_eigh(values, vectors).reshape(-1, N, N)).cpu().numpy()
        values = values.cpu().numpy()
        losses = state.losses.cpu().numpy()
        rank1 = rank_one_residual(operator, b, state).tolist()
        views = {}
        for k, name in enumerate(methods):
            obj = objects[k] * np.exp(-1j * np.angle(objects[k].mean()))  # mean phase 0: comparable views
            views[name] = SolverView(np.abs(obj).astype(np.float32), np.angle(obj).astype(np.float32),
                                     values[k], losses[:, k], float(state.relative_residual[k]), rank1[k],
                                     recovered_pupil(state, k))
        yield LiveUpdate(state.iteration, views, state.elapsed, state.done, state, solver_options, settings)


def recovered_pupil(state, k: int) -> np.ndarray | None:
    """(M, M) complex128: problem ``k``'s pupil in ``state.calibration``, or None when none is recovered."""
    calibration = getattr(state, "calibration", None)
    if calibration is None or calibration[k] is None or calibration[k].pupil is None:
        return None
    return np.asarray(calibration[k].pupil, dtype=np.complex128).copy()


def save_live_results(update: LiveUpdate, measurement: Measurement, out_dir, name="measurement",
                      interrupted=False) -> list[Path]:
    """Write an update's state in the CLI's result layout: ``<out_dir>/<name>.<method>.h5``.

    ``interrupted``: the run was stopped or failed before its last iteration (recorded as in the
    CLI's Ctrl-C results).
    """
    from .io.measurement import file_sha256

    state = update.state
    methods = tuple(update.methods)
    source = measurement.path if measurement.path is not None else Path(f"{name}.h5")
    sha = file_sha256(source) if measurement.path is not None and Path(source).exists() else ""
    item = Input(Path(source), measurement, sha)
    settings = update.run or RunOptions()
    results = results_from_state(state, [item] * len(methods), update.options, [None] * len(methods),
                                 settings.torch_device, settings.precision, interrupted, settings.preset,
                                 [view.relative_residual_rank1 for view in update.methods.values()])
    written = []
    for method, result in zip(methods, results, strict=True):
        path = result_path(out_dir, source, method)
        write_result(path, result)
        written.append(path)
    return written
