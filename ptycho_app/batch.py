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

from .analysis import factor_eigh, leading_from_eigh
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


#: Options that must not change between a run and its continuation (one loss history, one algorithm).
RESUME_MUST_MATCH = ("step", "step_d", "radius")


class NothingToSave(KeyboardInterrupt):
    """Ctrl-C came before the solver's first update: no result was written."""


def earlier_results(group: list[Input], out_dir, options: SolverOptions, n: int) -> list[Result | None]:
    """The result files a ``--resume`` continues from (None where an input has none), checked.

    Raises
    ------
    InputFileError
        For a result of another input (sha256), another rank, or other step/radius settings.
    """
    earlier = []
    methods, steps = options.methods(len(group)), options.steps(len(group))
    for item, method, step in zip(group, methods, steps, strict=True):
        path = result_path(out_dir, item.path, method)
        if not path.exists():
            earlier.append(None)
            continue
        result = read_result(path)
        if result.attrs.get("input_sha256") != item.sha256:
            raise InputFileError(path, f"was computed from a different {item.path.name} (sha256 differs); "
                                 "remove it or choose another --out", field="input_sha256")
        if result.U.shape != (n, options.rank):
            raise InputFileError(path, f"factors have shape {result.U.shape}, this run needs ({n}, {options.rank}) "
                                 "(use the same --rank)", field="factors/U")
        wanted = {"step": step, "step_d": options.step_d if method == "udu" else None,
                  "radius": options.radius if method == "udu" else None}
        for key in RESUME_MUST_MATCH:
            old, new = result.attrs.get(key), wanted[key]
            if old is not None and new is not None and not np.isclose(float(old), new, rtol=1e-6):
                flag = "--" + key.replace("_", "-")
                raise InputFileError(path, f"was run with {key} {float(old):g}; resume with {flag} {float(old):g} "
                                     f"(this run asks for {new:g})", field=key)
        earlier.append(result)
    return earlier


def resume_init(earlier: list[Result | None], options: SolverOptions, n: int):
    """Starting factors ``((B, n, r), (B, r))``: earlier results' factors, fresh draws elsewhere."""
    from .solvers.factorized import initial_factors

    fresh_U, fresh_d = initial_factors(n, options.rank, len(earlier), options.xi, options.seed, torch.complex128,
                                       "cpu")
    U = np.stack([r.U if r is not None else fresh_U[k].numpy() for k, r in enumerate(earlier)])
    d = np.stack([r.d if r is not None else fresh_d[k].numpy() for k, r in enumerate(earlier)])
    return torch.as_tensor(U), torch.as_tensor(d)


def results_from_state(state, group: list[Input], options: SolverOptions, earlier, device, precision,
                       interrupted=False) -> list[Result]:
    """One :class:`Result` per input of a batched solver state.

    ``earlier`` holds, per input, the result this run continued from (or None): its loss
    history, iteration count, seed and solver time carry over.
    """
    U = state.U.to(torch.complex128)
    weights = state.physical_weights().to(torch.float64)
    values, vectors = factor_eigh(U, weights)
    N = group[0].measurement.acquisition.grid_size
    spectra = leading_from_eigh(values, vectors).reshape(-1, N, N)
    values = values.cpu().numpy()
    objects = spectrum_to_object(spectra).cpu().numpy()
    spectra = spectra.cpu().numpy()
    losses = state.losses.cpu().numpy()
    results = []
    methods, steps = options.methods(len(group)), options.steps(len(group))
    for k, item in enumerate(group):
        method, udu = methods[k], methods[k] == "udu"
        acquisition = item.measurement.acquisition
        truth = item.measurement.ground_truth
        before = earlier[k]
        seed = options.seed + k if isinstance(options.seed, int) else options.seed[k]
        if before is not None:
            seed = int(before.attrs.get("seed", seed))
        ran = int(state.iterations[k])
        attrs = {
            "problem": "fp", "solver": method, "rank": options.rank, "step": steps[k],
            "step_d": options.step_d if udu else None, "xi": options.xi,
            "radius": options.radius if udu else None,
            "iterations": (before.iterations if before is not None else 0) + ran, "run_iterations": ran,
            "seed": int(seed), "input_file": item.path.name, "input_sha256": item.sha256,
            "scale": float(state.scale[k]),
            "seconds": float(state.elapsed) + (float(before.attrs.get("seconds", 0.0)) if before is not None else 0),
            "run_seconds": float(state.elapsed), "resumed": before is not None,
            "device": str(device), "precision": precision, "interrupted": bool(interrupted),
            "pixel_size": float(acquisition.pixel_size_hr), "frame_type": item.measurement.frame_type,
            "relative_residual": float(state.relative_residual[k]),
            "options": {**options.to_dict(), "method": method, "step": steps[k], "seed": int(seed)},
        }
        # the continued run re-evaluates the last iterate's loss: keep it once
        history = before.loss[:-1] if before is not None else np.zeros(0)
        results.append(Result(
            eigenvalues=values[k], loss=np.concatenate([history, losses[:ran + 1, k]]),
            U=state.U[k].cpu().numpy(), d=state.d[k].cpu().numpy().astype(np.float64), attrs=attrs,
            object=objects[k], spectrum=spectra[k],
            reference=band_limit(truth.astype(np.complex128), acquisition) if truth is not None else None))
    return results


def solve_group(group: list[Input], options: SolverOptions, out_dir, device="auto", precision="single",
                resume=False, progress=True, on_update=None) -> list[Path]:
    """One batched solve; writes one result file per problem (input and solver).

    Parameters
    ----------
    group : list of Input
        The input of each problem (all sharing an acquisition); an input appears once per solver.
    options : SolverOptions
        ``method`` may list one method per problem (BM and UDU side by side).
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
    earlier = earlier_results(group, out_dir, options, operator.n) if resume else [None] * len(group)
    init = resume_init(earlier, options, operator.n) if any(r is not None for r in earlier) else None
    methods = options.methods(len(group))
    inputs = list(dict.fromkeys(item.path for item in group))
    label = "+".join(dict.fromkeys(m.upper() for m in methods)) + (
        f" x{len(inputs)}" if len(inputs) > 1 else f" {group[0].path.stem}")
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
    if state is None:
        raise NothingToSave
    results = results_from_state(state, group, options, earlier, torch_device, precision, interrupted)
    written = []
    for item, method, result in zip(group, methods, results, strict=True):
        path = result_path(out_dir, item.path, method)
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
                      progress=True, on_update=None, batch_size=16, **options) -> list[Path]:
    """Reconstruct measurement files with BM, UDU or both (see :func:`solve_group`).

    Inputs with the same acquisition are solved together, up to ``batch_size`` per solve; input
    ``k`` (in the order given) starts from seed ``seed + k`` wherever it is solved.  ``options``
    are :class:`~ptycho_app.solvers.SolverOptions` fields (rank, step, xi, radius, max_iters,
    seed, ...).  Returns the result files written, in order.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
    methods = expand_solvers(solver)
    for method in methods:  # check the options before reading any file
        SolverOptions(**{**options, "method": method})
    base_seed = int(options.pop("seed", 0))
    inputs = load_inputs(paths)
    position = {item.path: k for k, item in enumerate(inputs)}
    written = []
    for group in group_by_acquisition(inputs):
        per_solve = max(1, batch_size // len(methods))  # --batch-size counts problems (input x solver)
        for first in range(0, len(group), per_solve):
            chunk = group[first:first + per_solve]
            if progress and len(chunk) > 1:
                tqdm.write(f"solving {len(chunk)} inputs with the same acquisition together: "
                           f"{', '.join(item.path.name for item in chunk)}")
            seeds = tuple(base_seed + position[item.path] for item in chunk)
            # "both": BM and UDU of every input side by side in one batched solve, same random start
            problems = [item for _ in methods for item in chunk]
            solve_options = SolverOptions(**{**options, "method": tuple(m for m in methods for _ in chunk),
                                             "seed": seeds * len(methods)})
            written += solve_group(problems, solve_options, out_dir, device, precision, resume, progress,
                                   on_update)
    return written
