"""Measurement files: PtyLab's FPM HDF5 layout, read and written, with ptycho-app's optional extras.

PtyLab's datasets (all at the file root, SI units; see ``shared/docs/fp-conventions.md``):

=================  ======================  ==================================================
``ptychogram``     (L, M, M) float32       one frame per LED (intensities unless ``frame_type``)
``encoder``        (L, 2) float64          LED positions (y, x) in metres; (2, L) is accepted,
                                           transposed and mean-centred, as PtyLab does
``wavelength``     scalar                  metres
``dxd``            scalar                  camera pixel, metres
``zled``           scalar                  LED-to-sample distance, metres
``magnification``  scalar
``NA``             scalar                  objective NA (required here: PtyLab may estimate it)
``orientation``    int, optional           only 0 (frames as stored) is supported
=================  ======================  ==================================================

Optional extras beside them (PtyLab ignores unknown datasets):

=====================  ===================  ==============================================
``direction_sines``    (L, 2) float64       illumination (s_y, s_x); overrides ``encoder``
``pupil``              (M, M) complex64     aberration on the pupil window (DC at M // 2)
``defocus``            scalar               metres
``upsample``           int                  N = upsample * M (else the smallest that fits)
``ground_truth``       (N, N) complex64     the simulated object
``frame_type``         str                  ``"intensity"`` (default) or ``"amplitude"``
``exposure``           (L,) float64         exposure of each frame, seconds (or any unit):
                                           intensities are divided by it; attribute
                                           ``follows_geometry`` 1 when set from the
                                           bright-/dark-field split (``--dark-field-exposure``)
``background``         (M, M) or (L,)       camera background in the frames' units (a dark
                       float64              frame, or one level per frame), subtracted
``saturation_level``   scalar               the camera's maximum: pixels at or above it get
                                           zero weight in every loss (:meth:`Measurement.mask`)
``subpixel``           int 0 or 1           1: sub-pixel illumination (windows at the rounded
                                           shifts, each frame's pupil moved by the remainder:
                                           ``Acquisition.subpixel``); absent: 0 (rounded
                                           windows alone, what older files meant)
=====================  ===================  ==============================================

``ptychogram`` keeps the frames as measured; :meth:`Measurement.intensities` applies
``(frames - background) / exposure``, clipped at 0.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..physics import Acquisition, AcquisitionError
from .atomic import atomic_hdf5
from .errors import HDF5_ERRORS, InputFileError, hdf5_errors, one_line, require_regular_file

FRAME_TYPES = ("intensity", "amplitude")

#: Largest upsampling factor tried when a file does not say.
MAX_AUTO_UPSAMPLE = 16


class NegativeFramesWarning(UserWarning):
    """Small negative values (background subtraction) were clipped to zero."""


@dataclass
class Measurement:
    """Frames and the acquisition they were taken with.

    Attributes
    ----------
    frames : (L, M, M) float32 or None
        As stored (intensities or amplitudes, see ``frame_type``), negatives clipped to zero; None
        when read without them (``read_measurement(path, load_frames=False)``).
    acquisition : Acquisition
    frame_type : {"intensity", "amplitude"}
    ground_truth : (N, N) complex64 or None
        The simulated object, when the file holds one.
    path : Path or None
        The file it was read from.
    notes : list of str
        What the reader assumed or changed (clipping, automatic upsampling).
    summary : FrameSummary or None
        Statistics of the frames as stored (files read by :func:`read_measurement`).
    exposure : (L,) float64 or None
        Exposure of each frame; intensities are divided by it.
    background : (M, M) or (L,) float64 or None
        Background subtracted from the frames (a dark frame, or one level per frame).
    saturation_level : float or None
        Pixels whose stored value is at or above it are left out of the loss (:meth:`mask`).
    exposure_follows_geometry : bool
        The exposures were set from the acquisition's bright-/dark-field split.
    """

    frames: np.ndarray | None
    acquisition: Acquisition
    frame_type: str = "intensity"
    ground_truth: np.ndarray | None = None
    path: Path | None = None
    notes: list = field(default_factory=list)
    summary: FrameSummary | None = None
    exposure: np.ndarray | None = None
    background: np.ndarray | None = None
    saturation_level: float | None = None
    exposure_follows_geometry: bool = False

    def intensities(self) -> np.ndarray:
        """(L, M, M) float32: the frames as intensities (amplitudes are squared), minus the
        background, divided by the exposure, clipped at 0."""
        frames = self.frames**2 if self.frame_type == "amplitude" else self.frames
        if self.background is None and self.exposure is None:
            return frames
        corrected = frames.astype(np.float64)
        if self.background is not None:
            background = np.asarray(self.background, dtype=np.float64)
            corrected -= background[:, None, None] if background.ndim == 1 else background
        if self.exposure is not None:
            corrected /= np.asarray(self.exposure, dtype=np.float64)[:, None, None]
        return np.maximum(corrected, 0).astype(np.float32)

    def mask(self) -> np.ndarray:
        """(L, M, M) bool: the pixels the loss uses (True), False where the stored frame is at or
        above ``saturation_level`` (all True without one)."""
        if self.saturation_level is None:
            return np.ones(self.frames.shape, dtype=bool)
        return self.frames < self.saturation_level


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in results to tie them to their input)."""
    digest = hashlib.sha256()
    with open(require_regular_file(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def led_positions_for(acquisition: Acquisition, zled: float | None = None):
    """LED positions (y, x) and distance that PtyLab can use for an acquisition.

    Acquisitions given by direction sines get equivalent positions on a plane ``zled`` below
    (default 80 mm): ``p = s * z / sqrt(1 - |s|^2)``, which maps back to the same sines.

    Returns
    -------
    positions : (L, 2) float64
    distance : float
    """
    if acquisition.led_positions is not None and acquisition.led_distance is not None:
        return np.asarray(acquisition.led_positions, dtype=np.float64), float(acquisition.led_distance)
    z = 80e-3 if zled is None else float(zled)
    s = acquisition.direction_sines
    return s * z / np.sqrt(1.0 - (s**2).sum(axis=1, keepdims=True)), z


def write_measurement(path, frames, acquisition: Acquisition, frame_type="intensity", ground_truth=None,
                      description="", exposure=None, background=None, saturation_level=None,
                      exposure_follows_geometry=False):
    """Write a measurement file in PtyLab's layout (atomically: temporary name, then rename).

    Parameters
    ----------
    path : str or Path
    frames : (L, M, M) real
    acquisition : Acquisition
    frame_type : {"intensity", "amplitude"}
    ground_truth : (N, N) complex, optional
    description : str
        Stored as the root attribute ``description``.
    exposure : (L,) float, optional
    background : (M, M) or (L,) float, optional
    saturation_level : float, optional
        The optional corrections (see the module's table); the frames are stored as given.
    exposure_follows_geometry : bool
        The exposures come from the bright-/dark-field split (stored as an attribute).
    """
    frames = np.asarray(frames, dtype=np.float32)
    L, M = acquisition.n_frames, acquisition.frame_size
    if frames.shape != (L, M, M):
        raise ValueError(f"frames have shape {frames.shape}, the acquisition expects ({L}, {M}, {M})")
    if frame_type not in FRAME_TYPES:
        raise ValueError(f"frame_type must be one of {FRAME_TYPES}, got {frame_type!r}")
    positions, distance = led_positions_for(acquisition)
    with atomic_hdf5(path) as f:
        f.create_dataset("ptychogram", data=frames, compression="gzip", compression_opts=4, shuffle=True)
        f["encoder"] = positions
        f["wavelength"] = float(acquisition.wavelength)
        f["dxd"] = float(acquisition.camera_pixel)
        f["zled"] = distance
        f["magnification"] = float(acquisition.magnification)
        f["NA"] = float(acquisition.na)
        f["orientation"] = 0
        if acquisition.led_positions is None:
            f["direction_sines"] = acquisition.direction_sines
        if acquisition.pupil is not None:
            f["pupil"] = acquisition.pupil.astype(np.complex64)
        f["defocus"] = float(acquisition.defocus)
        f["upsample"] = int(acquisition.upsample)
        f["subpixel"] = int(bool(acquisition.subpixel))
        f["frame_type"] = frame_type
        if ground_truth is not None:
            f["ground_truth"] = np.asarray(ground_truth, dtype=np.complex64)
        for name, value in (("exposure", exposure), ("background", background),
                            ("saturation_level", saturation_level)):
            if value is not None:
                f[name] = np.asarray(value, dtype=np.float64)
        if exposure is not None:
            f["exposure"].attrs["follows_geometry"] = int(bool(exposure_follows_geometry))
        f.attrs["creator"] = f"ptycho-app {__version__}"
        f.attrs["description"] = description


# ---- reading ------------------------------------------------------------------------------------
#: Frames are checked (and summarized for ``info``) in blocks of at most this many bytes.
SCAN_BYTES = 64 * 2**20
#: Without loading them, frames are scanned only up to this size (larger stacks: shape and type only).
SCAN_LIMIT = 256 * 2**20


def open_hdf5(path):
    """Open an HDF5 file read-only, or raise :class:`InputFileError` saying why it cannot be read.

    Only regular files are opened: a FIFO or a device would block (see :func:`require_regular_file`).
    """
    import h5py

    path = require_regular_file(path)
    try:
        return h5py.File(path, "r")
    except HDF5_ERRORS as error:
        raise InputFileError(path, f"not a readable HDF5 file (truncated, damaged or another format: "
                             f"{one_line(error)})") from None


def has(f, path, name) -> bool:
    """Whether the file holds ``name`` (checking a link reads metadata, which may be damaged)."""
    with hdf5_errors(path, name):
        return name in f


def dataset_names(f, path) -> str:
    """The root's dataset names, for messages (``"none"`` when empty)."""
    with hdf5_errors(path):
        return ", ".join(sorted(f.keys())) or "none"


def dataset_layout(f, path, name) -> tuple[tuple, np.dtype]:
    """Shape and dtype of a dataset, read from its header only (no data)."""
    with hdf5_errors(path, name):
        dataset = f[name]
        if not hasattr(dataset, "shape"):
            raise InputFileError(path, "cannot be read: a group, expected a dataset", field=name)
        return tuple(dataset.shape), dataset.dtype


def read_dataset(f, path, name) -> np.ndarray:
    """A whole dataset as an array, unchecked (damage in the file becomes :class:`InputFileError`)."""
    with hdf5_errors(path, name):
        dataset = f[name]
        if not hasattr(dataset, "shape"):
            raise InputFileError(path, "cannot be read: a group, expected a dataset", field=name)
        return np.asarray(dataset[()])


def read_scalar(f, path, name, required=True, default=None, kind="number"):
    """A finite scalar dataset (or ``default`` when absent and not required)."""
    if not has(f, path, name):
        if required:
            raise InputFileError(path, f"missing (expected a scalar {kind}); datasets present: "
                                 f"{dataset_names(f, path)}", field=name)
        return default
    value = read_dataset(f, path, name)
    if value.size != 1 or not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise InputFileError(path, f"expected a real scalar {kind}, got shape {value.shape} {value.dtype}",
                             field=name)
    value = float(value.reshape(()))
    if not np.isfinite(value):
        raise InputFileError(path, f"expected a finite {kind}, got {value}", field=name)
    return value


def check_numbers(value, path, name, ndim, dtype_kind="real"):
    """Check an array's number of axes and type (``real`` or ``complex``)."""
    if value.ndim != ndim:
        raise InputFileError(path, f"expected {ndim} axes, got shape {value.shape}", field=name)
    allowed = np.number if dtype_kind == "complex" else (np.integer, np.floating)
    if not any(np.issubdtype(value.dtype, t) for t in np.atleast_1d(allowed)) or (
            dtype_kind == "real" and np.iscomplexobj(value)):
        raise InputFileError(path, f"expected {dtype_kind} numbers, got dtype {value.dtype}", field=name)


def read_array(f, path, name, ndim, dtype_kind="real"):
    """A dataset as an array, checked for number of axes, type and finiteness."""
    value = read_dataset(f, path, name)
    check_numbers(value, path, name, ndim, dtype_kind)
    if not np.all(np.isfinite(value)):
        raise InputFileError(path, f"contains {int(np.size(value) - np.isfinite(value).sum())} NaN/Inf values",
                             field=name)
    return value


def read_text(f, path, name, default):
    if not has(f, path, name):
        return default
    value = read_dataset(f, path, name)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        raise InputFileError(path, f"expected a string, got {value!r}", field=name)
    return value


@dataclass
class FrameSummary:
    """Statistics of a frame stack as stored (before clipping), gathered block by block.

    Attributes
    ----------
    minimum, maximum : float
    frame_max, frame_mean : (L,) float64
        Per frame.
    n_negative : int
        Values below zero.
    """

    minimum: float
    maximum: float
    frame_max: np.ndarray
    frame_mean: np.ndarray
    n_negative: int


def summarize_frames(blocks, path, n_frames) -> FrameSummary:
    """Check frame blocks (finite, within float32) and summarize them.

    Parameters
    ----------
    blocks : iterable of (start, (l, M, M) ndarray)
    path : Path
    n_frames : int
    """
    frame_max, frame_mean = np.zeros(n_frames), np.zeros(n_frames)
    minimum, maximum, n_negative, n_bad = np.inf, -np.inf, 0, 0
    for start, block in blocks:
        finite = np.isfinite(block)
        if not finite.all():
            n_bad += int(block.size - finite.sum())
            continue
        flat = block.reshape(len(block), -1)
        frame_max[start:start + len(block)] = flat.max(axis=1)
        frame_mean[start:start + len(block)] = flat.mean(axis=1, dtype=np.float64)
        minimum, maximum = min(minimum, float(flat.min())), max(maximum, float(flat.max()))
        n_negative += int((block < 0).sum())
    if n_bad:
        raise InputFileError(path, f"contains {n_bad} NaN/Inf values", field="ptychogram")
    if max(abs(minimum), abs(maximum)) > float(np.finfo(np.float32).max):
        raise InputFileError(path, "values overflow float32 (larger than 3.4e38)", field="ptychogram")
    return FrameSummary(minimum, maximum, frame_max, frame_mean, n_negative)


def frame_notes(summary: FrameSummary, path) -> list:
    """Reject frames that are negative throughout or all zero; note (and warn) clipped negatives."""
    negative_throughout = np.nonzero(summary.frame_max < 0)[0]
    if len(negative_throughout):
        listed = ", ".join(str(i) for i in negative_throughout[:5]) + (", ..." if len(negative_throughout) > 5 else "")
        raise InputFileError(path, f"{len(negative_throughout)} frame(s) are negative throughout (frames "
                             f"{listed}): expected intensities or amplitudes >= 0", field="ptychogram")
    if summary.maximum <= 0:
        raise InputFileError(path, "all frames are zero: there is no signal to reconstruct", field="ptychogram")
    if summary.n_negative == 0:
        return []
    note = (f"clipped {summary.n_negative} negative values (down to {summary.minimum:.3g}, largest frame value "
            f"{summary.maximum:.3g}) to 0")
    warnings.warn(f"{path}: ptychogram: {note}", NegativeFramesWarning, stacklevel=3)
    return [note]


def encoder_positions(f, path, n_frames):
    """LED positions (L, 2) (y, x) from ``encoder`` ((2, L) is transposed and mean-centred)."""
    encoder = read_array(f, path, "encoder", 2)
    if encoder.shape == (n_frames, 2):
        return encoder.astype(np.float64)
    if encoder.shape == (2, n_frames):
        encoder = encoder.T.astype(np.float64)
        return encoder - encoder.mean(axis=0)
    raise InputFileError(path, f"inconsistent geometry: {n_frames} frames in ptychogram but encoder has "
                         f"shape {encoder.shape} (expected ({n_frames}, 2))", field="encoder")


#: The datasets behind the :class:`Acquisition` fields (messages name what the user can look at).
ACQUISITION_FIELDS = {"camera_pixel": "dxd", "na": "NA", "led_distance": "zled", "led_positions": "encoder",
                      "pixel_at_sample": "the pixel at the sample (dxd / magnification)"}


def smallest_upsample(path, make):
    """The smallest upsampling factor (>= 1) whose windows fit in the spectrum."""
    last = None
    for upsample in range(1, MAX_AUTO_UPSAMPLE + 1):
        try:
            return make(upsample)
        except AcquisitionError as error:
            last = error
            if "windows leave" not in str(error):
                raise InputFileError(path, error.named(ACQUISITION_FIELDS)) from None
    raise InputFileError(path, f"illumination angles too large for upsampling up to {MAX_AUTO_UPSAMPLE}: {last}")


def frame_blocks(f, path, shape, itemsize):
    """``(start, block)`` pairs of the frames, read lazily, at most :data:`SCAN_BYTES` at a time."""
    L, M, _ = shape
    step = max(1, SCAN_BYTES // (M * M * itemsize))
    for start in range(0, L, step):
        with hdf5_errors(path, "ptychogram"):
            yield start, f["ptychogram"][start:start + step]


def frame_layout(f, path):
    """The frames' shape and dtype from the dataset's header, checked before any frame is read."""
    if not has(f, path, "ptychogram"):
        raise InputFileError(path, "missing: expected the (L, M, M) frames of a PtyLab FPM file; datasets "
                             f"present: {dataset_names(f, path)}", field="ptychogram")
    shape, dtype = dataset_layout(f, path, "ptychogram")
    check_numbers(np.empty((0,) * len(shape), dtype=dtype), path, "ptychogram", 3)
    L, M, M2 = shape
    if M != M2 or M < 2 or L < 1:
        raise InputFileError(path, f"expected (L, M, M) square frames, got shape {shape}", field="ptychogram")
    return shape, dtype


def read_measurement(path, load_frames=True, upsample: int | None = None) -> Measurement:
    """Read and check a measurement file (opened read-only; never modified).

    Parameters
    ----------
    path : str or Path
    load_frames : bool
        Read the frames into memory (after checking that they fit, from their declared shape).
        False: check and summarize them block by block (bounded memory, ``info``) when they
        take at most :data:`SCAN_LIMIT` bytes, else read only their shape and type (``summary``
        None, with a note); the result's ``frames`` is None.
    upsample : int, optional
        The object grid ``N = upsample * M`` to use instead of the file's ``upsample`` (a PtyLab file
        has none: then the smallest that fits the illumination windows).  A ground truth of another
        size is then left out, with a note.

    Raises
    ------
    InputFileError
        With the file, the dataset and the problem: missing or misnamed datasets, wrong shapes or
        types, NaN/Inf, frames negative throughout, frames vs LEDs mismatch, non-physical optics,
        damaged HDF5 metadata.
    NotEnoughMemoryError
        The frames would not fit in the available memory.
    """
    from ..resources import frames_bytes, require_memory

    path = Path(path)
    with open_hdf5(path) as f:
        shape, dtype = frame_layout(f, path)
        L, M, _ = shape
        if load_frames:
            require_memory(frames_bytes(shape, dtype.itemsize),
                           f"{path}: ptychogram: reading {L} frames of {M} x {M}")
            frames = read_dataset(f, path, "ptychogram")
            summary = summarize_frames([(0, frames)], path, L)
        elif L * M * M * dtype.itemsize <= SCAN_LIMIT:
            frames = None
            summary = summarize_frames(frame_blocks(f, path, shape, dtype.itemsize), path, L)
        else:
            frames = summary = None
        notes = frame_notes(summary, path) if summary is not None else [
            f"frames not scanned ({L * M * M * dtype.itemsize / 2**30:.3g} GiB as stored): values unchecked"]
        if frames is not None:
            frames = frames.astype(np.float32, copy=False)
            if summary.n_negative:
                np.maximum(frames, 0, out=frames)
        optics = {}
        for name, key in (("wavelength", "wavelength"), ("camera_pixel", "dxd"),
                          ("magnification", "magnification"), ("na", "NA")):
            optics[name] = read_scalar(f, path, key)
        for name, key in (("wavelength", "wavelength"), ("camera_pixel", "dxd"), ("magnification", "magnification")):
            if optics[name] <= 0:
                raise InputFileError(path, f"must be positive, got {optics[name]}", field=key)
        if not 0 < optics["na"] < 1:
            raise InputFileError(path, f"must lie in (0, 1), got {optics['na']}", field="NA")
        orientation = read_scalar(f, path, "orientation", required=False, default=0)
        if orientation != 0:
            raise InputFileError(path, f"orientation {orientation:g} is not supported: store the frames "
                                 "flipped/transposed into orientation 0", field="orientation")
        geometry = {}
        if has(f, path, "direction_sines"):
            sines = read_array(f, path, "direction_sines", 2)
            if sines.shape != (L, 2):
                raise InputFileError(path, f"inconsistent geometry: {L} frames but direction_sines has shape "
                                     f"{sines.shape} (expected ({L}, 2))", field="direction_sines")
            geometry["direction_sines"] = sines
        else:
            if not has(f, path, "encoder"):
                raise InputFileError(path, "missing: expected LED positions (L, 2) in metres (or the "
                                     "optional direction_sines)", field="encoder")
            geometry["led_positions"] = encoder_positions(f, path, L)
            geometry["led_distance"] = read_scalar(f, path, "zled")
            if geometry["led_distance"] <= 0:
                raise InputFileError(path, f"must be positive, got {geometry['led_distance']}", field="zled")
        if has(f, path, "pupil"):
            pupil = read_array(f, path, "pupil", 2, dtype_kind="complex")
            if pupil.shape != (M, M):
                raise InputFileError(path, f"expected shape ({M}, {M}) like the frames, got {pupil.shape}",
                                     field="pupil")
            geometry["pupil"] = pupil
        geometry["defocus"] = read_scalar(f, path, "defocus", required=False, default=0.0)
        subpixel = read_scalar(f, path, "subpixel", required=False, default=0)
        if subpixel not in (0, 1):
            raise InputFileError(path, f"expected 0 or 1, got {subpixel:g}", field="subpixel")
        geometry["subpixel"] = bool(subpixel)
        frame_type = read_text(f, path, "frame_type", "intensity")
        if frame_type not in FRAME_TYPES:
            raise InputFileError(path, f"expected one of {FRAME_TYPES}, got {frame_type!r}", field="frame_type")
        stored = read_scalar(f, path, "upsample", required=False)

        def make(factor):
            return Acquisition(frame_size=M, upsample=factor, **optics, **geometry)

        if upsample is not None:
            try:
                acquisition = make(upsample)
            except AcquisitionError as error:
                raise InputFileError(path, f"with upsample {upsample}: {error.named(ACQUISITION_FIELDS)}") from None
            if stored is not None and stored != upsample:
                notes.append(f"upsample {upsample} used instead of the file's {stored:g}")
        elif stored is None:
            acquisition = smallest_upsample(path, make)
            notes.append(f"upsample not given: using {acquisition.upsample}, the smallest that fits "
                         "the illumination windows")
        else:
            if stored != int(stored) or stored < 1:
                raise InputFileError(path, f"expected a positive integer, got {stored}", field="upsample")
            try:
                acquisition = make(int(stored))
            except AcquisitionError as error:
                raise InputFileError(path, error.named(ACQUISITION_FIELDS)) from None
        truth = None
        if has(f, path, "ground_truth"):
            N = acquisition.grid_size
            truth_shape, _ = dataset_layout(f, path, "ground_truth")
            if truth_shape != (N, N) and upsample is not None:
                notes.append(f"ground_truth {truth_shape} left out: the object grid is {N}x{N} with upsample "
                             f"{upsample}")
            elif truth_shape != (N, N):
                raise InputFileError(path, f"expected shape ({N}, {N}) (upsample x frame size), got {truth_shape}",
                                     field="ground_truth")
            else:
                truth = read_array(f, path, "ground_truth", 2, dtype_kind="complex").astype(np.complex64)
        corrections = read_corrections(f, path, L, M)
    return Measurement(frames=frames, acquisition=acquisition, frame_type=frame_type, ground_truth=truth,
                       path=path, notes=notes, summary=summary, **corrections)


def read_corrections(f, path, L, M) -> dict:
    """The optional ``exposure``, ``background`` and ``saturation_level`` (checked; absent: None)."""
    corrections = {}
    for name, shapes in (("exposure", [(L,)]), ("background", [(M, M), (L,)])):
        value = None
        if has(f, path, name):
            value = read_dataset(f, path, name)
            check_numbers(value, path, name, len(value.shape))
            if value.shape not in shapes or not np.all(np.isfinite(value)):
                expected = " or ".join(str(shape) for shape in shapes)
                raise InputFileError(path, f"expected finite values of shape {expected}, got {value.shape}",
                                     field=name)
            value = value.astype(np.float64)
            if name == "exposure" and np.any(value <= 0):
                raise InputFileError(path, f"expected positive exposures, found {value.min():g}", field=name)
        corrections[name] = value
    corrections["saturation_level"] = read_scalar(f, path, "saturation_level", required=False)
    if corrections["exposure"] is not None:
        with hdf5_errors(path, "exposure"):
            corrections["exposure_follows_geometry"] = bool(f["exposure"].attrs.get("follows_geometry", 0))
    return corrections


def acquisition_key(acquisition: Acquisition) -> str:
    """A digest of everything that defines the forward operator: equal keys can share one batched solve."""
    digest = hashlib.sha256()
    for value in (acquisition.wavelength, acquisition.na, acquisition.magnification, acquisition.camera_pixel,
                  acquisition.frame_size, acquisition.upsample, acquisition.defocus):
        digest.update(repr(float(value)).encode())
    digest.update(np.ascontiguousarray(acquisition.window_shifts).tobytes())
    if acquisition.subpixel:  # the frames' pupils depend on the remainders
        digest.update(b"subpixel")
        digest.update(np.ascontiguousarray(acquisition.window_remainders).tobytes())
    digest.update(np.ascontiguousarray(acquisition.pupil_function().astype(np.complex64)).tobytes())
    return digest.hexdigest()[:16]
