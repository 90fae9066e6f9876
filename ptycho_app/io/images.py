"""Import FP frames from image files and HDF5 groups, with the LED geometry given as a grid.

Sources ``ptycho-app import`` reads besides MATLAB ``.mat`` files (:mod:`ptycho_app.io.matlab`):

- a folder of TIFF/PNG frames, or a glob (``'frames/*.tif'``): one frame per file (a multi-page
  TIFF gives one frame per page), in the natural order of the file names (``img2`` before
  ``img10``) unless a frame-order file lists the names;
- one multi-page TIFF stack;
- an HDF5 file whose frames sit in a dataset, possibly inside a group (``section0/ptychogram``,
  as PyTables files store them), frame axis first.

TIFF is read with tifffile, PNG (and other formats) with imageio. The LED geometry comes from
the simulation's grid (:func:`ptycho_app.simulation.led_array`): ``leds x leds`` LEDs, pitch,
distance, raster or spiral order, centre offset and rotation, or a grid with an LED-order file.

Every problem with a user's file raises :class:`~ptycho_app.io.errors.InputFileError`: one line
naming the file, the flag or field, and what was expected.
"""

from __future__ import annotations

import csv
import glob
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import HDF5_ERRORS, InputFileError, one_line

#: File name endings read as frames from a folder.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
#: File name endings read as HDF5.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs")
#: Datasets tried in this order as the frames of an HDF5 file without ``--frames-key``.
HDF5_FRAME_NAMES = ("ptychogram", "section0/ptychogram", "frames", "images", "data")


@dataclass
class ImportedFrames:
    """Frames read from image files or an HDF5 file.

    Attributes
    ----------
    frames : (L, M, M) float32
        In frame order, as measured (no conversion but to float32).
    names : list of str
        Where each frame came from (``file`` or ``file[page]``, ``file:dataset[l]``).
    notes : list of str
        What the reader did (files found, order, crop, layout).
    """

    frames: np.ndarray
    names: list[str]
    notes: list[str] = field(default_factory=list)


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: ``img2.tif`` before ``img10.tif``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_glob(source: str) -> bool:
    return any(char in str(source) for char in "*?[")


def source_kind(source) -> str:
    """``"mat"``, ``"hdf5"``, ``"tiff"`` (one stack), ``"folder"`` or ``"glob"``."""
    text = str(source)
    if is_glob(text) and not Path(text).exists():
        return "glob"
    path = Path(text)
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return "mat"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    raise InputFileError(path, "unknown kind of input: expected a .mat or HDF5 (.h5) file, a TIFF stack, "
                         "a folder of TIFF/PNG frames or a quoted glob ('frames/*.tif')")


def read_frame_order(path) -> list[str]:
    """File names, one per line (the first column of a CSV); ``#`` comments and a header allowed."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file", field="--frame-order")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and row[0].strip() and not row[0].startswith("#")]
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputFileError(path, f"not a text/CSV list of file names: {error}", field="--frame-order") from None
    names = [row[0].strip() for row in rows]
    if names and names[0].lower() in ("file", "filename", "file_name", "name", "frame"):
        names = names[1:]
    if not names:
        raise InputFileError(path, "no file names: expected one frame file name per line", field="--frame-order")
    return names


def frame_files(source, frame_order=None) -> list[Path]:
    """The frame files of a folder or glob, in natural order or in the order of ``frame_order``.

    Raises
    ------
    InputFileError
        A missing folder, no matching files, or an order file naming files that are not there.
    """
    text = str(source)
    if source_kind(text) == "glob":
        files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
        folder = Path(text).parent
        if not files:
            raise InputFileError(text, "no files match this pattern")
    else:
        folder = Path(text)
        if not folder.is_dir():
            raise InputFileError(folder, "no such folder")
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise InputFileError(folder, f"no frames: expected {', '.join(IMAGE_SUFFIXES)} files in this folder")
    if frame_order is None:
        return sorted(files, key=lambda p: natural_key(p.name))
    by_name = {p.name: p for p in files}
    names = read_frame_order(frame_order)
    missing = [name for name in names if Path(name).name not in by_name]
    if missing:
        raise InputFileError(frame_order, f"{len(missing)} listed file(s) not among the {len(files)} in {folder}: "
                             + ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""), field="--frame-order")
    repeated = len(names) - len({Path(n).name for n in names})
    if repeated:
        raise InputFileError(frame_order, f"{repeated} file name(s) listed twice", field="--frame-order")
    return [by_name[Path(name).name] for name in names]


def read_image_file(path) -> np.ndarray:
    """The frames of one image file: (k, H, W), k pages of a TIFF (1 for a PNG or a plain TIFF)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            with warnings.catch_warnings():  # imageio's notes on its other plugins
                warnings.simplefilter("ignore")
                image = iio.imread(path, plugin="pillow")
    except Exception as error:  # noqa: BLE001 (any reader failure is the user's file)
        raise InputFileError(path, f"cannot be read as an image ({type(error).__name__}: "
                             f"{one_line(error)[:200]})") from None
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and min(image.shape[:2]) > 4:
        raise InputFileError(path, f"a colour image (shape {image.shape}): expected grey camera frames")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputFileError(path, f"expected 2-D grey frames or a stack of them, got shape {image.shape} "
                             f"{image.dtype}")
    return image


def crop_center(frames, crop, where) -> np.ndarray:
    """The central ``crop x crop`` pixels (rows ``H // 2 - crop // 2`` on) of (L, H, W) frames."""
    _, H, W = frames.shape
    if not 2 <= crop <= min(H, W):
        raise InputFileError(where, f"expected an integer in 2..{min(H, W)} (the frames are {H} x {W}), "
                             f"got {crop}", field="--crop")
    top, left = H // 2 - crop // 2, W // 2 - crop // 2
    return np.ascontiguousarray(frames[:, top:top + crop, left:left + crop])


def square_frames(frames, where, crop=None) -> tuple[np.ndarray, list[str]]:
    """Frames cropped (``crop``) and checked: square, finite, float32."""
    notes = []
    if crop is not None:
        notes.append(f"crop: the central {crop} x {crop} of {frames.shape[1]} x {frames.shape[2]}")
        frames = crop_center(frames, crop, where)
    _, H, W = frames.shape
    if H != W:
        raise InputFileError(where, f"frames are {H} x {W}: expected square frames (pass --crop C to keep the "
                             "central C x C)")
    frames = frames.astype(np.float32)
    if not np.all(np.isfinite(frames)):
        raise InputFileError(where, f"{int(np.count_nonzero(~np.isfinite(frames)))} value(s) are NaN or Inf")
    return frames, notes


def read_image_frames(source, frame_order=None, crop=None) -> ImportedFrames:
    """Frames from a folder, a glob or one TIFF stack (see the module's docstring)."""
    files = [Path(source)] if source_kind(source) == "tiff" else frame_files(source, frame_order)
    if len(files) == 1 and not files[0].is_file():
        raise InputFileError(files[0], "no such file")
    stacks, names, shapes = [], [], {}
    for path in files:
        image = read_image_file(path)
        stacks.append(image)
        shapes.setdefault(image.shape[1:], path)
        names += [path.name] if len(image) == 1 else [f"{path.name}[{page}]" for page in range(len(image))]
    if len(shapes) > 1:
        (first, first_path), (other, other_path) = list(shapes.items())[:2]
        raise InputFileError(other_path, f"frame size {other[0]} x {other[1]} differs from {first_path.name}'s "
                             f"{first[0]} x {first[1]}: expected frames of one size")
    frames = np.concatenate(stacks)
    where = source if len(files) > 1 else files[0]
    order = ("the order of " + Path(frame_order).name) if frame_order else "natural order of the names"
    notes = [f"frames: {len(frames)} from {len(files)} file(s) ({files[0].name} ... {files[-1].name}, {order}), "
             f"{stacks[0].dtype}"]
    frames, more = square_frames(frames, where, crop)
    return ImportedFrames(frames, names, notes + more)


def hdf5_frame_datasets(handle) -> list[str]:
    """Paths of the 3-D real datasets in an open HDF5 file (groups searched too)."""
    import h5py

    found = []

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and item.ndim == 3 and item.dtype.kind in "iuf":
            found.append(name)

    handle.visititems(visit)
    return found


def read_hdf5_frames(path, frames_key=None, crop=None) -> ImportedFrames:
    """Frames from an HDF5 dataset (``frames_key`` may sit in groups: ``section0/ptychogram``).

    The frame axis is first ``(L, M, M)``; ``(M, M, L)`` (frame axis last, as MATLAB writes) is
    recognised when only the first two axes are equal.
    """
    import h5py

    from .errors import require_regular_file

    path = require_regular_file(path)
    try:
        with h5py.File(path, "r") as handle:
            candidates = hdf5_frame_datasets(handle)
            if frames_key is not None:
                if frames_key.strip("/") not in candidates:
                    raise InputFileError(path, "no 3-D real dataset there; 3-D datasets present: "
                                         f"{', '.join(candidates) or 'none'}", field=f"--frames-key {frames_key}")
                key = frames_key.strip("/")
            else:
                key = next((name for name in HDF5_FRAME_NAMES if name in candidates), None)
                if key is None and len(candidates) == 1:
                    key = candidates[0]
                if key is None:
                    raise InputFileError(path, "which dataset holds the frames? 3-D datasets present: "
                                         f"{', '.join(candidates) or 'none'} (pass --frames-key GROUP/NAME)")
            raw = np.asarray(handle[key][()])
    except InputFileError:
        raise
    except HDF5_ERRORS as error:
        raise InputFileError(path, f"not a readable HDF5 file ({one_line(error)})") from None
    notes = [f"frames: dataset {key!r}, shape {raw.shape} {raw.dtype}"]
    if raw.shape[0] == raw.shape[1] != raw.shape[2]:
        raw = np.moveaxis(raw, 2, 0)
        notes[0] += " (frame axis last, moved first)"
    frames, more = square_frames(raw, path, crop)
    return ImportedFrames(frames, [f"{key}[{index}]" for index in range(len(frames))], notes + more)


# ---- LED geometry ------------------------------------------------------------------------------


def load_table(path: Path, flag: str, expected: str) -> np.ndarray:
    """(rows, columns) float64 of a text/CSV table (``#`` comments, one header line allowed); an
    :class:`InputFileError` naming ``flag`` and what was ``expected`` otherwise."""
    if not path.is_file():
        raise InputFileError(path, "no such file", field=flag)
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2, comments="#")
    except ValueError:
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, comments="#", skiprows=1)
        except ValueError as error:
            raise InputFileError(path, f"expected {expected} ({error})", field=flag) from None


def read_led_order(path, leds: int) -> np.ndarray:
    """Which LED of the ``leds x leds`` grid lit each frame: (L,) int64 raster indices (``row * leds + col``).

    The file (text/CSV, a header line allowed) holds one line per frame: a raster index, or
    ``row, col``; 0-based, rows along y.
    """
    path = Path(path)
    table = load_table(path, "--led-order", "one LED per line: a raster index, or row, col")
    if table.shape[1] not in (1, 2) or len(table) == 0 or np.any(table != np.round(table)):
        raise InputFileError(path, f"expected integer columns (index) or (row, col), got shape {table.shape}",
                             field="--led-order")
    table = table.astype(np.int64)
    if table.shape[1] == 2:
        if np.any(table < 0) or np.any(table >= leds):
            raise InputFileError(path, f"rows and columns must lie in 0..{leds - 1} (--leds {leds})",
                                 field="--led-order")
        return table[:, 0] * leds + table[:, 1]
    index = table[:, 0]
    if np.any(index < 0) or np.any(index >= leds * leds):
        raise InputFileError(path, f"indices must lie in 0..{leds * leds - 1} (--leds {leds})", field="--led-order")
    return index


def grid_positions(leds, pitch, center_offset=(0.0, 0.0), rotation=0.0, order="raster", led_order=None):
    """LED positions (L, 2) (y, x) in metres of a square grid, from the simulation's own grid code.

    ``led_order`` (an LED-order file) picks the LED of each frame from the raster grid instead of
    ``order``.
    """
    from ..simulation import led_array

    if led_order is None:
        return led_array(leds, pitch, center_offset, rotation, order)
    return led_array(leds, pitch, center_offset, rotation, "raster")[read_led_order(led_order, leds)]


def read_exposure_table(path, n_frames: int) -> np.ndarray:
    """(L,) float64 exposures: one number per line (or the last column of a CSV), frame order."""
    path = Path(path)
    table = load_table(path, "--exposure-table", "one exposure per line")
    values = table[:, -1].astype(np.float64)
    if len(values) != n_frames:
        raise InputFileError(path, f"{len(values)} exposures for {n_frames} frames", field="--exposure-table")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise InputFileError(path, "expected positive finite exposures", field="--exposure-table")
    return values


def corner_background(frames, bright_field, size=None) -> np.ndarray:
    """Per-frame background level from the frames' dark corners.

    Each frame's level is the median of its four ``size x size`` corners (default ``M // 8``, at
    least 2). Bright-field frames are lit all over, so they take the median level of the dark-field
    frames instead (their own, when no frame is dark-field).

    Parameters
    ----------
    frames : (L, M, M) real
    bright_field : (L,) bool
        The predicted bright-field frames (:attr:`Acquisition.bright_field`).
    size : int, optional

    Returns
    -------
    (L,) float64
    """
    frames = np.asarray(frames)
    M = frames.shape[1]
    c = size or max(2, M // 8)
    corners = np.concatenate([frames[:, :c, :c], frames[:, :c, -c:], frames[:, -c:, :c], frames[:, -c:, -c:]],
                             axis=1)
    level = np.median(corners.reshape(len(frames), -1), axis=1).astype(np.float64)
    dark = ~np.asarray(bright_field, dtype=bool)
    if dark.any():
        level[~dark] = np.median(level[dark])
    return level
