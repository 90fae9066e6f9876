"""Tiled reconstruction of a whole field of view, in process: ``reconstruct FILE --tile T --overlap V``.

The frames ``(L, Mf, Mf)`` are cut into overlapping ``T x T`` tiles (:func:`~ptycho_app.tiling.tile_grid`);
each tile is an ordinary FP problem with its own illumination
(:func:`~ptycho_app.tiling.tile_acquisition`: the direction sines at the tile's centre; the file's
upsample, subpixel flag and defocus kept).  Tiles whose acquisitions give identical forward operators
(:func:`~ptycho_app.io.measurement.acquisition_key`) share one batched solve; each solve runs with the run's
options through :func:`~ptycho_app.session.run_to_end`, as :func:`~ptycho_app.batch.solve_group` does.
Each tile's object is the leading eigenvector of its ``X`` (as in result files); the tiles are phase
aligned and feathered onto the high-resolution grid (:func:`~ptycho_app.stitching.stitch`, corners
and overlap times ``upsample``) and written as one result file per method, ``<out>/<stem>.<method>.h5``,
with the per-tile eigenvalues and corners and the maps of ``lambda_2 / lambda_1`` and of the residual
(layout: :mod:`ptycho_app.io.results`).

Each batched solve is one task (:func:`solve_and_store`), run in this process or on Dask workers
(``--scheduler``, :mod:`ptycho_app.scheduling`); the task writes its tiles into the input's tile
store ``<out>/<stem>.tiles/`` (:mod:`ptycho_app.tile_store`) and the stitching reads them from
there, whatever ran the task.  Ctrl-C (or a killed run) leaves the finished tiles in the store:
``--resume`` solves only the tiles missing.  The store is removed once the stitched result files
are written (``keep_tiles`` keeps it).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .analysis import factor_eigh, leading_from_eigh
from .batch import Input, Interrupted, check_outputs_fit, check_solve_size, load_inputs
from .io.atomic import claimed_outputs, output_lock, sigint_deferred
from .io.errors import InputFileError
from .io.measurement import Measurement, acquisition_key
from .io.results import Result, result_path, write_result
from .lifting import LiftedFP
from .physics import Acquisition, band_limit, spectrum_to_object
from .scheduling import check_scheduler_flags, open_scheduler, run_tasks, set_worker_threads
from .session import RunOptions, batch_options, problem_history, problem_options, run_to_end
from .stitching import stitch
from .tile_store import TileStore, store_folder, store_record
from .tiling import (
    TILE_MARGIN,
    axis_starts,
    crop_margin,
    curvature_phase,
    cut_tile,
    tile_acquisition,
    tile_frames,
    tile_grid,
)


@dataclass
class Tile:
    """One tile of a measurement, ready to solve.

    Attributes
    ----------
    index : int
        Position in :func:`~ptycho_app.tiling.tile_grid`'s row-by-row order.
    corner : (int, int)
        Top-left ``(row, col)`` in camera pixels.
    frames : (L, T + 2P, T + 2P) float32
        The tile's intensities (the file's corrections applied) inside a margin of ``P`` unmeasured
        pixels (:func:`~ptycho_app.tiling.tile_frames`).
    mask : (L, T + 2P, T + 2P) bool or None
        The pixels the loss uses: the tile's, less saturated ones (None: all; no margin and no
        saturation level).
    acquisition : Acquisition
        The tile's model (:func:`~ptycho_app.tiling.tile_acquisition`, frames ``T + 2P``).
    size : int
        ``T``, camera pixels.
    margin : int
        ``P``, camera pixels.
    """

    index: int
    corner: tuple[int, int]
    frames: np.ndarray
    mask: np.ndarray | None
    acquisition: Acquisition
    size: int
    margin: int = 0


@dataclass
class TileSolution:
    """What one solve gave for one tile and method.

    Attributes
    ----------
    eigenvalues : (r,) float64
        Of the tile's ``X``, decreasing (physical units).
    object : (upsample T, upsample T) complex128
        ``sqrt(lambda_1)`` times the leading eigenvector, as an object: the tile's own pixels (its
        margin cropped), with the illumination's mean curvature removed
        (:func:`~ptycho_app.tiling.curvature_phase`).
    residual : float
        Relative residual of the rank-``r`` ``X``.
    loss : (I + 1,) float64
    U : (n, r) complex
        Normalized factor.
    d : (r,) float64
    attrs : dict
        The options this problem ran with (:func:`~ptycho_app.session.problem_options`), its
        iterations and scale.
    """

    eigenvalues: np.ndarray
    object: np.ndarray
    residual: float
    loss: np.ndarray
    U: np.ndarray
    d: np.ndarray
    attrs: dict


def check_tiling(measurement: Measurement, path, tile, overlap, margin: int = 0) -> list[tuple[int, int]]:
    """The tile corners of a measurement, or one clear refusal naming the flag.

    Parameters
    ----------
    measurement : Measurement
    path : Path
        Its file (named in the messages).
    tile, overlap, margin : int
        ``--tile``, ``--overlap`` and ``--tile-margin``, camera pixels.

    Returns
    -------
    list of (int, int)
        Corners, row by row (:func:`~ptycho_app.tiling.tile_grid`).

    Raises
    ------
    ValueError
        ``--tile`` not in ``[1, M]``, ``--overlap`` not in ``[0, --tile)`` or a negative ``--tile-margin``.
    InputFileError
        The file has no LED positions (direction sines only) or an aberration array of the whole frame.
    """
    acquisition = measurement.acquisition
    field_size = acquisition.frame_size
    if int(tile) != tile or not 1 <= tile <= field_size:
        raise ValueError(f"--tile {tile} must be between 1 and the frames' size {field_size} ({path})")
    if int(overlap) != overlap or not 0 <= overlap < tile:
        raise ValueError(f"--overlap {overlap} must be in [0, --tile = {tile})")
    if int(margin) != margin or margin < 0:
        raise ValueError(f"--tile-margin {margin} must be a non-negative whole number of camera pixels")
    if acquisition.led_positions is None or acquisition.led_distance is None:
        raise InputFileError(path, "--tile needs LED positions (encoder and zled) to give each tile its own "
                             "illumination; this file has direction sines only", field="encoder")
    if acquisition.pupil is not None:
        raise InputFileError(path, f"--tile: the aberration array is {field_size} x {field_size} (the whole frame); "
                             "tiles need one of their own size", field="pupil")
    return tile_grid(field_size, int(tile), int(overlap))


def cut_tiles(measurement: Measurement, corners, tile: int, margin: int = 0) -> list[Tile]:
    """Each tile's intensities, mask and acquisition.

    Parameters
    ----------
    measurement : Measurement
        Full frames ``(L, Mf, Mf)`` with LED positions.
    corners : list of (int, int)
    tile : int
    margin : int
        Unmeasured camera pixels around each tile's model (:func:`~ptycho_app.tiling.tile_frames`).

    Returns
    -------
    list of Tile
        Intensity frames (the file's corrections applied to the full frames first) and the
        saturation mask of the frames as stored, both cut.
    """
    intensities = measurement.intensities()
    mask = measurement.mask() if measurement.saturation_level is not None else None
    field_size = measurement.acquisition.frame_size
    tiles = []
    for index, corner in enumerate(corners):
        acquisition = tile_acquisition(measurement.acquisition, field_size, corner, tile, margin)
        if margin == 0 and mask is None:
            frames, part_mask = np.ascontiguousarray(cut_tile(intensities, corner, tile)), None
        else:
            frames, part_mask = tile_frames(intensities, corner, tile, margin, mask)
        tiles.append(Tile(index, (int(corner[0]), int(corner[1])), frames, part_mask, acquisition, int(tile),
                          int(margin)))
    return tiles


def group_tiles(tiles: list[Tile], per_solve: int) -> list[list[Tile]]:
    """Tiles with identical forward operators, at most ``per_solve`` per group, in tile order."""
    groups: dict[str, list[Tile]] = {}
    for tile in tiles:
        groups.setdefault(acquisition_key(tile.acquisition), []).append(tile)
    return [group[first:first + per_solve] for group in groups.values() for first in range(0, len(group), per_solve)]


def solve_tiles(chunk: list[Tile], methods, run: RunOptions, base_seed: int, overrides: dict,
                item: Input, stop=None) -> dict[tuple[str, int], TileSolution]:
    """One batched solve of tiles sharing an acquisition, every method side by side.

    Parameters
    ----------
    chunk : list of Tile
    methods : tuple of str
    run : RunOptions
    base_seed : int
        Tile ``k`` starts from seed ``base_seed + k``.
    overrides : dict
        :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's.
    item : Input
        The measurement file (for the size check's message).
    stop : threading.Event, optional
        Set from another thread (napari's Stop): the solve ends at its next update as after Ctrl-C.

    Returns
    -------
    dict
        ``(method, tile index) -> TileSolution``.

    Raises
    ------
    Interrupted
        After Ctrl-C or ``stop`` (this solve's tiles are lost).
    """
    options = batch_options(methods, run.preset, tuple(base_seed + t.index for t in chunk), **overrides)
    problems = [t for _ in methods for t in chunk]
    acquisition = chunk[0].acquisition
    check_solve_size([item] * len(problems), acquisition, options.rank, run)
    b = torch.as_tensor(np.stack([t.frames for t in problems]))
    mask = torch.as_tensor(np.stack([t.mask for t in problems])) if chunk[0].mask is not None else None
    operator = LiftedFP(acquisition, device=run.torch_device, dtype=run.dtype())
    def stop_when_asked(_state):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # run_to_end's way out: the solve ends as after Ctrl-C

    state, interrupted = run_to_end(operator, b, options, progress=False, mask=mask, on_update=stop_when_asked)
    if state is None or interrupted:
        raise Interrupted([], [])
    values, vectors = factor_eigh(state.U.to(torch.complex128), state.physical_weights().to(torch.float64))
    N = acquisition.grid_size
    objects = spectrum_to_object(leading_from_eigh(values, vectors).reshape(-1, N, N)).cpu().numpy()
    # the tile's own pixels, without the illumination's mean curvature (the tile model has no term for it)
    objects = crop_margin(objects, chunk[0].size, chunk[0].margin, acquisition.upsample)
    objects = objects * np.exp(-1j * curvature_phase(acquisition, chunk[0].size))
    values = values.cpu().numpy()
    solutions = {}
    for k, tile in enumerate(problems):
        ran, losses = problem_history(state, k)
        attrs = {**problem_options(options, k, len(problems), run.preset), "iterations": ran,
                 "scale": float(state.scale[k]), "seconds": float(state.elapsed)}
        solutions[(options.methods(len(problems))[k], tile.index)] = TileSolution(
            eigenvalues=values[k], object=objects[k], residual=float(state.relative_residual[k]), loss=losses,
            U=state.U[k].cpu().numpy(), d=state.d[k].cpu().numpy().astype(np.float64), attrs=attrs)
    return solutions


def solve_and_store(chunk: list[Tile], methods, run: RunOptions, base_seed: int, overrides: dict, path: str,
                    folder: str, stop=None) -> tuple[list[int], bool]:
    """One task: :func:`solve_tiles` of ``chunk``, each tile written into the tile store ``folder``.

    Pure inputs only (runs on a Dask worker as well as in process; torch's threads there are the
    worker's, :func:`~ptycho_app.scheduling.set_worker_threads`).  A task whose tiles are all in the
    store already (a Dask retry after its first run finished) returns at once.

    Parameters
    ----------
    chunk : list of Tile
        Tiles sharing an acquisition.
    methods, run, base_seed, overrides
        As :func:`solve_tiles`.
    path : str
        The input file (named in messages).
    folder : str
        The tile store (:class:`~ptycho_app.tile_store.TileStore`).
    stop : threading.Event, optional
        In process only: ends the solve at its next update (:func:`solve_tiles`).

    Returns
    -------
    indices : list of int
        The chunk's tiles.
    computed : bool
        False when the store had them all.
    """
    store = TileStore(folder)
    indices = [t.index for t in chunk]
    if store.finished(indices):
        return indices, False
    set_worker_threads()
    solutions = solve_tiles(chunk, methods, run, base_seed, overrides, Input(Path(path), None, ""), stop)
    for tile in chunk:
        store.write_tile(tile.index, {method: asdict(solutions[(method, tile.index)]) for method in methods})
    store.log_task(indices)
    return indices, True


def stored_solutions(store: TileStore, indices, methods) -> dict[tuple[str, int], TileSolution]:
    """``(method, tile index) -> TileSolution`` of finished tiles, read from the store."""
    solutions = {}
    for index in indices:
        for method, fields in store.read_tile(index, methods).items():
            solutions[(method, index)] = TileSolution(**fields)
    return solutions


class TilesInterrupted(Interrupted):
    """Ctrl-C stopped a tiled run: the result files written, and the tile stores kept for ``--resume``.

    Attributes
    ----------
    kept : list of (Path, int, int)
        Each store left with finished tiles: its folder, tiles finished, tiles in all.
    """

    def __init__(self, written, not_written, kept):
        self.kept = list(kept)
        super().__init__(written, not_written)

    def message(self) -> str:
        text = super().message().removesuffix(" (continue with --resume)")
        if not self.kept:
            return text
        stores = ", ".join(f"{folder} ({done} of {total} tiles)" for folder, done, total in self.kept)
        return f"{text}; finished tiles kept in {stores} (continue with --resume)"


def tile_maps(solutions: list[TileSolution], rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tile eigenvalues and the maps on the tile grid.

    Returns
    -------
    eigenvalues : (K, r) float64
    lambda_ratio : (rows, cols) float64
        ``lambda_2 / lambda_1`` (NaN at rank 1 or ``lambda_1 = 0``).
    residual : (rows, cols) float64
    """
    eigenvalues = np.stack([s.eigenvalues for s in solutions]).astype(np.float64)
    ratio = np.full(len(solutions), np.nan)
    if eigenvalues.shape[1] > 1:
        leading = eigenvalues[:, 0]
        ratio = np.where(leading > 0, eigenvalues[:, 1] / np.where(leading > 0, leading, 1.0), np.nan)
    residual = np.array([s.residual for s in solutions], dtype=np.float64)
    return eigenvalues, ratio.reshape(rows, cols), residual.reshape(rows, cols)


def tiled_result(item: Input, solutions: list[TileSolution], corners, tile: int, overlap: int,
                 run: RunOptions, margin: int = 0) -> Result:
    """The stitched result of one input and method.

    Parameters
    ----------
    item : Input
        The full-field measurement.
    solutions : list of TileSolution
        One per tile, in ``corners``' order.
    corners : list of (int, int)
        Camera pixels.
    tile, overlap : int
        Camera pixels.
    run : RunOptions

    Returns
    -------
    Result
        ``object`` (Nf, Nf) stitched with phase alignment, the first tile's factors and loss
        (see :mod:`ptycho_app.io.results`).
    """
    acquisition = item.measurement.acquisition
    upsample = acquisition.upsample
    starts = axis_starts(acquisition.frame_size, tile, tile - overlap)
    rows = cols = len(starts)
    high = np.asarray(corners, dtype=np.int64) * upsample
    stitched = stitch(np.stack([s.object for s in solutions]), high, (acquisition.grid_size,) * 2,
                      overlap * upsample, align=True)
    eigenvalues, ratio, residual = tile_maps(solutions, rows, cols)
    first = solutions[0]
    truth = item.measurement.ground_truth
    attrs = {
        "problem": "fp", **first.attrs, "tiled": True, "tile": int(tile), "overlap": int(overlap),
        "tile_margin": int(margin),
        "tile_rows": rows, "tile_cols": cols, "run_iterations": first.attrs["iterations"],
        "input_file": item.path.name, "input_sha256": item.sha256,
        "seconds": float(sum(s.attrs["seconds"] for s in solutions)), "resumed": False,
        "device": str(run.torch_device), "precision": run.precision, "interrupted": False,
        "pixel_size": float(acquisition.pixel_size_hr), "frame_type": item.measurement.frame_type,
        "relative_residual": float(residual.max()),
        "options": {k: v for k, v in first.attrs.items() if k not in ("iterations", "scale", "seconds")},
    }
    return Result(eigenvalues=first.eigenvalues, loss=first.loss, U=first.U, d=first.d, attrs=attrs,
                  object=stitched,
                  reference=band_limit(truth.astype(np.complex128), acquisition) if truth is not None else None,
                  tile_eigenvalues=eigenvalues, tile_corners=np.asarray(corners, dtype=np.int64),
                  lambda_ratio=ratio, residual_map=residual)


def reconstruct_tiled(item: Input, tile: int, overlap: int, run: RunOptions, base_seed: int, overrides: dict,
                      batch_size: int = 16, progress: bool = True, on_tiles=None, store: TileStore | None = None,
                      client=None, margin: int = TILE_MARGIN, stop=None) -> dict[str, Result]:
    """Solve every tile of one input with every method of ``run`` and stitch.

    Parameters
    ----------
    item : Input
    tile, overlap : int
        Camera pixels.
    run : RunOptions
    base_seed : int
        Tile ``k`` starts from seed ``base_seed + k``.
    overrides : dict
        :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's.
    batch_size : int
        Most problems (tile x method) per batched solve (one task).
    progress : bool
        A tqdm bar over the tasks.
    on_tiles : callable, optional
        Called after each batched solve with ``{(method, tile index): TileSolution}`` of the tiles it
        finished and the list of all :class:`Tile` (a live mosaic: napari); tiles already in the
        store are passed first, task by task.
    store : TileStore, optional
        Where the tasks write their tiles (prepared, :meth:`~ptycho_app.tile_store.TileStore.prepare`);
        tasks whose tiles are all there are not run.  None: a temporary store, removed at the end.
    client : distributed.Client, optional
        Run the tasks on its workers (None: in this process).
    margin : int
        Unmeasured camera pixels around each tile's model (``--tile-margin``,
        :func:`~ptycho_app.tiling.tile_frames`).
    stop : threading.Event, optional
        In process (no ``client``): setting it from another thread ends the batched solve in progress
        at its next update, as Ctrl-C does (:class:`~ptycho_app.batch.Interrupted` is raised; the
        tiles already stored stay).

    Returns
    -------
    dict
        ``method -> Result``.
    """
    corners = check_tiling(item.measurement, item.path, tile, overlap, margin)
    tiles = cut_tiles(item.measurement, corners, int(tile), int(margin))
    methods = run.methods()
    chunks = group_tiles(tiles, max(1, batch_size // len(methods)))
    solutions: dict[tuple[str, int], TileSolution] = {}
    with contextlib.ExitStack() as stack:
        if store is None:
            store = TileStore(stack.enter_context(tempfile.TemporaryDirectory(prefix="ptycho-app-tiles-")))

        def collect(chunk):
            finished = stored_solutions(store, [t.index for t in chunk], methods)
            solutions.update(finished)
            if on_tiles is not None:
                on_tiles(finished, tiles)

        todo = []
        for chunk in chunks:
            if store.finished([t.index for t in chunk]):
                collect(chunk)
            else:
                todo.append(chunk)
        tasks = [(chunk, methods, run, base_seed, overrides, str(item.path), str(store.folder))
                 + ((stop,) if stop is not None and client is None else ()) for chunk in todo]
        run_tasks(solve_and_store, tasks, client, progress, desc=f"tiles {item.path.stem}",
                  on_done=lambda k, _: collect(todo[k]))
    return {method: tiled_result(item, [solutions[(method, t.index)] for t in tiles], corners, int(tile),
                                 int(overlap), run, int(margin)) for method in methods}


def tiled_store_record(item: Input, tile: int, overlap: int, run: RunOptions, base_seed: int, overrides: dict,
                       batch_size: int, margin: int = TILE_MARGIN) -> dict:
    """What a tile store of this input and run records (the options that change a tile's solution;
    not ``--device``)."""
    options = {**overrides, "tile": int(tile), "overlap": int(overlap), "tile_margin": int(margin),
               "batch_size": int(batch_size),
               "seed": int(base_seed), "method": run.method, "preset": run.preset, "precision": run.precision,
               "upsample": int(item.measurement.acquisition.upsample)}
    return store_record(item.path, item.sha256, options)


def reconstruct_files_tiled(paths, tile: int, overlap: int, run: RunOptions | None = None, out_dir="results",
                            progress=True, batch_size=16, upsample=None, overwrite=False, resume=False,
                            scheduler="none", workers=None, threads_per_worker=None, keep_tiles=False,
                            margin=TILE_MARGIN, **options) -> list[Path]:
    """``reconstruct --tile``: one stitched result file per input and method.

    Parameters
    ----------
    paths : list of str or Path
        Measurement files with LED positions, frames larger than ``tile``.
    tile, overlap : int
        Tile size and least overlap, camera pixels.
    run : RunOptions
    out_dir : str or Path
    progress : bool
        A tqdm bar over tasks (batched solves).
    batch_size : int
        Most problems (tile x method) per batched solve.
    upsample : int, optional
        The object grid of every input instead of its file's.
    overwrite : bool
        Replace result files that exist (refused otherwise) and, without ``resume``, start a tile
        store that exists over.
    resume : bool
        Continue the tile stores ``<out>/<stem>.tiles/`` of an interrupted run: only the tiles
        missing are solved (the store's input and options must be this run's).
    scheduler : str
        ``none`` (in process), ``local`` (a Dask LocalCluster) or a Dask scheduler's address
        (:func:`~ptycho_app.scheduling.open_scheduler`).
    workers, threads_per_worker : int, optional
        Of ``scheduler="local"``.
    keep_tiles : bool
        Keep each tile store after its result files are written (removed by default).
    margin : int
        Unmeasured camera pixels around each tile's model (``--tile-margin``).
    **options
        :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's.

    Returns
    -------
    list of Path
        The result files written.

    Raises
    ------
    TilesInterrupted
        Ctrl-C: which result files were written, and the stores kept for ``resume``.
    """
    run = run or RunOptions()
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
    methods = run.methods()
    base_seed = int(options.pop("seed", None) or 0)
    batch_options(methods, run.preset, (base_seed,), **options)  # check the options before reading any file
    check_scheduler_flags(scheduler, workers, threads_per_worker)
    inputs = load_inputs(paths, upsample)
    for item in inputs:  # refuse a bad input before any solving
        check_tiling(item.measurement, item.path, tile, overlap, margin)
    planned = [result_path(out_dir, item.path, method) for item in inputs for method in methods]
    stores = [TileStore(store_folder(out_dir, item.path)) for item in inputs]
    written, kept = [], []
    with claimed_outputs(planned, [item.path for item in inputs], overwrite, "pass --overwrite to replace it"), \
            contextlib.ExitStack() as locks:
        sizes = [16 * item.measurement.acquisition.grid_size**2 for item in inputs for _ in methods]
        check_outputs_fit(planned, sizes, out_dir)
        for item, store in zip(inputs, stores, strict=True):  # every store checked before any solving
            locks.enter_context(output_lock(store.folder))
            store.prepare(tiled_store_record(item, tile, overlap, run, base_seed, options, batch_size, margin), resume,
                          overwrite)
        started = time.perf_counter()
        try:
            with open_scheduler(scheduler, workers, threads_per_worker) as client:
                for item, store in zip(inputs, stores, strict=True):
                    results = reconstruct_tiled(item, tile, overlap, run, base_seed, dict(options), batch_size,
                                                progress, store=store, client=client, margin=margin)
                    for method, result in results.items():
                        path = result_path(out_dir, item.path, method)
                        with sigint_deferred():  # a second Ctrl-C waits for the file being written
                            write_result(path, result)
                            written.append(path)
                    if not keep_tiles:
                        store.remove()
        except KeyboardInterrupt:  # finished tiles stay in the stores; result files written before are complete
            for item, store in zip(inputs, stores, strict=True):
                done = store.count()
                if done:
                    kept.append((store.folder, done, len(check_tiling(item.measurement, item.path, tile, overlap,
                                                                      margin))))
            raise TilesInterrupted(written, [p for p in planned if p not in written], kept) from None
        finally:
            for store in stores:  # a store without a finished tile holds nothing to continue from
                if store.folder.is_dir() and store.count() == 0:
                    store.remove()
        if progress:
            tqdm.write(f"tiled: {len(written)} result file(s) in {time.perf_counter() - started:.1f} s")
    return written


__all__ = ["Tile", "TileSolution", "TilesInterrupted", "check_tiling", "cut_tiles", "reconstruct_files_tiled",
           "reconstruct_tiled", "solve_and_store", "stored_solutions", "tiled_result", "tile_maps"]
