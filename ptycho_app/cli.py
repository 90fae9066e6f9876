"""The ``ptycho-app`` command line: simulate, import, reconstruct, compare, info, sense, demo.

Every user mistake (bad file, bad option) ends with one line on stderr naming the file or option
and the problem, and exit code 2; a diverged solve exits with 1; Ctrl-C writes resumable results
and exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from . import __version__


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: CLI flags whose names differ from their option fields.
FLAG_NAMES = {"max_iters": "--iters", "rel_tol": "--tol"}
#: Solver option fields that are not command-line flags (``method`` comes from RunOptions' bm|udu|both).
NOT_FLAGS = ("method", "yield_every")


def flag_of(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def field_type(f):
    """The argparse type of an options field (from its default; ``None`` defaults are floats)."""
    default = f.default
    if isinstance(default, bool) or default is None:
        return float
    return type(default) if isinstance(default, (int, float, str)) else int


def add_progress_option(parser):
    """``--no-progress``, the same for every long-running command."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars; instead a one-line progress record on stderr about every 10 s "
                             "(Python logger ptycho_app), for batch jobs and logs")


def add_run_options(group, kind="fp", defaults: dict | None = None, skip=()):
    """``--method --preset --device --precision`` from :class:`RunOptions` (help and choices there);
    ``kind`` (fp, sense) picks the presets and methods offered (``PROBLEM_PRESETS``, ``PROBLEM_METHODS``)."""
    from dataclasses import fields

    from .session import PROBLEM_METHODS, RunOptions
    from .solvers.options import DEFAULT_PRESET, PROBLEM_PRESETS

    defaults = {"preset": DEFAULT_PRESET[kind], **(defaults or {})}
    for f in fields(RunOptions):
        if f.name in skip:
            continue
        value = defaults.get(f.name, f.default)
        offered = {"preset": PROBLEM_PRESETS[kind], "method": PROBLEM_METHODS[kind]}
        choices = offered.get(f.name, f.metadata.get("choices"))
        group.add_argument(flag_of(f.name), dest=f.name, default=value, choices=choices,
                           help=f"{f.metadata['help']} (default: {value})")
        if f.name == "method":  # the flag's name before version 0.2, still accepted
            group.add_argument("--solver", dest=f.name, choices=choices, help=argparse.SUPPRESS)


def add_solver_options(parser, skip=(), title="solver (normalized units, see docs/solvers.md)", shown=None,
                       presets=None, kind="fp"):
    """Every :class:`SolverOptions` field as a flag, help and choices from the dataclass.

    Defaults are None (the preset's value holds); the help shows the value of each preset offered
    (``presets``, default all), or ``shown[name]`` where a command fills a default in itself; default
    steps are shown for the methods the ``kind`` of problem offers (``PROBLEM_METHODS``).
    """
    from .session import PROBLEM_METHODS
    from .solvers import PRESETS, SolverOptions
    from .solvers.options import fields_by_name

    group = parser.add_argument_group(title)
    presets = presets or tuple(PRESETS)
    for name, f in fields_by_name().items():
        if name in NOT_FLAGS or name in skip:
            continue
        values = {preset: SolverOptions.preset(preset).to_dict()[name] for preset in presets}
        if shown and name in shown:
            shown_text = shown[name]
        elif name == "step":
            shown_text = "; ".join(f"{preset} " + ", ".join(
                f"{method.upper()} {SolverOptions.preset(preset, method=method).step:g}"
                for method in PROBLEM_METHODS[kind] if method != "both")
                for preset in presets)
        elif len(set(map(str, values.values()))) == 1:
            shown_text = str(next(iter(values.values())))
        else:
            shown_text = ", ".join(f"{preset} {value}" for preset, value in values.items())
        flag = flag_of(name)
        metavar = None if f.metadata.get("choices") else flag.lstrip("-").upper().replace("-", "_")
        group.add_argument(flag, dest=name, type=field_type(f), default=None, metavar=metavar,
                           choices=f.metadata.get("choices"), help=f"{f.metadata['help']} (default: {shown_text})")
    return group


def solver_overrides(args) -> dict:
    """The solver options given on the command line (None: the preset's)."""
    from .solvers.options import fields_by_name

    return {name: getattr(args, name) for name in fields_by_name() if name not in NOT_FLAGS and hasattr(args, name)
            and getattr(args, name) is not None}


def run_options(args):
    """:class:`RunOptions` from parsed arguments."""
    from dataclasses import fields

    from .session import RunOptions

    return RunOptions(**{f.name: getattr(args, f.name) for f in fields(RunOptions) if hasattr(args, f.name)})


def get_parser() -> argparse.ArgumentParser:
    """The argument parser (separate from :func:`main` so it can be tested and documented)."""
    from .simulation import DEFAULT_UPSAMPLE
    from .solvers.options import PROBLEM_PRESETS
    from .tiling import TILE_MARGIN

    parser = OneLineParser(prog="ptycho-app", description="Fourier ptychography by lifting: BM and UDU solvers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    # ---- simulate ------------------------------------------------------------------------------
    sim = commands.add_parser("simulate", help="simulate an FP acquisition and write a measurement file")
    sim.add_argument("--out", default="simulated.h5", help="measurement file to write (default: %(default)s)")
    sim.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)")
    obj = sim.add_argument_group("object (default: amplitude from 'camera', phase from 'astronaut')")
    obj.add_argument("--object", help="complex object as .npy (N x N, N = upsample x frame size; without "
                     "--upsample, its N sets the upsample)")
    obj.add_argument("--amplitude", help="amplitude image (.png, .tif, .npy), resized to N x N")
    obj.add_argument("--phase", help="phase image (.png, .tif, .npy), resized to N x N")
    obj.add_argument("--amplitude-image", default="camera", help="bundled scikit-image image (default: %(default)s)")
    obj.add_argument("--phase-image", default="astronaut", help="bundled scikit-image image (default: %(default)s)")
    obj.add_argument("--amplitude-range", type=float, nargs=2, default=(0.3, 1.0), metavar=("LOW", "HIGH"),
                     help="amplitude range (default: 0.3 1)")
    obj.add_argument("--phase-range", type=float, nargs=2, default=(-1.5707963, 1.5707963), metavar=("LOW", "HIGH"),
                     help="phase range, radians (default: -pi/2 pi/2)")
    geo = sim.add_argument_group("illumination (default: a 7 x 7 grid, 4 mm pitch, 80 mm below)")
    geo.add_argument("--geometry", help="take the acquisition of an existing measurement file")
    geo.add_argument("--leds", type=int, default=7, help="LEDs per side of the square grid (default: %(default)s)")
    geo.add_argument("--pitch", type=float, default=4e-3, help="LED pitch, m (default: %(default)s)")
    geo.add_argument("--distance", type=float, default=80e-3, help="LED-to-sample distance, m (default: %(default)s)")
    geo.add_argument("--center-offset", type=float, nargs=2, default=(0.0, 0.0), metavar=("DY", "DX"),
                     help="grid centre offset (y, x), m (write negatives as decimals: -0.002)")
    geo.add_argument("--rotation", type=float, default=0.0, help="grid rotation, degrees")
    geo.add_argument("--order", choices=("raster", "spiral"), default="raster", help="frame order")
    geo.add_argument("--led-positions", help="LED positions (L, 2) (y, x) in m, .npy or .csv (uses --distance)")
    geo.add_argument("--direction-sines", help="illumination direction sines (L, 2) (s_y, s_x), .npy or .csv")
    opt = sim.add_argument_group("optics")
    opt.add_argument("--wavelength", type=float, default=532e-9, help="m (default: %(default)s)")
    opt.add_argument("--na", type=float, default=0.08, help="objective NA (default: %(default)s)")
    opt.add_argument("--magnification", type=float, default=4.0, help="(default: %(default)s)")
    opt.add_argument("--camera-pixel", type=float, default=6.5e-6, help="m (default: %(default)s)")
    opt.add_argument("--frame-size", type=int, default=16, help="M, frames are M x M (default: %(default)s)")
    opt.add_argument("--upsample", type=int, help="N = upsample x M (default: that of --object, else that of the "
                     f"--geometry file, else {DEFAULT_UPSAMPLE})")
    opt.add_argument("--field", type=int, metavar="F", help="simulate a whole field of view instead: F x F camera "
                     "pixels (F >= --frame-size), an (upsample F) x (upsample F) object, exact spherical LED waves; "
                     "reconstruct it with reconstruct --tile (docs/tiling.md)")
    opt.add_argument("--field-pad", type=int, metavar="P", help="with --field: camera pixels of reflected object "
                     "added on every side before the FFT and cropped after (default: F // 4)")
    opt.add_argument("--defocus", type=float, default=0.0, help="m (default: 0)")
    opt.add_argument("--no-subpixel", action="store_true", help="round the illumination windows to whole spectrum "
                     "pixels (default: sub-pixel illumination, each frame's pupil moved by the remainder; stored "
                     "in the file)")
    noise = sim.add_argument_group("noise")
    noise.add_argument("--noise", choices=("none", "poisson", "gaussian"), default="none", help="(default: none)")
    noise.add_argument("--photons", type=float, default=1000.0,
                       help="Poisson: mean photons per bright-field pixel (default: %(default)s)")
    noise.add_argument("--sigma", type=float, default=0.01,
                       help="Gaussian: std relative to the mean bright-field intensity (default: %(default)s)")
    noise.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    sim.add_argument("--frame-type", choices=("intensity", "amplitude"), default="intensity",
                     help="store intensities or their square roots (default: %(default)s)")

    # ---- import --------------------------------------------------------------------------------
    imp = commands.add_parser("import", help="convert FP data (MATLAB .mat, TIFF/PNG frames, HDF5) to a measurement "
                              "file")
    imp.add_argument("mat", metavar="SOURCE", help="MATLAB .mat file; a folder of TIFF/PNG frames or a quoted glob "
                     "('frames/*.tif'); a multi-page TIFF; an HDF5 file (frames in --frames-key)")
    imp.add_argument("--frame-order", help="text/CSV list of the frame files' names, in frame order (default: "
                     "natural order of the names: img2 before img10)")
    imp.add_argument("--illumination", help="CSV with per-frame kx, ky in NA units (optional 'frame' column)")
    led = imp.add_argument_group("LED grid (instead of --illumination; as simulate)")
    led.add_argument("--leds", type=int, help="LEDs per side of the square grid")
    led.add_argument("--pitch", type=float, help="LED pitch, m")
    led.add_argument("--distance", type=float, help="LED-to-sample distance, m")
    led.add_argument("--order", choices=("raster", "spiral"), default="raster", help="frame order (default: raster)")
    led.add_argument("--led-order", help="text/CSV: the grid LED of each frame (raster index, or row, col; 0-based), "
                     "instead of --order")
    led.add_argument("--center-offset", type=float, nargs=2, default=(0.0, 0.0), metavar=("DY", "DX"),
                     help="grid centre offset (y, x), m")
    led.add_argument("--rotation", type=float, default=0.0, help="grid rotation, degrees")
    led.add_argument("--flip-y", action="store_true", help="flip the LED array in y about its centre")
    led.add_argument("--flip-x", action="store_true", help="flip the LED array in x about its centre")
    led.add_argument("--swap-xy", action="store_true", help="swap y and x of the LED array (before any flip)")
    imp.add_argument("--ignore-pupil", action="store_true", help="leave out a pupil stored in a .mat ('aberration'): "
                     "start from the ideal pupil (recover it with reconstruct --pupil recover; docs/calibration.md)")
    led.add_argument("--check-geometry", action="store_true", help="score the 8 flips/swaps of the LED array "
                     "against the frames' brightness and say which flags fit (see docs/data.md)")
    cam = imp.add_argument_group("camera corrections (stored in the file, used by every loss)")
    cam.add_argument("--exposure", type=float, help="exposure of every frame, s (intensities are divided by it)")
    cam.add_argument("--dark-field-exposure", type=float, help="exposure of the dark-field frames, s")
    cam.add_argument("--exposure-table", help="text/CSV, one exposure per frame (last column), frame order")
    cam.add_argument("--background", help="dark frame (image or .npy, M x M) to subtract, or 'corners': each frame's "
                     "level from its dark corners")
    cam.add_argument("--saturation", type=float, help="camera maximum: pixels at or above it get zero weight")
    imp.add_argument("--out", help="measurement file to write (default: <mat stem>.h5 in the current folder)")
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)")
    imp.add_argument("--frames-key", help="variable (.mat) or dataset (HDF5, may sit in groups: "
                     "section0/ptychogram) holding the frames (default: detected)")
    imp.add_argument("--frame-type", choices=("intensity", "amplitude"),
                     help="what the frames hold (required for .mat: MATLAB files rarely say; default for images "
                     "and HDF5: intensity)")
    imp.add_argument("--na", type=float, required=True, help="objective NA")
    imp.add_argument("--magnification", type=float, required=True, help="objective magnification")
    imp.add_argument("--camera-pixel", type=float, help="camera pixel, m")
    imp.add_argument("--pixel-size", type=float, help="pixel at the sample, m (instead of --camera-pixel)")
    imp.add_argument("--wavelength", type=float, help="m (default: from the file)")
    imp.add_argument("--defocus", type=float, help="m (default: the file's z, else 0)")
    imp.add_argument("--upsample", type=int, help="default: the smallest that fits the illumination")
    imp.add_argument("--no-subpixel", action="store_true", help="reconstruct with the illumination windows rounded "
                     "to whole spectrum pixels (default: sub-pixel illumination; stored in the file)")
    imp.add_argument("--crop", type=int, help="keep the central C x C pixels of every frame")
    imp.add_argument("--kx-key", default="kx_na", help="kx column/variable (default: %(default)s)")
    imp.add_argument("--ky-key", default="ky_na", help="ky column/variable (default: %(default)s)")
    imp.add_argument("--sines-sign", type=float, choices=(-1.0, 1.0), default=-1.0,
                     help="direction sines = sign x (ky, kx) (default: -1, the UConn convention)")

    # ---- reconstruct ---------------------------------------------------------------------------
    rec = commands.add_parser("reconstruct", help="reconstruct measurement files with BM, UDU or both "
                              "(fast preset by default; --preset paper for the papers' algorithms)")
    rec.add_argument("inputs", nargs="+", metavar="FILE", help="measurement files (.h5)")
    rec.add_argument("--out", default="results", help="output folder (default: %(default)s)")
    rec.add_argument("--upsample", type=int, help="object grid N = upsample x M of every input (default: the file's "
                     "upsample; a PtyLab file has none: the smallest that fits the illumination)")
    rec.add_argument("--resume", action="store_true",
                     help="continue from the result files already in --out (--iters more iterations); with --tile: "
                     "solve only the tiles missing from <out>/<stem>.tiles/ (same input and options needed)")
    rec.add_argument("--skip-finished", action="store_true",
                     help="leave out the inputs whose result files in --out are all complete (same input and options; "
                     "an interrupted one is not complete): with --resume, finishes what an interrupted run of many "
                     "inputs left, without more iterations on the finished ones")
    rec.add_argument("--overwrite", action="store_true",
                     help="replace result files already in --out (refused otherwise: use --resume or another --out)")
    rec.add_argument("--calibration", metavar="RESULT",
                     help="apply the calibration recovered in this result file to every input: its pupil, direction "
                     "sines and brightness (the frames are divided by it); see docs/data.md")
    tiles = rec.add_argument_group("whole field of view (frames larger than a tile; needs LED positions)")
    tiles.add_argument("--tile", type=int, metavar="T", help="cut the frames into T x T camera-pixel tiles, solve each "
                       "with its own illumination and stitch them into one result per method")
    tiles.add_argument("--overlap", type=int, metavar="V", help="least overlap of neighbouring tiles, camera pixels "
                       "(with --tile; default: T // 4)")
    tiles.add_argument("--tile-margin", type=int, metavar="P", default=None,
                       help="unmeasured camera pixels around each tile's model: the object there is free to explain "
                       "the light that enters the tile from outside, so the FFT's wrap does not distort the tile "
                       f"(with --tile; default {TILE_MARGIN}; 0: none; docs/tiling.md)")
    tiles.add_argument("--scheduler", default="none", metavar="none|local|ADDRESS",
                       help="where the batched solves (of files, or of tiles with --tile) run: none (this process), "
                       "local (a Dask LocalCluster of worker processes on this machine) or the address of a running "
                       "Dask scheduler (tcp://host:8786, e.g. from dask-jobqueue on SLURM or PBS; its workers must "
                       "see the input and --out folders at the same paths). Files: each result file is in place as "
                       "soon as its solve ends; Ctrl-C keeps those and loses the solves in flight (no last state is "
                       "written for them). Tiles: finished tiles are kept in <out>/<stem>.tiles/ until the stitched "
                       "results are written, so an interrupted run continues with --resume (default: %(default)s)")
    tiles.add_argument("--workers", type=int, metavar="N",
                       help="--scheduler local: worker processes (default: Dask's choice from the CPU count)")
    tiles.add_argument("--threads-per-worker", type=int, metavar="M",
                       help="--scheduler local: batched solves at once per worker, and torch threads per worker "
                       "(default: 1)")
    tiles.add_argument("--keep-tiles", action="store_true",
                       help="keep <out>/<stem>.tiles/ (the finished tiles) after the stitched results are written")
    add_run_options(rec.add_argument_group("run"), kind="fp")
    add_solver_options(rec)
    hw = rec.add_argument_group("batching")
    hw.add_argument("--batch-size", type=int, default=16,
                    help="most problems (input x method) solved together in one batched solve (default: %(default)s)")
    add_progress_option(rec)

    # ---- compare -------------------------------------------------------------------------------
    cmp_ = commands.add_parser("compare", help="figures and metrics tables from result files")
    cmp_.add_argument("results", nargs="+", metavar="RESULT", help="result files (.h5)")
    cmp_.add_argument("--out", help="output folder (default: the first result's folder)")

    # ---- info ----------------------------------------------------------------------------------
    info = commands.add_parser("info", help="what a measurement or result file holds")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--check-geometry", action="store_true", help="measurement files: score the 8 flips/swaps "
                      "of the LED array against the frames' brightness")

    # ---- sense ---------------------------------------------------------------------------------
    sense = commands.add_parser("sense", help="the papers' matrix completion / sensing problems")
    sense.add_argument("--problem", choices=("completion", "sensing", "asymmetric"), default="completion",
                       help="asymmetric: an N1 x N2 matrix X = U V^* (uv) or U D V^* (udv); --method both runs "
                       "uv and udv (default: %(default)s)")
    sense.add_argument("--shape", type=int, nargs=2, metavar=("N1", "N2"), default=None,
                       help="asymmetric: matrix shape (default: 40 30); rank defaults to min(N1, N2), "
                       "--measurements to 5 (N1 + N2) r")
    sense.add_argument("--n", type=int, default=100, help="matrix size (default: %(default)s)")
    sense.add_argument("--truth-rank", type=int, default=3,
                       help="rank of the truth, eigenvalues 1..truth-rank (default: %(default)s)")
    sense.add_argument("--measurements", type=int, help="entries / measurements (default: 3nr, or 5nr for sensing)")
    sense.add_argument("--noise", type=float, default=0.0, help="Gaussian noise relative to the RMS measurement")
    sense.add_argument("--complex", action="store_true", help="complex Hermitian instead of real symmetric")
    sense.add_argument("--reference", choices=("nuclear",),
                       help="nuclear: also solve min ||X||_* s.t. A(X) = b with cvxpy (--problem sensing, real; "
                       "pip install 'ptycho-app[validate]') and report ||X - X_nuc||_F / ||X_nuc||_F per method")
    sense.add_argument("--out", default="sense-results", help="output folder (default: %(default)s)")
    add_progress_option(sense)
    add_run_options(sense.add_argument_group("run"), kind="sense", defaults={"precision": "double"},
                    skip=("device",))
    add_solver_options(sense, shown={"rank": "n, the papers' full-rank factor"}, presets=PROBLEM_PRESETS["sense"],
                       kind="sense")

    # ---- demo ----------------------------------------------------------------------------------
    demo = commands.add_parser("demo", help="simulate a small FP acquisition, reconstruct it with "
                               "BM and UDU, print metrics and write a comparison PNG")
    demo.add_argument("--out", default="demo-output", help="output folder (default: %(default)s)")
    add_progress_option(demo)
    add_run_options(demo.add_argument_group("run"), kind="fp")
    add_solver_options(demo)

    # ---- udv-demo ------------------------------------------------------------------------------
    udv = commands.add_parser("udv-demo", help="train a two-layer network with a UDV and with a UV first layer "
                              "on a synthetic rank-4 teacher, SVD-prune both, plot test error vs units kept")
    udv.add_argument("--out", default="udv-demo", help="output folder (default: %(default)s)")
    udv.add_argument("--steps", type=int, default=5000, help="SGD steps (default: %(default)s)")
    udv.add_argument("--seed", type=int, default=0, help="teacher, data and start (default: %(default)s)")
    udv.add_argument("--units", type=int, default=32, help="units of the factorized layers (default: %(default)s)")
    udv.add_argument("--no-progress", action="store_true", help="hide the training progress bar")
    return parser


def prepare_output_folder(path) -> Path:
    """Create the output folder (before any long work) or explain why it cannot be used."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {folder}: cannot create the folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {folder}: folder is not writable")
    return folder


def prepare_output_file(path) -> Path:
    """Check that a file can be written there (folder exists or can be made, name is not a folder)."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"--out {target}: is a folder, expected a file name")
    prepare_output_folder(target.parent if str(target.parent) else ".")
    return target


def read_table(path) -> "np.ndarray":  # noqa: F821
    """An (L, 2) table from .npy or .csv (header lines allowed)."""
    import numpy as np

    from .io.errors import InputFileError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        table = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2,
                                                                          comments="#", skiprows=0)
    except ValueError:
        try:
            table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
        except ValueError as error:
            raise InputFileError(path, f"expected two numeric columns (y, x): {error}") from None
    except OSError as error:
        raise InputFileError(path, f"cannot be read ({error})") from None
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 2:
        raise InputFileError(path, f"expected an (L, 2) table (y, x), got shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise InputFileError(path, "contains NaN or Inf")
    return table


#: The flags of ``simulate`` and ``import`` that set each checked optics quantity (for messages).
OPTICS_FLAGS = {"wavelength": "--wavelength", "na": "--na", "magnification": "--magnification",
                "camera_pixel": "--camera-pixel", "defocus": "--defocus", "led_distance": "--distance",
                "led_pitch": "--pitch", "pixel_at_sample": "the pixel at the sample (--camera-pixel / --magnification)"}


def run_simulate(args):
    import numpy as np

    from .io.atomic import claim_outputs
    from .io.errors import InputFileError
    from .io.measurement import read_measurement, write_measurement
    from .physics import Acquisition
    from .physics.acquisition import check_optics
    from .resources import require_memory, simulate_bytes
    from .simulation import (
        DEFAULT_UPSAMPLE,
        default_acquisition,
        object_from_files,
        simulate_frames,
        upsample_for_object,
    )

    out = prepare_output_file(args.out)
    claim_outputs([out], [args.geometry, args.object, args.amplitude, args.phase, args.led_positions,
                          args.direction_sines], args.overwrite)
    if args.upsample is not None and args.upsample < 1:
        raise ValueError(f"--upsample must be a positive integer, got {args.upsample}")
    if args.field is not None or args.field_pad is not None:
        return simulate_field(args, out)
    if args.geometry:
        acquisition = read_measurement(args.geometry, upsample=args.upsample).acquisition
        if args.upsample is None and args.object:  # the object's size sets the grid
            upsample = upsample_for_object(args.object, acquisition.frame_size)
            if upsample != acquisition.upsample:
                try:
                    acquisition = read_measurement(args.geometry, upsample=upsample).acquisition
                except InputFileError as error:
                    raise InputFileError(args.object, f"its size sets upsample {upsample}, which does not fit "
                                         f"{error}") from None
    else:
        upsample = args.upsample or (upsample_for_object(args.object, args.frame_size) if args.object
                                     else DEFAULT_UPSAMPLE)
        optics = dict(wavelength=args.wavelength, na=args.na, magnification=args.magnification,
                      camera_pixel=args.camera_pixel, frame_size=args.frame_size, upsample=upsample,
                      defocus=args.defocus)
        check_optics(OPTICS_FLAGS, wavelength=args.wavelength, na=args.na, magnification=args.magnification,
                     camera_pixel=args.camera_pixel, defocus=args.defocus, led_distance=args.distance,
                     led_pitch=args.pitch)
        if args.led_positions and args.direction_sines:
            raise ValueError("give --led-positions or --direction-sines, not both")
        if args.led_positions:
            acquisition = Acquisition(led_positions=read_table(args.led_positions), led_distance=args.distance,
                                      **optics)
        elif args.direction_sines:
            acquisition = Acquisition(direction_sines=read_table(args.direction_sines), **optics)
        else:
            acquisition = default_acquisition(leds_per_side=args.leds, led_pitch=args.pitch,
                                              led_distance=args.distance, center_offset=tuple(args.center_offset),
                                              rotation=args.rotation, order=args.order, **optics)
    acquisition = dataclasses.replace(acquisition, subpixel=not args.no_subpixel)
    N = acquisition.grid_size
    require_memory(simulate_bytes(N, acquisition.n_frames, acquisition.frame_size),
                   f"simulate: a {N} x {N} object (upsample {acquisition.upsample})")
    obj = object_from_files(N, complex_file=args.object, amplitude_file=args.amplitude, phase_file=args.phase,
                            amplitude_range=tuple(args.amplitude_range), phase_range=tuple(args.phase_range),
                            amplitude_image=args.amplitude_image, phase_image=args.phase_image)
    frames = simulate_frames(obj, acquisition, noise=args.noise, photons=args.photons, sigma=args.sigma,
                             seed=args.seed)
    if args.frame_type == "amplitude":
        frames = np.sqrt(np.maximum(frames, 0))
    write_measurement(out, frames, acquisition, frame_type=args.frame_type, ground_truth=obj,
                      description=f"simulated by ptycho-app {__version__} ({args.noise} noise)")
    print(f"wrote {out}: {acquisition.n_frames} frames of {acquisition.frame_size}x{acquisition.frame_size} "
          f"({int(acquisition.bright_field.sum())} bright-field), object {N}x{N}, noise {args.noise}")


def simulate_field(args, out):
    """``simulate --field F``: a full-field acquisition (F x F camera pixels, spherical LED waves,
    :func:`ptycho_app.tiling.full_field_intensities` with ``pad`` reflect padding)."""
    import numpy as np

    from .io.measurement import write_measurement
    from .physics.acquisition import check_optics
    from .resources import full_field_bytes, require_memory
    from .simulation import DEFAULT_UPSAMPLE, add_noise, default_acquisition, object_from_files, upsample_for_object
    from .tiling import FRAMES_PER_BLOCK, full_field_intensities

    if args.field is None:
        raise ValueError("--field-pad needs --field")
    if args.geometry:
        raise ValueError("--field does not take --geometry (give the optics and the LED grid as flags)")
    if args.direction_sines:
        raise ValueError("--field needs LED positions (the full field is lit by spherical waves), not "
                         "--direction-sines")
    field = args.field
    if field < 1 or field < args.frame_size:
        raise ValueError(f"--field must be at least --frame-size ({args.frame_size}) camera pixels, got {field}")
    pad = field // 4 if args.field_pad is None else args.field_pad
    if pad < 0:
        raise ValueError(f"--field-pad must be >= 0, got {pad}")
    upsample = args.upsample or (upsample_for_object(args.object, field) if args.object else DEFAULT_UPSAMPLE)
    optics = dict(wavelength=args.wavelength, na=args.na, magnification=args.magnification,
                  camera_pixel=args.camera_pixel, frame_size=field, upsample=upsample, defocus=args.defocus)
    check_optics(OPTICS_FLAGS, wavelength=args.wavelength, na=args.na, magnification=args.magnification,
                 camera_pixel=args.camera_pixel, defocus=args.defocus, led_distance=args.distance,
                 led_pitch=args.pitch)
    if args.led_positions:
        from .physics import Acquisition

        acquisition = Acquisition(led_positions=read_table(args.led_positions), led_distance=args.distance, **optics)
    else:
        acquisition = default_acquisition(leds_per_side=args.leds, led_pitch=args.pitch, led_distance=args.distance,
                                          center_offset=tuple(args.center_offset), rotation=args.rotation,
                                          order=args.order, **optics)
    acquisition = dataclasses.replace(acquisition, subpixel=not args.no_subpixel)
    N = acquisition.grid_size
    padded = upsample * (field + 2 * pad)
    require_memory(full_field_bytes(N, padded, acquisition.n_frames, field, FRAMES_PER_BLOCK),
                   f"simulate --field: a {N} x {N} object (upsample {upsample}, {padded} x {padded} padded)")
    obj = object_from_files(N, complex_file=args.object, amplitude_file=args.amplitude, phase_file=args.phase,
                            amplitude_range=tuple(args.amplitude_range), phase_range=tuple(args.phase_range),
                            amplitude_image=args.amplitude_image, phase_image=args.phase_image)
    frames = full_field_intensities(obj, acquisition, field, pad=pad, pad_mode="reflect")
    frames = add_noise(frames, acquisition, args.noise, args.photons, args.sigma, args.seed)
    if args.frame_type == "amplitude":
        frames = np.sqrt(np.maximum(frames, 0))
    write_measurement(out, frames, acquisition, frame_type=args.frame_type, ground_truth=obj,
                      description=f"full field simulated by ptycho-app {__version__} (spherical waves, pad {pad}, "
                      f"{args.noise} noise)")
    print(f"wrote {out}: {acquisition.n_frames} full-field frames of {field}x{field} "
          f"({int(acquisition.bright_field.sum())} bright-field at the centre), object {N}x{N}, noise {args.noise}; "
          f"reconstruct it with --tile")


def run_import(args):
    from .io.atomic import claim_outputs
    from .io.importer import import_source
    from .io.measurement import write_measurement
    from .physics.acquisition import check_optics

    check_optics({**OPTICS_FLAGS, "pixel_at_sample": "--pixel-size"} if args.pixel_size is not None else OPTICS_FLAGS,
                 wavelength=args.wavelength, na=args.na, magnification=args.magnification,
                 camera_pixel=args.camera_pixel, pixel_at_sample=args.pixel_size, defocus=args.defocus)
    source = Path(args.mat)
    stem = source.parent.name if "*" in source.name or "?" in source.name else source.stem
    out = prepare_output_file(args.out or Path(stem).with_suffix(".h5").name)
    claim_outputs([out], [a for a in (args.illumination, args.frame_order, args.led_order, args.exposure_table)
                          if a] + ([args.mat] if source.exists() else []), args.overwrite)
    names = ("frame_type", "na", "magnification", "wavelength", "camera_pixel", "pixel_size", "defocus", "upsample",
             "crop", "frames_key", "frame_order", "illumination", "kx_key", "ky_key", "sines_sign", "leds", "pitch",
             "distance", "order", "led_order", "center_offset", "rotation", "flip_y", "flip_x", "swap_xy",
             "exposure", "dark_field_exposure", "exposure_table", "saturation", "ignore_pupil")
    background = args.background if args.background in (None, "corners") else Path(args.background)
    imported = import_source(args.mat, background=background, **{name: getattr(args, name) for name in names})
    a = dataclasses.replace(imported.acquisition, subpixel=not args.no_subpixel)
    write_measurement(out, imported.frames, a, frame_type=imported.frame_type, exposure=imported.exposure,
                      background=imported.background, saturation_level=imported.saturation_level,
                      exposure_follows_geometry=args.dark_field_exposure is not None,
                      description=f"imported from {source.name} by ptycho-app {__version__}")
    print(f"wrote {out}: {a.n_frames} frames of {a.frame_size}x{a.frame_size} ({int(a.bright_field.sum())} "
          f"bright-field), object grid {a.grid_size}x{a.grid_size}")
    for note in imported.notes:
        print(f"  note: {note}")
    if args.check_geometry:
        from .io.geometry_check import check_geometry

        print(check_geometry(a, imported.frames, imported.exposure, imported.background,
                             exposure_follows_geometry=args.dark_field_exposure is not None).report())


def run_reconstruct(args):
    from .batch import reconstruct_files

    for flag, given in (("--overlap", args.overlap is not None), ("--tile-margin", args.tile_margin is not None),
                        ("--keep-tiles", args.keep_tiles)):
        if args.tile is None and given:
            raise ValueError(f"{flag} needs --tile")
    if args.tile is not None:
        return run_reconstruct_tiled(args)
    out = prepare_output_folder(args.out)
    options = solver_overrides(args)
    written = reconstruct_files(args.inputs, run=run_options(args), out_dir=out, resume=args.resume,
                                progress=not args.no_progress, batch_size=args.batch_size, upsample=args.upsample,
                                overwrite=args.overwrite, calibration=args.calibration, scheduler=args.scheduler,
                                workers=args.workers, threads_per_worker=args.threads_per_worker,
                                skip_finished=args.skip_finished, **options)
    print(f"wrote {len(written)} result file(s) to {out}; look at them with: ptycho-app compare "
          + " ".join(str(p) for p in written[:4]) + (" ..." if len(written) > 4 else ""))


def run_reconstruct_tiled(args):
    from .tiled import reconstruct_files_tiled
    from .tiling import TILE_MARGIN

    if args.calibration is not None:
        raise ValueError("--calibration is not supported with --tile yet")
    if args.skip_finished:
        raise ValueError("--skip-finished is for many inputs; with --tile, --resume already solves only the tiles "
                         "missing")
    overlap = args.tile // 4 if args.overlap is None else args.overlap
    out = prepare_output_folder(args.out)
    written = reconstruct_files_tiled(args.inputs, args.tile, overlap, run=run_options(args), out_dir=out,
                                      progress=not args.no_progress, batch_size=args.batch_size,
                                      upsample=args.upsample, overwrite=args.overwrite, resume=args.resume,
                                      scheduler=args.scheduler, workers=args.workers,
                                      threads_per_worker=args.threads_per_worker, keep_tiles=args.keep_tiles,
                                      margin=TILE_MARGIN if args.tile_margin is None else args.tile_margin,
                                      **solver_overrides(args))
    print(f"wrote {len(written)} stitched result file(s) to {out}: " + " ".join(str(p) for p in written[:4])
          + (" ..." if len(written) > 4 else ""))


def run_compare(args):
    from .io.atomic import protect_inputs
    from .report import compare_results, markdown_table

    out = prepare_output_folder(args.out or Path(args.results[0]).parent)
    protect_inputs(args.results)
    report = compare_results(args.results, out)
    print(markdown_table(report["rows"]), end="")
    print("wrote " + ", ".join(str(p) for p in [*report["figures"], *report["json"], *report["markdown"]]))


def run_info(args):
    from .report import describe_file

    texts = []
    for path in args.files:
        text = describe_file(path)
        if args.check_geometry:
            from .io.geometry_check import check_geometry
            from .io.measurement import read_measurement

            measurement = read_measurement(path)  # a result file: one line, it has no frames
            text += "\n" + check_geometry(measurement.acquisition, measurement.frames, measurement.exposure,
                                          measurement.background, measurement.exposure_follows_geometry).report()
        texts.append(text)
    print("\n\n".join(texts))


def run_sense(args):
    from .report import compare_results, markdown_table
    from .sense import run_sense as solve_sense

    out = prepare_output_folder(args.out)
    written = solve_sense(problem=args.problem, n=args.n, truth_rank=args.truth_rank, measurements=args.measurements,
                          noise=args.noise, is_complex=args.complex, run=run_options(args), out_dir=out,
                          progress=not args.no_progress, shape=args.shape, reference=args.reference,
                          **solver_overrides(args))
    report = compare_results(written, out)
    print(markdown_table(report["rows"]), end="")
    if args.reference:
        from .reference import nuclear_summary

        print(nuclear_summary(written))
    print("wrote " + ", ".join(str(p) for p in [*written, *report["figures"], *report["markdown"]]))


def run_demo(args):
    from .demo import run_demo as demo

    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--iters must be at least 1, got {args.max_iters}")
    prepare_output_folder(args.out)
    demo(out_dir=args.out, run=run_options(args), progress=not args.no_progress, **solver_overrides(args))


def run_udv_demo(args):
    from .nn_demo import run_udv_demo as udv_demo

    if args.steps < 1 or args.units < 1:
        raise ValueError(f"--steps and --units must be at least 1, got {args.steps} and {args.units}")
    prepare_output_folder(args.out)
    udv_demo(out_dir=args.out, steps=args.steps, seed=args.seed, units=args.units, progress=not args.no_progress)


COMMANDS = {"simulate": run_simulate, "import": run_import, "reconstruct": run_reconstruct,
            "compare": run_compare, "info": run_info, "sense": run_sense, "demo": run_demo,
            "udv-demo": run_udv_demo}


def show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line, without source locations."""
    print(f"ptycho-app: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def progress_records(enabled: bool):
    """With ``--no-progress``: the solver's periodic one-line progress records (INFO on the
    ``ptycho_app`` logger, see :func:`ptycho_app.session.run`) on stderr, with the time."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("ptycho_app")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ptycho-app: progress %(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_command_line(argv=None) -> int:
    """Parse and run one command; returns the exit code (2 for a user's mistake, with a one-line message)."""
    try:
        args = get_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a one-line usage error
        return int(exit_.code or 0)
    from .batch import Interrupted
    from .io.atomic import release_outputs
    from .resources import is_out_of_memory, out_of_memory_message
    from .solvers import SolverDivergedError

    previous = warnings.showwarning
    warnings.showwarning = show_warning
    sigint_before_message = None
    try:
        with progress_records(getattr(args, "no_progress", False)):
            COMMANDS[args.command](args)
    except SolverDivergedError as error:  # a RuntimeError: before the out-of-memory clause
        print(f"ptycho-app {args.command}: solver diverged: {error}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as error:  # torch (CPU and CUDA) and NumPy allocation failures
        if not is_out_of_memory(error):
            raise
        print(f"ptycho-app {args.command}: {out_of_memory_message(error)}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"ptycho-app {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as interrupted:  # reconstruct: which result files were written, which not
        # this message is the final word: a further Ctrl-C must not add a second, different one
        sigint_before_message = signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"ptycho-app {args.command}: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"ptycho-app {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous
        release_outputs()
        if sigint_before_message is not None:
            signal.signal(signal.SIGINT, sigint_before_message)
    return 0


def main(argv=None) -> int:
    """The console entry point: :func:`run_command_line`, with Ctrl-C at any moment (even while torch
    is still being imported) ending in one line and exit code 130 instead of a traceback.

    This module imports only the standard library at its top, so the handler is in place before
    any heavy module loads.
    """
    try:
        return run_command_line(argv)
    except KeyboardInterrupt:
        print("ptycho-app: interrupted", file=sys.stderr)
        return 130
    finally:
        if argv is None:  # this process's own command is over: a late Ctrl-C must not break its exit
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
