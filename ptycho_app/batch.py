"""Headless batch reconstruction: measurement files in, result files out.

Inputs that share an acquisition (same optics, windows and pupil) are solved together in one
batched solve; each method writes ``<out>/<stem>.<method>.h5`` per input (see
:mod:`ptycho_app.io.results`).  Ctrl-C writes the last state reached as a resumable result; a
second Ctrl-C waits for the file being written and stops the rest (:class:`Interrupted` says which
files were written).  Result files that exist are continued (``resume``) or replaced
(``overwrite``), never silently; each is locked against other processes while the run lasts.

With a Dask scheduler (``scheduler="local"`` or an address, :mod:`ptycho_app.scheduling`) each
batched solve is one task (:func:`solve_task`): the worker reads the input files itself (workers
share the file system with this process), solves and writes its result files atomically into
``<out>/.ptycho-app-staging/run-*/``; this process, which holds the locks of the result files,
moves each task's files into place as it completes.  A worker killed mid-task makes Dask run the
task again; a task whose staged files are complete returns at once.  Ctrl-C keeps the files moved
into place and cancels the rest: the solves in flight are lost (no last state is written for them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .analysis import factor_eigh, leading_from_eigh
from .io.atomic import OutputFileError, check_free_space, claimed_outputs, sigint_deferred
from .io.errors import InputFileError
from .io.measurement import Measurement, acquisition_key, file_sha256, read_measurement
from .io.results import Result, read_result, result_path, write_result
from .lifting import LiftedFP
from .physics import band_limit, spectrum_to_object
from .resources import fp_solve_bytes, require_memory
from .scheduling import check_scheduler_flags, open_scheduler, run_tasks, set_worker_threads
from .session import RunOptions, batch_options, problem_history, problem_options, rank_one_residual, run_to_end
from .solvers import SolverOptions


@dataclass
class Input:
    """A measurement file ready to solve: its contents and its identity."""

    path: Path
    measurement: Measurement
    sha256: str


def load_inputs(paths, upsample=None) -> list[Input]:
    """Read and check every input before any solving starts (a bad file fails fast); ``upsample``
    (optional) sets every input's object grid (see :func:`~ptycho_app.io.measurement.read_measurement`)."""
    inputs, seen = [], set()
    for path in paths:
        path = Path(path)
        if path.stem in seen:
            raise InputFileError(path, "another input has the same file name stem; results would collide")
        seen.add(path.stem)
        inputs.append(Input(path, read_measurement(path, upsample=upsample), file_sha256(path)))
    return inputs


def group_by_acquisition(inputs: list[Input]) -> list[list[Input]]:
    """Inputs with identical forward operators, in input order (one batched solve per group)."""
    groups: dict[str, list[Input]] = {}
    for item in inputs:
        groups.setdefault(acquisition_key(item.measurement.acquisition), []).append(item)
    return list(groups.values())


#: Options that must not change between a run and its continuation (one loss history, one algorithm).
RESUME_MUST_MATCH = ("preset", "loss", "precondition", "precondition_alpha", "scaled_lambda", "step_schedule", "step",
                     "step_d", "radius")
#: What result files written before version 0.2 (the papers' algorithms only) recorded implicitly.
BEFORE_0_2 = {"preset": "paper", "loss": "intensity", "precondition": "none", "precondition_alpha": 0.0,
              "scaled_lambda": 0.0, "step_schedule": "constant"}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a reconstruction: which result files were written and which were not.

    Attributes
    ----------
    written, not_written : list of Path
    held : Path or None
        The file whose write a second Ctrl-C waited for (it is complete).
    hint : str
        How to continue, said when something was written (``--resume``; with several inputs
        ``--resume --skip-finished``, which leaves the inputs already finished alone).
    """

    def __init__(self, written, not_written, held=None, hint="--resume"):
        self.written, self.not_written, self.held, self.hint = list(written), list(not_written), held, hint
        super().__init__(self.message())

    def message(self) -> str:
        """One line: ``interrupted: wrote ...; not written: ...``."""
        parts = ["wrote " + ", ".join(map(str, self.written)) if self.written else "nothing written"]
        if self.not_written:
            parts.append("not written: " + ", ".join(map(str, self.not_written)))
        if self.held is not None:
            parts.append(f"a second Ctrl-C waited until {self.held} was complete")
        text = "interrupted: " + "; ".join(parts)
        return text + f" (continue with {self.hint})" if self.written else text


def earlier_results(group: list[Input], out_dir, options: SolverOptions, n: int,
                    preset: str | None = None) -> list[Result | None]:
    """The result files a ``--resume`` continues from (None where an input has none), checked.

    Raises
    ------
    InputFileError
        For a result of another input (sha256), another rank, or another preset, loss,
        preconditioner or step settings (:data:`RESUME_MUST_MATCH`; the first that differs is named,
        the preset first).
    """
    earlier = []
    methods = options.methods(len(group))
    for k, (item, method) in enumerate(zip(group, methods, strict=True)):
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
        wanted = problem_options(options, k, len(group), preset)
        recorded = {**BEFORE_0_2, **result.attrs} if "method" not in result.attrs else result.attrs
        for key in RESUME_MUST_MATCH:
            old, new = recorded.get(key), wanted.get(key)
            if old is None or new is None:
                continue
            same = old == new if isinstance(new, str) else np.isclose(float(old), float(new), rtol=1e-6)
            if not same:
                flag = "--" + key.replace("_", "-")
                shown = old if isinstance(old, str) else f"{float(old):g}"
                raise InputFileError(path, f"was run with {key} {shown}; resume with {flag} {shown} "
                                     f"(this run asks for {new})", field=key)
        earlier.append(result)
    return earlier


def finished_results(item: Input, methods, out_dir, options: SolverOptions, preset: str | None = None) -> bool:
    """Whether every method's result file of ``item`` is in ``out_dir`` and complete (not interrupted).

    Parameters
    ----------
    item : Input
    methods : tuple of str
    out_dir : Path
    options : SolverOptions
        The options ``item`` would be solved with (one problem per method).
    preset : str, optional

    Raises
    ------
    InputFileError
        For a result of another input or other options (as :func:`earlier_results`).
    """
    group = [item] * len(methods)
    earlier = earlier_results(group, out_dir, options, item.measurement.acquisition.grid_size**2, preset)
    return all(result is not None and not result.attrs.get("interrupted", False) for result in earlier)


def resume_init(earlier: list[Result | None], options: SolverOptions, n: int):
    """``iterate``'s ``init``: earlier results' factors, and the problems without one marked fresh
    (they take the options' start there, from the same normalization)."""
    U = np.stack([r.U if r is not None else np.zeros((n, options.rank), np.complex128) for r in earlier])
    d = np.stack([r.d if r is not None else np.ones(options.rank) for r in earlier])
    return torch.as_tensor(U), torch.as_tensor(d), torch.tensor([r is None for r in earlier])


def results_from_state(state, group: list[Input], options: SolverOptions, earlier, device, precision,
                       interrupted=False, preset=None, residual_rank1=None) -> list[Result]:
    """One :class:`Result` per input of a batched solver state.

    ``earlier`` holds, per input, the result this run continued from (or None): its loss
    history, iteration count, seed and solver time carry over.  ``residual_rank1`` (optional, per
    problem, :func:`~ptycho_app.session.rank_one_residual`) is recorded as ``relative_residual_rank1``:
    the residual of the shown object's ``x x^*`` beside ``relative_residual``, that of the rank-r ``X``.
    """
    U = state.U.to(torch.complex128)
    weights = state.physical_weights().to(torch.float64)
    values, vectors = factor_eigh(U, weights)
    N = group[0].measurement.acquisition.grid_size
    spectra = leading_from_eigh(values, vectors).reshape(-1, N, N)
    values = values.cpu().numpy()
    objects = spectrum_to_object(spectra).cpu().numpy()
    spectra = spectra.cpu().numpy()
    results = []
    for k, item in enumerate(group):
        acquisition = item.measurement.acquisition
        truth = item.measurement.ground_truth
        before = earlier[k]
        recorded = problem_options(options, k, len(group), preset)
        if before is not None:
            recorded["seed"] = int(before.attrs.get("seed", recorded["seed"]))
        ran, losses = problem_history(state, k)
        attrs = {
            "problem": "fp", **recorded,
            "iterations": (before.iterations if before is not None else 0) + ran, "run_iterations": ran,
            "input_file": item.path.name, "input_sha256": item.sha256,
            "scale": float(state.scale[k]),
            "seconds": float(state.elapsed) + (float(before.attrs.get("seconds", 0.0)) if before is not None else 0),
            "run_seconds": float(state.elapsed), "resumed": before is not None,
            "device": str(device), "precision": precision, "interrupted": bool(interrupted),
            "pixel_size": float(acquisition.pixel_size_hr), "frame_type": item.measurement.frame_type,
            "relative_residual": float(state.relative_residual[k]),
            "relative_residual_rank1": None if residual_rank1 is None else float(residual_rank1[k]),
            "options": recorded,
        }
        # the continued run re-evaluates the last iterate's loss: keep it once
        history = before.loss[:-1] if before is not None else np.zeros(0)
        results.append(Result(
            eigenvalues=values[k], loss=np.concatenate([history, losses]),
            U=state.U[k].cpu().numpy(), d=state.d[k].cpu().numpy().astype(np.float64), attrs=attrs,
            object=objects[k], spectrum=spectra[k],
            reference=band_limit(truth.astype(np.complex128), acquisition) if truth is not None else None,
            calibration=state.calibration[k] if getattr(state, "calibration", None) is not None else None))
    return results


def check_solve_size(group: list[Input], acquisition, rank: int, run: RunOptions):
    """Refuse, before allocating, a rank above ``n`` or a batched solve that would not fit in the
    device's memory."""
    a = acquisition
    n = a.grid_size**2
    if rank > n:
        raise ValueError(f"--rank {rank} exceeds n = {n}, the {a.grid_size} x {a.grid_size} object grid of "
                         f"{group[0].path} (X is n x n: its rank is at most n)")
    needed = fp_solve_bytes(len(group), a.n_frames, a.frame_size, a.grid_size, int(rank), run.precision)
    require_memory(needed, f"{group[0].path}: solving {len(group)} problem(s) at rank {rank} on a {a.grid_size} x "
                   f"{a.grid_size} object grid (upsample {a.upsample})", device=run.torch_device)


def solve_label(group: list[Input], methods) -> str:
    """A batched solve's name in progress lines: ``BM+UDU x3`` or ``BM <stem>``."""
    inputs = list(dict.fromkeys(item.path for item in group))
    return "+".join(dict.fromkeys(m.upper() for m in methods)) + (
        f" x{len(inputs)}" if len(inputs) > 1 else f" {group[0].path.stem}")


def solve_results(group: list[Input], options: SolverOptions, out_dir, run: RunOptions, resume=False,
                  progress=True, on_update=None, label=""):
    """One batched solve to the end (or Ctrl-C) and its results, written nowhere: the core that
    :func:`solve_group` (in process) and :func:`solve_task` (a Dask task) share.

    Parameters are :func:`solve_group`'s; ``label`` names the solve's progress bar.

    Returns
    -------
    state : SolverState or None
        The last state (None: Ctrl-C came before the first update).
    interrupted : bool
        Ctrl-C stopped the solve.
    results : list of Result
        One per problem (empty when ``state`` is None).

    Raises
    ------
    InputFileError
        ``resume`` with an earlier result that does not match (:func:`earlier_results`).
    """
    torch_device = run.torch_device
    acquisition = group[0].measurement.acquisition
    check_solve_size(group, acquisition, options.rank, run)
    b = torch.as_tensor(np.stack([item.measurement.intensities() for item in group]))
    masked = any(item.measurement.saturation_level is not None for item in group)  # saturated pixels left out
    mask = torch.as_tensor(np.stack([item.measurement.mask() for item in group])) if masked else None
    operator = LiftedFP(acquisition, device=torch_device, dtype=run.dtype())
    earlier = earlier_results(group, out_dir, options, operator.n, run.preset) if resume else [None] * len(group)
    init = None
    if any(r is not None for r in earlier):
        init = resume_init(earlier, options, operator.n)
    state, interrupted = run_to_end(operator, b, options, init=init, progress=progress, label=label,
                                    on_update=on_update, mask=mask)
    if state is None:
        return None, interrupted, []
    results = results_from_state(state, group, options, earlier, torch_device, run.precision, interrupted,
                                 run.preset, rank_one_residual(operator, b, state, mask).tolist())
    return state, interrupted, results


def solve_group(group: list[Input], options: SolverOptions, out_dir, run: RunOptions | None = None,
                resume=False, progress=True, on_update=None, written: list | None = None) -> list[Path]:
    """One batched solve; writes one result file per problem (input and method).

    Parameters
    ----------
    group : list of Input
        The input of each problem (all sharing an acquisition); an input appears once per method.
    options : SolverOptions
        ``method`` may list one method per problem (BM and UDU side by side).
    out_dir : str or Path
    run : RunOptions
        Device, precision and the preset (recorded in the results).
    resume : bool
        Start from ``<out>/<stem>.<method>.h5`` where it exists (``--iters`` more iterations).
    progress : bool
        Show a tqdm bar (iterations, loss, elapsed time).
    on_update : callable, optional
        Called with each yielded :class:`~ptycho_app.solvers.SolverState` (tests use it).
    written : list, optional
        Each result file is appended as soon as it is complete (what an error leaves written).

    Returns
    -------
    list of Path
        The result files written.

    Raises
    ------
    Interrupted
        After Ctrl-C: the last state reached is written (a second Ctrl-C waits for the file being
        written, then stops the others).
    """
    run = run or RunOptions()
    methods = options.methods(len(group))
    label = solve_label(group, methods)
    started = time.perf_counter()
    paths = [result_path(out_dir, item.path, method) for item, method in zip(group, methods, strict=True)]
    written = [] if written is None else written
    first, held = len(written), []
    try:
        try:
            state, interrupted, results = solve_results(group, options, out_dir, run, resume, progress, on_update,
                                                        label)
        except KeyboardInterrupt:  # a second Ctrl-C while the first one was being handled: nothing written
            raise Interrupted([], paths) from None
        if state is None:
            raise Interrupted([], paths)
        for path, result in zip(paths, results, strict=True):
            with sigint_deferred() as held:  # a second Ctrl-C waits for the file being written
                write_result(path, result)
                written.append(path)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(written[first:], paths[len(written) - first:], written[-1] if held else None) from None
    mine = written[first:]
    if progress:
        per_iteration = state.elapsed / max(state.iteration, 1)
        tqdm.write(f"{label}: {state.iteration} iterations, {per_iteration * 1e3:.2f} ms/iteration "
                   f"({time.perf_counter() - started:.1f} s wall); wrote {', '.join(p.name for p in mine)}")
    if interrupted:
        raise Interrupted(mine, [])
    return mine


#: In ``--out``: the folder Dask workers write result files into (one ``run-*`` folder per run).
STAGING_NAME = ".ptycho-app-staging"


def task_inputs(problems: list[tuple[str, str]], upsample=None, calibration=None) -> list[Input]:
    """A task's inputs, read where the task runs: one :class:`Input` per ``(path, sha256)`` problem.

    Raises
    ------
    InputFileError
        For a file whose sha256 is no longer the one the run started with.
    """
    read: dict[str, Input] = {}
    for path, sha256 in problems:
        if path in read:
            continue
        if file_sha256(path) != sha256:
            raise InputFileError(path, "changed since the run started (sha256 differs); run again")
        read[path] = Input(Path(path), read_measurement(path, upsample=upsample), sha256)
    read = dict(zip(read, calibrated(list(read.values()), calibration), strict=True))
    return [read[path] for path, _ in problems]


def calibrated(inputs: list[Input], calibration=None) -> list[Input]:
    """``inputs`` with the calibration recovered in the result file ``calibration`` applied
    (:func:`~ptycho_app.calibration.apply.apply_calibration`); unchanged when it is None."""
    if calibration is None:
        return inputs
    from .calibration.apply import apply_calibration, read_calibration_file

    recovered = read_calibration_file(calibration)
    return [Input(item.path, apply_calibration(item.measurement, recovered, calibration), item.sha256)
            for item in inputs]


def solve_task(problems: list[tuple[str, str]], options: SolverOptions, run: RunOptions, out_dir: str, resume: bool,
               staging: str, upsample=None, calibration=None) -> dict:
    """One Dask task: a batched solve of files (:func:`solve_results`), its result files written
    atomically into ``staging`` (the run's client moves them into ``out_dir``).

    Pure inputs only; the worker reads the files (a shared file system).  A task whose staged files
    are all there already (Dask's rerun of a task whose worker died after writing them) returns at
    once, and so does one whose ``staging`` is gone (its run is over).

    Parameters
    ----------
    problems : list of (str, str)
        Each problem's input file and its sha256 (an input appears once per method).
    options : SolverOptions
    run : RunOptions
    out_dir : str
        Where the results go (``resume`` reads the earlier results there).
    resume : bool
    staging : str
        The run's staging folder.
    upsample : int, optional
    calibration : str, optional
        A result file whose calibration is applied to every input.

    Returns
    -------
    dict
        ``files`` (the staged names, in problem order), ``computed`` (False when they were there),
        ``iterations`` and ``seconds`` of the solve.

    Raises
    ------
    ValueError
        For an input or earlier result that cannot be used (the message names the file; Dask
        sends the error to the client).
    """
    folder = Path(staging)
    methods = options.methods(len(problems))
    names = [result_path(out_dir, path, method).name for (path, _), method in zip(problems, methods, strict=True)]
    if not folder.is_dir() or all((folder / name).is_file() for name in names):
        return {"files": names, "computed": False, "iterations": 0, "seconds": 0.0}
    set_worker_threads()
    try:
        group = task_inputs(problems, upsample, calibration)
        state, interrupted, results = solve_results(group, options, out_dir, run, resume, progress=False)
        if state is None or interrupted:
            raise Interrupted([], [])
        for name, result in zip(names, results, strict=True):
            write_result(folder / name, result)
    except (InputFileError, OutputFileError) as error:  # their extra fields do not survive Dask's pickling
        raise ValueError(str(error)) from None
    return {"files": names, "computed": True, "iterations": int(state.iteration), "seconds": float(state.elapsed)}


def solve_on_dask(solves, out_dir, run: RunOptions, resume, progress, upsample, calibration, written: list,
                  scheduler: str, workers=None, threads_per_worker=None):
    """``reconstruct_files``'s batched solves as Dask tasks (:func:`solve_task`); each task's result
    files moved into ``out_dir`` (whose locks this process holds) as it completes and appended to
    ``written``.  The run's staging folder is removed at the end, also after Ctrl-C (the solves in
    flight are lost)."""
    out_dir = Path(out_dir)
    root = out_dir / STAGING_NAME
    root.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="run-", dir=root))  # this run's own: never another run's files
    tasks, targets, labels = [], [], []
    for problems, solve_options in solves:
        methods = solve_options.methods(len(problems))
        tasks.append(([(str(item.path), item.sha256) for item in problems], solve_options, run, str(out_dir), resume,
                      str(staging), upsample, None if calibration is None else str(calibration)))
        targets.append([result_path(out_dir, item.path, method) for item, method in zip(problems, methods,
                                                                                          strict=True)])
        labels.append(solve_label(problems, methods))

    def place(k, outcome):
        for target in targets[k]:
            with sigint_deferred():  # a file moved is a file recorded as written
                os.replace(staging / target.name, target)
                written.append(target)
        if progress:
            iterations = outcome["iterations"]
            speed = (f"{iterations} iterations, {outcome['seconds'] / max(iterations, 1) * 1e3:.2f} ms/iteration on a "
                     "Dask worker") if outcome["computed"] else "solved before its worker restarted"
            tqdm.write(f"{labels[k]}: {speed}; wrote {', '.join(t.name for t in targets[k])}")

    try:
        with open_scheduler(scheduler, workers, threads_per_worker) as client:
            run_tasks(solve_task, tasks, client, progress, desc="batched solves", on_done=place)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # unless another run stages there now
            root.rmdir()


def result_bytes(item: Input, options: SolverOptions, run: RunOptions) -> int:
    """About what one result file of ``item`` takes (factors, object and spectrum, loss history)."""
    N = item.measurement.acquisition.grid_size
    factor_bytes = torch.empty((), dtype=run.dtype()).element_size()
    return N * N * (options.rank * factor_bytes + 2 * np.dtype(np.complex64).itemsize) + 8 * (options.max_iters + 1)


def check_outputs_fit(planned: list[Path], sizes: list[int], out_dir):
    """Refuse a run whose result files will not fit on the disk of ``out_dir`` (files they replace
    are counted as freed, but the largest is written beside its old version)."""
    replaced = sum(path.stat().st_size for path in planned if path.is_file())
    needed = max(sum(sizes) - replaced, max(sizes, default=0))
    check_free_space(out_dir, needed, f"{out_dir} ({len(planned)} result files)")


def reconstruct_files(paths, run: RunOptions | None = None, out_dir="results", resume=False, progress=True,
                      on_update=None, batch_size=16, upsample=None, overwrite=False, calibration=None,
                      scheduler="none", workers=None, threads_per_worker=None, skip_finished=False,
                      **options) -> list[Path]:
    """Reconstruct measurement files with BM, UDU or both (see :func:`solve_group`).

    Inputs with the same acquisition are solved together, up to ``batch_size`` problems (input x
    method) per solve; input ``k`` (in the order given) starts from seed ``seed + k`` wherever it is
    solved.  ``upsample`` (optional) sets the object grid of every input instead of its file's.
    ``run`` holds the methods, preset, device and precision; ``options`` are
    :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's (None: the preset's).
    Result files that exist are refused unless ``resume`` (continue them) or ``overwrite``
    (replace them); each is locked against other processes for the whole run.  ``calibration``
    (optional): a result file whose ``calibration`` group is applied to every input
    (:func:`~ptycho_app.calibration.apply.apply_calibration`: its pupil, direction sines and brightness).
    ``scheduler`` (``none``, ``local`` or a Dask scheduler's address, with ``workers`` and
    ``threads_per_worker`` for ``local``; :func:`~ptycho_app.scheduling.open_scheduler`) runs each
    batched solve as a Dask task (:func:`solve_task`; ``on_update`` is not called there).
    ``skip_finished`` leaves out the inputs whose result files are all complete (not interrupted) and
    from this input and these options (:func:`finished_results`; another input's or options' are
    refused): with ``resume``, what an interrupted or killed run of many inputs left is finished.
    Returns the result files written, in order (completion order on Dask).

    Raises
    ------
    OutputFileError
        For a result file that exists, is an input, is written by another process, or does not fit.
    Interrupted
        After Ctrl-C (which files were written, which were not).
    """
    run = run or RunOptions()
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
    if upsample is not None and (int(upsample) != upsample or upsample < 1):
        raise ValueError(f"--upsample must be a positive integer, got {upsample}")
    if resume and overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    check_scheduler_flags(scheduler, workers, threads_per_worker)
    methods = run.methods()
    base_seed = int(options.pop("seed", None) or 0)
    batch_options(methods, run.preset, (base_seed,), **options)  # check the options before reading any file
    inputs = calibrated(load_inputs(paths, upsample), calibration)
    position = {item.path: k for k, item in enumerate(inputs)}  # seeds follow the inputs as given
    if skip_finished:
        done = [item for item in inputs if finished_results(
            item, methods, out_dir, batch_options(methods, run.preset, (base_seed + position[item.path],), **options),
            run.preset)]
        inputs = [item for item in inputs if item not in done]
        if done:  # said also without progress: these inputs are not solved
            tqdm.write(f"skipped {len(done)} finished input(s): {', '.join(item.path.name for item in done)}")
    continue_with = "--resume --skip-finished" if len(position) > 1 else "--resume"
    solves = []  # (problems, options) of each batched solve
    for group in group_by_acquisition(inputs):
        per_solve = max(1, batch_size // len(methods))  # --batch-size counts problems (input x method)
        for first in range(0, len(group), per_solve):
            chunk = group[first:first + per_solve]
            seeds = tuple(base_seed + position[item.path] for item in chunk)
            # "both": BM and UDU of every input side by side in one batched solve, same random start
            problems = [item for _ in methods for item in chunk]
            solves.append((problems, batch_options(methods, run.preset, seeds, **options)))
    planned = [result_path(out_dir, item.path, method) for problems, solve_options in solves
               for item, method in zip(problems, solve_options.methods(len(problems)), strict=True)]
    sizes = [result_bytes(item, solve_options, run) for problems, solve_options in solves for item in problems]
    hint = "pass --resume to continue it or --overwrite to replace it"
    written = []
    with claimed_outputs(planned, [item.path for item in inputs], overwrite or resume, hint):
        check_outputs_fit(planned, sizes, out_dir)
        try:
            if scheduler != "none":
                solve_on_dask(solves, out_dir, run, resume, progress, upsample, calibration, written, scheduler,
                              workers, threads_per_worker)
            else:
                for problems, solve_options in solves:
                    names = list(dict.fromkeys(item.path.name for item in problems))
                    if progress and len(names) > 1:
                        tqdm.write(f"solving {len(names)} inputs with the same acquisition together: "
                                   f"{', '.join(names)}")
                    solve_group(problems, solve_options, out_dir, run, resume, progress, on_update, written)
        except KeyboardInterrupt as stop:
            raise Interrupted(written, [p for p in planned if p not in written], getattr(stop, "held", None),
                              continue_with) from None
        except OutputFileError as error:
            if not written:
                raise
            raise OutputFileError(error.path, f"{error} (written before it: {', '.join(map(str, written))})") from None
    return written
