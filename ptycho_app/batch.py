"""Headless batch reconstruction: measurement files in, result files out.

Inputs that share an acquisition (same optics, windows and pupil) are solved together in one
batched solve; each solver writes ``<out>/<stem>.<solver>.h5`` per input (see
:mod:`ptycho_app.io.results`).  Ctrl-C writes the last state reached as a resumable result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .analysis import factor_eigh, leading_vector
from .device import resolve_device, resolve_dtype
from .io.errors import InputFileError
from .io.measurement import Measurement, acquisition_key, file_sha256, read_measurement
from .io.results import Result, read_result, result_path, write_result
from .lifting import LiftedFP
from .physics import band_limit, spectrum_to_object
from .solvers import SolverOptions, iterate

SOLVER_CHOICES = ("bm", "udu", "both")


@dataclass
class Input:
    """A measurement file ready to solve: its contents and its identity."""

    path: Path
    measurement: Measurement
    sha256: str


def load_inputs(paths) -> list[Input]:
    """Read and check every input before any solving starts (a bad file fails fast)."""
    inputs, seen = [], set()
    for path in paths:
        path = Path(path)
        if path.stem in seen:
            raise InputFileError(path, "another input has the same file name stem; results would collide")
        seen.add(path.stem)
        inputs.append(Input(path, read_measurement(path), file_sha256(path)))
    return inputs


def group_by_acquisition(inputs: list[Input]) -> list[list[Input]]:
    """Inputs with identical forward operators, in input order (one batched solve per group)."""
    groups: dict[str, list[Input]] = {}
    for item in inputs:
        groups.setdefault(acquisition_key(item.measurement.acquisition), []).append(item)
    return list(groups.values())


def expand_solvers(solver: str) -> tuple[str, ...]:
    if solver not in SOLVER_CHOICES:
        raise ValueError(f"--solver must be one of {', '.join(SOLVER_CHOICES)}, got {solver!r}")
    return ("bm", "udu") if solver == "both" else (solver,)


def resume_state(group: list[Input], out_dir, options: SolverOptions, n: int):
    """Factors and loss histories of earlier results for a group, checked against the inputs.

    Returns
    -------
    init : ((B, n, r) complex128, (B, r) float64) or None
        ``None`` when none of the inputs has an earlier result.
    previous : list of (T_k,) arrays
        Loss history per input (empty for inputs starting fresh).
    start : list of int
        Iterations already done per input.
    """
    Us, ds, previous, start = [], [], [], []
    found = False
    for item in group:
        path = result_path(out_dir, item.path, options.method)
        if not path.exists():
            Us.append(None)
            ds.append(None)
            previous.append(np.zeros(0))
            start.append(0)
            continue
        result = read_result(path)
        if result.attrs.get("input_sha256") != item.sha256:
            raise InputFileError(path, f"was computed from a different {item.path.name} (sha256 differs); "
                                 "remove it or choose another --out", field="input_sha256")
        if result.U.shape != (n, options.rank):
            raise InputFileError(path, f"factors have shape {result.U.shape}, this run needs ({n}, {options.rank}) "
                                 "(use the same --rank)", field="factors/U")
        found = True
        Us.append(result.U)
        ds.append(result.d)
        previous.append(result.loss[:-1])  # the resumed run re-evaluates the last iterate's loss
        start.append(result.iterations)
    if not found:
        return None, previous, start
    from .solvers.factorized import initial_factors

    fresh_U, fresh_d = initial_factors(n, options.rank, len(group), options.xi, options.seed,
                                       torch.complex128, "cpu")
    U = np.stack([u if u is not None else fresh_U[k].numpy() for k, u in enumerate(Us)])
    d = np.stack([v if v is not None else fresh_d[k].numpy() for k, v in enumerate(ds)])
    return (torch.as_tensor(U), torch.as_tensor(d)), previous, start


def results_from_state(state, group: list[Input], options: SolverOptions, previous, start, device, precision,
                       interrupted=False) -> list[Result]:
    """One :class:`Result` per input of a batched solver state."""
    U = state.U.to(torch.complex128)
    weights = state.physical_weights().to(torch.float64)
    values = factor_eigh(U, weights)[0].cpu().numpy()
    N = group[0].measurement.acquisition.grid_size
    spectra = leading_vector(U, weights).reshape(-1, N, N)
    objects = spectrum_to_object(spectra).cpu().numpy()
    spectra = spectra.cpu().numpy()
    losses = state.losses.cpu().numpy()
    results = []
    for k, item in enumerate(group):
        acquisition = item.measurement.acquisition
        truth = item.measurement.ground_truth
        seed = options.seed + k if isinstance(options.seed, int) else options.seed[k]
        attrs = {
            "problem": "fp", "solver": options.method, "rank": options.rank, "step": options.step,
            "step_d": options.step_d if options.method == "udu" else None, "xi": options.xi,
            "radius": options.radius if options.method == "udu" else None,
            "iterations": int(start[k] + int(state.iterations[k])), "seed": int(seed),
            "input_file": item.path.name, "input_sha256": item.sha256, "scale": float(state.scale[k]),
            "run_iterations": int(state.iterations[k]), "seconds": float(state.elapsed), "device": str(device),
            "precision": precision,
            "interrupted": bool(interrupted), "pixel_size": float(acquisition.pixel_size_hr),
            "frame_type": item.measurement.frame_type, "relative_residual": float(state.relative_residual[k]),
            "options": {**options.to_dict(), "seed": int(seed)},
        }
        results.append(Result(
            eigenvalues=values[k],
            loss=np.concatenate([previous[k], losses[:int(state.iterations[k]) + 1, k]]),
            U=state.U[k].cpu().numpy(), d=state.d[k].cpu().numpy().astype(np.float64), attrs=attrs,
            object=objects[k], spectrum=spectra[k],
            reference=band_limit(truth.astype(np.complex128), acquisition) if truth is not None else None))
    return results


def solve_group(group: list[Input], options: SolverOptions, out_dir, device="auto", precision="single",
                resume=False, progress=True, on_update=None) -> list[Path]:
    """One batched solve of a group with one solver; writes one result file per input.

    Parameters
    ----------
    group : list of Input
        Inputs sharing an acquisition.
    options : SolverOptions
    out_dir : str or Path
    device, precision : str
    resume : bool
        Start from ``<out>/<stem>.<solver>.h5`` where it exists (``--iters`` more iterations).
    progress : bool
        Show a tqdm bar (iterations, loss, elapsed time).
    on_update : callable, optional
        Called with each yielded :class:`~ptycho_app.solvers.SolverState` (tests use it).

    Returns
    -------
    list of Path
        The result files written.
    """
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision)
    acquisition = group[0].measurement.acquisition
    b = torch.as_tensor(np.stack([item.measurement.intensities() for item in group]))
    operator = LiftedFP(acquisition, device=torch_device, dtype=dtype)
    init, previous, start = (resume_state(group, out_dir, options, operator.n) if resume
                             else (None, [np.zeros(0)] * len(group), [0] * len(group)))
    label = options.method.upper() + (f" x{len(group)}" if len(group) > 1 else f" {group[0].path.stem}")
    state, interrupted = None, False
    started = time.perf_counter()
    with tqdm(total=options.max_iters, desc=label, unit="it", disable=not progress, dynamic_ncols=True) as bar:
        try:
            for state in iterate(operator, b, options, init=init):
                bar.update(state.iteration - bar.n)
                bar.set_postfix(loss=f"{state.loss.max().item():.3e}",
                                rel_res=f"{state.relative_residual.max().item():.2e}")
                if on_update is not None:
                    on_update(state)
        except KeyboardInterrupt:
            interrupted = True
    if state is None:  # interrupted before the first update: nothing worth saving
        raise KeyboardInterrupt
    results = results_from_state(state, group, options, previous, start, torch_device, precision, interrupted)
    written = []
    for item, result in zip(group, results, strict=True):
        path = result_path(out_dir, item.path, options.method)
        write_result(path, result)
        written.append(path)
    if progress:
        per_iteration = state.elapsed / max(state.iteration, 1)
        tqdm.write(f"{label}: {state.iteration} iterations, {per_iteration * 1e3:.2f} ms/iteration "
                   f"({time.perf_counter() - started:.1f} s wall); wrote {', '.join(p.name for p in written)}")
    if interrupted:
        raise KeyboardInterrupt
    return written


def reconstruct_files(paths, solver="udu", out_dir="results", device="auto", precision="single", resume=False,
                      progress=True, on_update=None, **options) -> list[Path]:
    """Reconstruct measurement files with BM, UDU or both (see :func:`solve_group`).

    ``options`` are :class:`~ptycho_app.solvers.SolverOptions` fields (rank, step, xi, radius,
    max_iters, seed, ...).  Returns the result files written, in order.
    """
    methods = expand_solvers(solver)
    per_method = {method: SolverOptions(**{**options, "method": method}) for method in methods}  # checked early
    inputs = load_inputs(paths)
    written = []
    for group in group_by_acquisition(inputs):
        if progress and len(group) > 1:
            tqdm.write(f"solving {len(group)} inputs with the same acquisition together: "
                       f"{', '.join(item.path.name for item in group)}")
        for method in methods:
            written += solve_group(group, per_method[method], out_dir, device, precision, resume, progress,
                                   on_update)
    return written
