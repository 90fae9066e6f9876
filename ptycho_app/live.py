"""Live reconstruction for viewers: the solver generator, turned into images and spectra.

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
from .device import resolve_device, resolve_dtype
from .io.measurement import Measurement
from .io.results import result_path, write_result
from .lifting import LiftedFP
from .physics import spectrum_to_object
from .solvers import SolverOptions, iterate


@dataclass
class SolverView:
    """What a viewer shows of one solver at one update.

    Attributes
    ----------
    amplitude, phase : (N, N) float32
    eigenvalues : (r,) float64
        Eigenvalues of X, decreasing.
    losses : (T + 1,) float64
        Loss history so far.
    """

    amplitude: np.ndarray
    phase: np.ndarray
    eigenvalues: np.ndarray
    losses: np.ndarray


@dataclass
class LiveUpdate:
    """One update of a live reconstruction.

    Attributes
    ----------
    iteration : int
    solvers : dict
        ``"bm"``/``"udu"`` -> :class:`SolverView`.
    seconds : float
        Solver time so far.
    done : bool
    state : SolverState
        The batched state (for saving).
    options : SolverOptions
        The options of the run (for saving).
    """

    iteration: int
    solvers: dict = field(default_factory=dict)
    seconds: float = 0.0
    done: bool = False
    state: object = None
    options: object = None


def live_reconstruction(measurement: Measurement, solver="both", rank=4, step=None, xi=1e-3, radius=0.5,
                        iterations=2000, update_every=50, device="auto", seed=0, precision="single"):
    """Run BM, UDU or both on one measurement and yield a :class:`LiveUpdate` every ``update_every``
    iterations (and at the end).

    Closing the generator (a viewer's Stop) ends the run between updates; the last update holds
    the state reached.
    """
    methods = ("bm", "udu") if solver == "both" else (solver,)
    options = SolverOptions(method=methods if len(methods) > 1 else methods[0], rank=rank, step=step, xi=xi,
                            radius=radius, max_iters=iterations, yield_every=update_every,
                            seed=(seed,) * len(methods))
    torch_device = resolve_device(device)
    operator = LiftedFP(measurement.acquisition, device=torch_device, dtype=resolve_dtype(precision))
    b = torch.as_tensor(measurement.intensities())[None].expand(len(methods), -1, -1, -1)
    N = measurement.acquisition.grid_size
    for state in iterate(operator, b, options):
        U = state.U.to(torch.complex128)
        weights = state.physical_weights().to(torch.float64)
        values, vectors = factor_eigh(U, weights)
        objects = spectrum_to_object(leading_from_eigh(values, vectors).reshape(-1, N, N)).cpu().numpy()
        values = values.cpu().numpy()
        losses = state.losses.cpu().numpy()
        views = {}
        for k, method in enumerate(methods):
            obj = objects[k] * np.exp(-1j * np.angle(objects[k].mean()))  # mean phase 0: comparable views
            views[method] = SolverView(np.abs(obj).astype(np.float32), np.angle(obj).astype(np.float32),
                                       values[k], losses[:, k])
        yield LiveUpdate(state.iteration, views, state.elapsed, state.done, state, options)


def save_live_results(update: LiveUpdate, measurement: Measurement, out_dir, name="measurement",
                      precision="single", device="auto", interrupted=False) -> list[Path]:
    """Write an update's state in the CLI's result layout: ``<out_dir>/<name>.<solver>.h5``.

    ``interrupted``: the run was stopped or failed before its last iteration (recorded as in the
    CLI's Ctrl-C results).
    """
    from .io.measurement import file_sha256

    state = update.state
    methods = tuple(update.solvers)
    source = measurement.path if measurement.path is not None else Path(f"{name}.h5")
    sha = file_sha256(source) if measurement.path is not None and Path(source).exists() else ""
    item = Input(Path(source), measurement, sha)
    results = results_from_state(state, [item] * len(methods), update.options, [None] * len(methods),
                                 resolve_device(device), precision, interrupted)
    written = []
    for method, result in zip(methods, results, strict=True):
        path = result_path(out_dir, source, method)
        write_result(path, result)
        written.append(path)
    return written
