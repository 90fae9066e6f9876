"""Import Fourier ptychography data in the common MATLAB layout.

A typical FP ``.mat`` file holds a stack of low-resolution frames with the frame index LAST
(MATLAB's ``(M, M, L)``), the wavelength, sometimes a defocus and a calibrated pupil. The
illumination comes either as a CSV table of ``kx, ky`` in NA units (one row per frame) or as
``kx``/``ky`` vectors inside the ``.mat``. :func:`read_matlab_fp` turns this into frames of shape
``(L, M, M)`` (frame axis first, as in the HDF5 format) and an
:class:`~ptycho_app.physics.acquisition.Acquisition`.

Sign convention: many MATLAB codes store ``kx, ky`` as MINUS the direction sines of the
illumination; ``sines_sign=-1`` (the default) gives ``(s_y, s_x) = -(ky, kx)``. Pairs are
ordered ``(y, x)`` = (rows, columns) as everywhere in this project.

Every problem with a user's file raises :class:`~ptycho_app.io.errors.InputFileError` with one
line naming the file, the variable or column, and what was expected versus found.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from ..physics.acquisition import Acquisition, AcquisitionError
from ..validation import is_finite_real, is_integer
from .errors import InputFileError

#: Frame variables tried in this order before falling back to "the single 3-D real array".
FRAME_NAMES = ("imlow_HDR", "imlow", "Iall", "imseqlow", "I", "images", "frames", "ptychogram")
#: Wavelength variables (metres) tried in this order.
WAVELENGTH_NAMES = ("wlength", "wavelength", "lambda")
#: Defocus variables (metres) tried in this order.
DEFOCUS_NAMES = ("z",)
#: ``(kx, ky)`` variable pairs (NA units) looked for in the ``.mat`` when no CSV is given.
K_NAMES = (("kx_na", "ky_na"), ("kx", "ky"))
#: Largest upsampling factor tried when ``upsample`` is not given.
MAX_UPSAMPLE = 16
#: A wavelength above this (metres) is taken for a unit mistake (nm or um).
MAX_WAVELENGTH = 1e-3
#: A defocus read from the file above this (metres) is taken for a unit mistake or an LED distance.
MAX_DEFOCUS = 1e-3
#: How messages name the arguments (Python keywords); ``read_matlab_fp(names=...)`` replaces them
#: (the command line passes its flags: ``--wavelength``, not ``wavelength=``).
ARGUMENT_NAMES = {"wavelength": "wavelength=", "defocus": "defocus=", "illumination": "illumination=...",
                  "frames_key": "frames_key", "camera_pixel": "camera_pixel", "pixel_size": "pixel_size",
                  "crop": "crop", "pupil_key": "pupil_key=None"}


@dataclass
class MatlabImport:
    """Frames and acquisition read from a MATLAB FP file.

    Attributes
    ----------
    frames : (L, M, M) float32
        Low-resolution frames, frame axis first, in the order of the illumination rows.
    acquisition : Acquisition
        Optics and per-frame direction sines ``(s_y, s_x)``.
    frame_type : str
        ``"intensity"`` or ``"amplitude"``, as the user declared (the values are not converted).
    notes : list of str
        What was assumed: frames variable and its original shape, sign convention, sources of
        wavelength/defocus/pupil, chosen upsample.
    """

    frames: np.ndarray
    acquisition: Acquisition
    frame_type: str
    notes: list[str] = field(default_factory=list)


# ---- low-level readers -------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(path, "file not found")
    if not path.is_file():
        raise InputFileError(path, "not a regular file")


def _h5_variable(dataset: h5py.Dataset):
    """One MATLAB v7.3 variable as a NumPy array in MATLAB's axis order, or None if not numeric."""
    matlab_class = dataset.attrs.get("MATLAB_class", b"")
    if isinstance(matlab_class, bytes):
        matlab_class = matlab_class.decode("ascii", "replace")
    if matlab_class in ("char", "cell", "struct", "function_handle") or "MATLAB_empty" in dataset.attrs:
        return None
    data = dataset[()]
    names = data.dtype.names if isinstance(data, np.ndarray) else None
    if names and {"real", "imag"} <= set(names):
        data = data["real"] + 1j * data["imag"]
    data = np.asarray(data)
    if data.dtype.names or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        return None
    return data.T  # v7.3 stores arrays transposed (column-major written as row-major)


def load_mat_variables(path) -> tuple[dict[str, np.ndarray], str]:
    """All variables of a MATLAB file, v5 (scipy) or v7.3 (HDF5, h5py).

    Parameters
    ----------
    path : str or Path
        The ``.mat`` file.

    Returns
    -------
    variables : dict of str to ndarray
        Variable name to array, in MATLAB's axis order (v7.3 arrays are transposed back).
        v7.3 variables that are not numeric (char, cell, struct) are left out.
    version : str
        ``"v5"`` or ``"v7.3"``.

    Raises
    ------
    InputFileError
        The file is missing, truncated or not a MATLAB file.
    """
    path = Path(path)
    _check_file(path)
    if h5py.is_hdf5(str(path)):
        try:
            with h5py.File(path, "r") as handle:
                variables = {}
                for name, item in handle.items():
                    if isinstance(item, h5py.Dataset) and not name.startswith("#"):
                        value = _h5_variable(item)
                        if value is not None:
                            variables[name] = value
        except Exception as exc:  # h5py raises OSError, KeyError, ValueError... for damaged files
            raise InputFileError(path, f"cannot read this MATLAB v7.3 (HDF5) file: {exc}") from exc
        return variables, "v7.3"
    try:
        raw = scipy.io.loadmat(str(path), appendmat=False)
    except NotImplementedError as exc:  # an HDF5-based file h5py did not recognise
        raise InputFileError(path, f"a MATLAB v7.3 (HDF5) file that h5py cannot open (truncated?): {exc}") from exc
    except Exception as exc:  # scipy raises MatReadError, ValueError, TypeError, OSError...
        raise InputFileError(path, f"not a readable MATLAB .mat file (v5 or v7.3), or it is truncated: {exc}") from exc
    return {k: v for k, v in raw.items() if not k.startswith("__")}, "v5"


def read_illumination_csv(path, kx_key: str = "kx_na", ky_key: str = "ky_na") -> tuple[np.ndarray, np.ndarray]:
    """Read a per-frame illumination table.

    The CSV has a header row; columns ``kx_key`` and ``ky_key`` are required, a ``frame`` column
    (0-based frame index of each row) is optional, other columns are ignored.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    kx_key, ky_key : str
        Names of the ``kx`` and ``ky`` columns.

    Returns
    -------
    frame_index : (L,) int64
        Frame index of each row (``0 .. L-1`` in file order when there is no ``frame`` column).
    k : (L, 2) float64
        ``(ky, kx)`` of each row, as stored (no sign change).

    Raises
    ------
    InputFileError
        Missing file or column, a non-numeric or non-finite value, a ragged row, no data rows,
        or a ``frame`` column that is not a permutation of ``0 .. L-1``.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(path, f"not a readable CSV text file: {exc}") from exc
    if not rows:
        raise InputFileError(path, f"empty file: expected a header row with columns {kx_key!r}, {ky_key!r}")
    header = [cell.strip() for cell in rows[0]]
    for key in (kx_key, ky_key):
        if key not in header:
            raise InputFileError(path, f"column not found; columns present: {', '.join(header)}", field=key)
    data = rows[1:]
    if not data:
        raise InputFileError(path, "no data rows after the header")
    wanted = {name: header.index(name) for name in (kx_key, ky_key, "frame") if name in header}
    values = {name: np.empty(len(data)) for name in wanted}
    for r, row in enumerate(data, start=2):  # line numbers as an editor shows them
        if len(row) != len(header):
            raise InputFileError(path, f"line {r} has {len(row)} cells, the header has {len(header)}")
        for name, col in wanted.items():
            text = row[col].strip()
            try:
                value = float(text)
            except ValueError:
                raise InputFileError(path, f"line {r}: expected a number, found {text!r}", field=name) from None
            if not np.isfinite(value):
                raise InputFileError(path, f"line {r}: expected a finite number, found {text!r}", field=name)
            values[name][r - 2] = value
    n = len(data)
    if "frame" in values:
        frame = values["frame"]
        if np.any(frame != np.round(frame)):
            raise InputFileError(path, "expected integer frame indices", field="frame")
        frame_index = frame.astype(np.int64)
        if not np.array_equal(np.sort(frame_index), np.arange(n)):
            repeats = n - len(np.unique(frame_index))
            found = f"{frame_index.min()}..{frame_index.max()}" + (f" with {repeats} repeated" if repeats else "")
            if np.array_equal(np.sort(frame_index), np.arange(1, n + 1)):
                found += " (1-based? this column is 0-based)"
            raise InputFileError(
                path, f"expected each frame index 0..{n - 1} exactly once, found {found}", field="frame"
            )
    else:
        frame_index = np.arange(n, dtype=np.int64)
    k = np.stack([values[ky_key], values[kx_key]], axis=1)
    return frame_index, k


# ---- helpers on the variables ------------------------------------------------------------


def _scalar(variables, name, path) -> float:
    value = np.asarray(variables[name])
    if value.size != 1 or not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        raise InputFileError(path, f"expected a real scalar, found shape {value.shape} {value.dtype}", field=name)
    number = float(value.reshape(()))
    if not np.isfinite(number):
        raise InputFileError(path, f"expected a finite number, found {number}", field=name)
    return number


def _is_real_numeric(array) -> bool:
    return (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)) and array.dtype != bool


def _pick_frames(variables, frames_key, path, names=ARGUMENT_NAMES) -> str:
    if frames_key is not None:
        if frames_key not in variables:
            raise InputFileError(
                path,
                f"variable not found; variables present: {', '.join(sorted(variables)) or 'none'}",
                field=frames_key,
            )
        return frames_key
    for name in FRAME_NAMES:
        if name in variables and np.ndim(variables[name]) == 3 and _is_real_numeric(variables[name]):
            return name
    candidates = [n for n, v in variables.items() if np.ndim(v) == 3 and _is_real_numeric(np.asarray(v))]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        found = ", ".join(f"{n} {np.shape(v)}" for n, v in sorted(variables.items())) or "none"
        raise InputFileError(
            path,
            f"no 3-D real array to use as frames (tried {', '.join(FRAME_NAMES)}); variables: {found}",
            field="frames",
        )
    listed = ", ".join(f"{n} {variables[n].shape}" for n in sorted(candidates))
    raise InputFileError(path, f"several 3-D arrays could be the frames ({listed}): pass {names['frames_key']}",
                         field="frames")


def _frame_axis(shape, n_rows, path, key, illum_path) -> int:
    """The axis of ``shape`` holding the frames: length ``n_rows`` with square frames on the other two."""
    square = [a for a in range(3) if len({shape[b] for b in range(3) if b != a}) == 1]
    if not square:
        raise InputFileError(path, f"frames must be square: no two axes of shape {shape} are equal", field=key)
    matching = [a for a in square if shape[a] == n_rows]
    if not matching:
        axis = 2 if 2 in square else square[0]
        raise InputFileError(
            illum_path,
            f"{n_rows} illumination rows, but {key!r} in {Path(path).name} holds {shape[axis]} frames "
            f"(shape {shape}, frame axis {axis})",
            field="rows",
        )
    return 2 if 2 in matching else matching[0]


def _illumination_from_mat(variables, kx_key, ky_key, path, names=ARGUMENT_NAMES):
    pairs = [(kx_key, ky_key)] + [pair for pair in K_NAMES if pair != (kx_key, ky_key)]
    for kx_name, ky_name in pairs:
        present = [n for n in (kx_name, ky_name) if n in variables]
        if len(present) == 1:
            missing = ky_name if present[0] == kx_name else kx_name
            raise InputFileError(path, f"found {present[0]!r} but not {missing!r}", field=missing)
        if not present:
            continue
        vectors = []
        for name in (ky_name, kx_name):
            value = np.asarray(variables[name])
            if not _is_real_numeric(value) or value.size == 0 or value.size != max(value.shape):
                raise InputFileError(
                    path,
                    f"expected a real vector (one value per frame), found shape {value.shape} {value.dtype}",
                    field=name,
                )
            vector = value.astype(np.float64).ravel()
            if not np.all(np.isfinite(vector)):
                raise InputFileError(path, "holds NaN or Inf", field=name)
            vectors.append(vector)
        if vectors[0].size != vectors[1].size:
            raise InputFileError(
                path, f"{ky_name!r} has {vectors[0].size} values but {kx_name!r} has {vectors[1].size}", field=ky_name
            )
        return (kx_name, ky_name), np.stack(vectors, axis=1)
    pairs_listed = ", ".join(f"{a}/{b}" for a, b in pairs)
    raise InputFileError(
        path,
        f"no illumination: pass a CSV ({names['illumination']}) or store one of {pairs_listed} in the file",
        field="illumination",
    )


def _pupil(variables, pupil_key, M, path):
    """The pupil array or None, and a note."""
    if pupil_key is None:
        return None, "pupil: none (left out: --ignore-pupil)"
    if pupil_key not in variables:
        return None, f"pupil: none (no variable {pupil_key!r})"
    value = np.asarray(variables[pupil_key])
    numeric = np.issubdtype(value.dtype, np.number) and value.dtype != bool
    if numeric and value.size == 1 and value.reshape(()) == 0:
        return None, f"pupil: none ({pupil_key!r} is a scalar 0)"
    if not numeric or value.shape != (M, M):
        raise InputFileError(
            path,
            f"expected a ({M}, {M}) pupil array or a scalar 0, found shape {value.shape} {value.dtype}",
            field=pupil_key,
        )
    pupil = value.astype(np.complex128)
    if not np.all(np.isfinite(pupil)):
        raise InputFileError(path, "pupil holds NaN or Inf", field=pupil_key)
    if not np.any(pupil):
        raise InputFileError(path, "pupil is all zeros (it would block all light)", field=pupil_key)
    return pupil, f"pupil: {pupil_key!r} {value.shape} {value.dtype}, taken as fftshifted (DC at pixel {M // 2})"


# ---- the importer ------------------------------------------------------------------------


def read_matlab_fp(
    mat_path,
    illumination=None,
    *,
    frames_key: str | None = None,
    frame_type: str = "intensity",
    wavelength: float | None = None,
    na: float,
    magnification: float,
    camera_pixel: float | None = None,
    pixel_size: float | None = None,
    defocus: float | None = None,
    pupil_key: str | None = "aberration",
    upsample: int | None = None,
    kx_key: str = "kx_na",
    ky_key: str = "ky_na",
    sines_sign: float = -1.0,
    crop: int | None = None,
    direction_sines=None,
    names: dict | None = None,
) -> MatlabImport:
    """Read FP frames and illumination in the common MATLAB layout.

    Parameters
    ----------
    mat_path : str or Path
        MATLAB file, v5 (read with scipy) or v7.3 (HDF5, read with h5py).
    illumination : str or Path, optional
        CSV with columns ``kx_key``, ``ky_key`` (NA units) and optionally ``frame`` (0-based index
        of the frame each row describes). Without it, ``kx_key``/``ky_key`` (then ``kx_na``/
        ``ky_na``, ``kx``/``ky``) vectors are looked for in the ``.mat``, one value per frame in
        frame order.
    frames_key : str, optional
        Frames variable. Default: the first of :data:`FRAME_NAMES` that is a 3-D real array,
        else the only 3-D real array in the file.
    frame_type : {"intensity", "amplitude"}
        What the frames hold; recorded, not converted.
    wavelength : float, optional
        Metres. Default: ``wlength``, ``wavelength`` or ``lambda`` in the file.
    na : float
        Objective numerical aperture.
    magnification : float
        Objective magnification.
    camera_pixel : float, optional
        Camera pixel in metres. Give exactly one of ``camera_pixel`` and ``pixel_size``.
    pixel_size : float, optional
        Low-resolution pixel at the sample in metres (``camera_pixel = pixel_size * magnification``).
    defocus : float, optional
        Metres. Default: ``z`` in the file, else 0.
    pupil_key : str or None
        Variable holding an ``(M, M)`` complex pupil (fftshifted, DC at ``M // 2``); a scalar 0 or
        a missing variable means no pupil; None ignores it.
    upsample : int, optional
        ``N = upsample * M``. Default: the smallest integer ``>= 2`` (up to :data:`MAX_UPSAMPLE`)
        for which every illumination window fits inside the ``N x N`` spectrum.
    kx_key, ky_key : str
        Names of the ``kx``, ``ky`` columns (CSV) or variables (``.mat``).
    sines_sign : float
        Direction sines ``(s_y, s_x) = sines_sign * (ky, kx)``; ``-1`` when ``kx, ky`` are minus
        the direction sines (the UConn code and the shared blood-smear CSVs).
    crop : int, optional
        Keep the central ``crop x crop`` pixels of every frame: rows and columns
        ``M // 2 - crop // 2`` onwards, so the centre pixel ``M // 2`` becomes ``crop // 2``.
        Not supported together with a pupil (a pupil cannot be cropped in frequency space).
    direction_sines : (L, 2) float, optional
        The illumination ``(s_y, s_x)`` of each frame (for example from an LED grid), instead of
        ``illumination`` or ``kx``/``ky`` in the file.
    names : dict, optional
        How messages name the arguments (see :data:`ARGUMENT_NAMES`; the command line passes its
        flags), including the :class:`Acquisition` fields in errors of the optics.

    Returns
    -------
    MatlabImport
        ``frames`` (L, M, M) float32 in the order of the illumination rows, the acquisition,
        ``frame_type`` and ``notes``.

    Raises
    ------
    InputFileError
        Any problem with the files or the arguments, as one line naming the file and the field.
    """
    mat_path = Path(mat_path)
    say = {**ARGUMENT_NAMES, **(names or {})}
    if frame_type not in ("intensity", "amplitude"):
        raise InputFileError(mat_path, f"expected 'intensity' or 'amplitude', got {frame_type!r}", field="frame_type")
    if (camera_pixel is None) == (pixel_size is None):
        given = "both were given" if camera_pixel is not None else "neither was given"
        raise InputFileError(
            mat_path,
            f"give exactly one of {say['camera_pixel']} (camera, m) and {say['pixel_size']} (at the sample, m); "
            f"{given}",
            field="camera_pixel/pixel_size",
        )
    if not (is_finite_real(sines_sign) and sines_sign != 0):
        raise InputFileError(mat_path, f"expected a non-zero number, got {sines_sign!r}", field="sines_sign")
    variables, version = load_mat_variables(mat_path)
    notes = []

    # frames variable (before illumination: a wrong frames variable is the likelier mistake)
    key = _pick_frames(variables, frames_key, mat_path, say)
    raw = np.asarray(variables[key])
    if not _is_real_numeric(raw):
        raise InputFileError(mat_path, f"expected real numbers, found {raw.dtype}", field=key)
    if raw.ndim != 3:
        raise InputFileError(mat_path, f"expected a 3-D array (M, M, L), found shape {raw.shape}", field=key)

    # illumination
    if direction_sines is not None:
        illum_path = mat_path
        k = sines_sign * np.asarray(direction_sines, dtype=np.float64)  # sines = sines_sign * k below
        frame_index, k_names, source = np.arange(len(k)), ("s_x", "s_y"), "the LED geometry given"
    elif illumination is not None:
        illum_path = Path(illumination)
        frame_index, k = read_illumination_csv(illum_path, kx_key, ky_key)
        k_names = (kx_key, ky_key)
        source = f"CSV {illum_path.name}"
    else:
        illum_path = mat_path
        k_names, k = _illumination_from_mat(variables, kx_key, ky_key, mat_path, say)
        frame_index = np.arange(len(k))
        source = f"variables {k_names[0]!r}, {k_names[1]!r} in {mat_path.name}"
    n_rows = len(k)
    radius = np.hypot(k[:, 0], k[:, 1])
    if radius.max() >= 1:
        raise InputFileError(
            illum_path,
            f"expected NA units (kx^2 + ky^2 < 1), found up to {radius.max():.4g}: convert wavenumbers to NA",
            field=f"{k_names[0]}/{k_names[1]}",
        )

    # frames: frame axis first, rows reordered by the frame index
    axis = _frame_axis(raw.shape, n_rows, mat_path, key, illum_path)
    frames = np.moveaxis(raw, axis, 0)[frame_index].astype(np.float32)
    if not np.all(np.isfinite(frames)):
        bad = int(np.count_nonzero(~np.isfinite(frames)))
        raise InputFileError(mat_path, f"{bad} value(s) are NaN or Inf (or overflow float32)", field=key)
    notes.append(
        f"frames: variable {key!r} ({version}), shape {raw.shape} {raw.dtype}, frame axis {axis}"
        f" -> {frames.shape} float32"
    )
    if not np.array_equal(frame_index, np.arange(n_rows)):
        notes.append("frames reordered by the CSV 'frame' column (output order = CSV row order)")
    notes.append(f"illumination: {source}; direction sines (s_y, s_x) = {sines_sign:+g} * ({k_names[1]}, {k_names[0]})"
                 if direction_sines is None else f"illumination: {source}")
    sines = sines_sign * k

    M = M_full = frames.shape[1]
    if crop is not None:
        if not is_integer(crop) or not 2 <= crop <= M:
            raise InputFileError(mat_path, f"expected an integer in 2..{M} (frame size), got {crop!r}",
                                 field=say["crop"])
        start = M // 2 - int(crop) // 2
        frames = np.ascontiguousarray(frames[:, start : start + crop, start : start + crop])
        notes.append(f"crop: rows and columns {start}..{start + crop - 1} of {M} (frame size {M} -> {crop})")
        M = int(crop)

    # optics from the file
    if wavelength is None:
        name = next((n for n in WAVELENGTH_NAMES if n in variables), None)
        if name is None:
            raise InputFileError(
                mat_path,
                f"no wavelength: pass {say['wavelength']} (metres) or store one of {', '.join(WAVELENGTH_NAMES)}",
                field="wavelength",
            )
        wavelength, wl_field = _scalar(variables, name, mat_path), name
        notes.append(f"wavelength: {wavelength:g} m from {name!r}")
    else:
        wl_field = "wavelength"
        notes.append(f"wavelength: {wavelength!r} m as given")
    if not is_finite_real(wavelength) or wavelength <= 0:
        raise InputFileError(mat_path, f"expected a positive number of metres, got {wavelength!r}", field=wl_field)
    if wavelength > MAX_WAVELENGTH:
        raise InputFileError(
            mat_path,
            f"expected metres, found {wavelength:g}: nanometres or micrometres? (e.g. 532 nm = 5.32e-07 m)",
            field=wl_field,
        )
    if defocus is None:
        name = next((n for n in DEFOCUS_NAMES if n in variables), None)
        if name is None:
            defocus = 0.0
            notes.append("defocus: 0 (no 'z' in the file)")
        else:
            defocus = _scalar(variables, name, mat_path)
            if abs(defocus) > MAX_DEFOCUS:
                raise InputFileError(
                    mat_path,
                    f"defocus {defocus:g} m is over 1 mm: other units, or an LED distance? pass {say['defocus']}",
                    field=name,
                )
            notes.append(f"defocus: {defocus:g} m from {name!r}")
    else:
        notes.append(f"defocus: {defocus!r} m as given")

    pupil, pupil_note = _pupil(variables, pupil_key, M_full, mat_path)
    if pupil is not None and crop is not None:
        raise InputFileError(
            mat_path,
            "cropping frames with a pupil is unsupported (the pupil lives in frequency space and would need "
            f"resampling): drop {say['crop']}, or pass {say['pupil_key']}",
            field=pupil_key,
        )
    notes.append(pupil_note)
    if camera_pixel is None:
        if not is_finite_real(pixel_size) or not is_finite_real(magnification):
            raise InputFileError(
                mat_path, f"expected numbers, got {pixel_size!r}, {magnification!r}", field="pixel_size"
            )
        camera_pixel = pixel_size * magnification
        notes.append(f"camera pixel: {camera_pixel:g} m = pixel_size {pixel_size:g} m x magnification {magnification}")

    def build(factor):
        return Acquisition(
            wavelength=float(wavelength),
            na=na,
            magnification=magnification,
            camera_pixel=camera_pixel,
            frame_size=M,
            upsample=factor,
            direction_sines=sines,
            pupil=pupil,
            defocus=defocus,
        )

    try:
        if upsample is not None:
            acquisition = build(upsample)
            notes.append(f"upsample: {acquisition.upsample} as given (N = {acquisition.grid_size})")
        else:
            for factor in range(2, MAX_UPSAMPLE + 1):
                try:
                    acquisition = build(factor)
                    break
                except AcquisitionError:
                    if factor == MAX_UPSAMPLE:
                        raise
            notes.append(f"upsample: {factor}, the smallest >= 2 that fits every window (N = {acquisition.grid_size})")
    except AcquisitionError as exc:
        tried = "" if upsample is not None else f" (tried upsample 2..{MAX_UPSAMPLE})"
        raise InputFileError(mat_path, f"{exc.named(names or {})}{tried}", field="acquisition") from exc
    notes.append(f"frame_type: {frame_type!r} as declared (values not converted)")
    return MatlabImport(frames=frames, acquisition=acquisition, frame_type=frame_type, notes=notes)
