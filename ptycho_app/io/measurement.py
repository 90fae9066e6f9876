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
=====================  ===================  ==============================================
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..physics import Acquisition, AcquisitionError
from .atomic import atomic_path
from .errors import InputFileError

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
    frames : (L, M, M) float32
        As stored (intensities or amplitudes, see ``frame_type``), negatives clipped to zero.
    acquisition : Acquisition
    frame_type : {"intensity", "amplitude"}
    ground_truth : (N, N) complex64 or None
        The simulated object, when the file holds one.
    path : Path or None
        The file it was read from.
    notes : list of str
        What the reader assumed or changed (clipping, automatic upsampling).
    """

    frames: np.ndarray
    acquisition: Acquisition
    frame_type: str = "intensity"
    ground_truth: np.ndarray | None = None
    path: Path | None = None
    notes: list = field(default_factory=list)

    def intensities(self) -> np.ndarray:
        """(L, M, M) float32: the frames as intensities (amplitudes are squared)."""
        return self.frames**2 if self.frame_type == "amplitude" else self.frames


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in results to tie them to their input)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
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
                      description=""):
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
    """
    import h5py

    frames = np.asarray(frames, dtype=np.float32)
    L, M = acquisition.n_frames, acquisition.frame_size
    if frames.shape != (L, M, M):
        raise ValueError(f"frames have shape {frames.shape}, the acquisition expects ({L}, {M}, {M})")
    if frame_type not in FRAME_TYPES:
        raise ValueError(f"frame_type must be one of {FRAME_TYPES}, got {frame_type!r}")
    positions, distance = led_positions_for(acquisition)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
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
        f["frame_type"] = frame_type
        if ground_truth is not None:
            f["ground_truth"] = np.asarray(ground_truth, dtype=np.complex64)
        f.attrs["creator"] = f"ptycho-app {__version__}"
        f.attrs["description"] = description


# ---- reading ------------------------------------------------------------------------------------
def open_hdf5(path):
    """Open an HDF5 file read-only, or raise :class:`InputFileError` saying why it cannot be read."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, expected an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputFileError(path, f"not a readable HDF5 file (truncated, or another format: {error})") from None


def read_scalar(f, path, name, required=True, default=None, kind="number"):
    """A finite scalar dataset (or ``default`` when absent and not required)."""
    if name not in f:
        if required:
            raise InputFileError(path, f"missing (expected a scalar {kind}); datasets present: "
                                 f"{', '.join(sorted(f.keys())) or 'none'}", field=name)
        return default
    try:
        value = np.asarray(f[name][()])
    except (AttributeError, KeyError, OSError, TypeError, ValueError) as error:
        raise InputFileError(path, f"cannot be read ({error})", field=name) from None
    if value.size != 1 or not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise InputFileError(path, f"expected a real scalar {kind}, got shape {value.shape} {value.dtype}",
                             field=name)
    value = float(value.reshape(()))
    if not np.isfinite(value):
        raise InputFileError(path, f"expected a finite {kind}, got {value}", field=name)
    return value


def read_array(f, path, name, ndim, dtype_kind="real"):
    """A dataset as an array, checked for number of axes, type and finiteness."""
    try:
        value = np.asarray(f[name][()])
    except (AttributeError, KeyError, OSError, TypeError, ValueError) as error:
        raise InputFileError(path, f"cannot be read ({error})", field=name) from None
    if value.ndim != ndim:
        raise InputFileError(path, f"expected {ndim} axes, got shape {value.shape}", field=name)
    allowed = np.number if dtype_kind == "complex" else (np.integer, np.floating)
    if not any(np.issubdtype(value.dtype, t) for t in np.atleast_1d(allowed)) or (
            dtype_kind == "real" and np.iscomplexobj(value)):
        raise InputFileError(path, f"expected {dtype_kind} numbers, got dtype {value.dtype}", field=name)
    if not np.all(np.isfinite(value)):
        raise InputFileError(path, f"contains {int(np.size(value) - np.isfinite(value).sum())} NaN/Inf values",
                             field=name)
    return value


def read_text(f, path, name, default):
    if name not in f:
        return default
    try:
        value = f[name][()]
    except (AttributeError, OSError, TypeError, ValueError) as error:
        raise InputFileError(path, f"cannot be read as a string ({type(error).__name__})", field=name) from None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
        value = value.decode() if isinstance(value, bytes) else value
    if not isinstance(value, str):
        raise InputFileError(path, f"expected a string, got {value!r}", field=name)
    return value


def clip_negative_frames(frames, path):
    """Reject frames that are negative throughout; clip small negatives (with a warning)."""
    negative_throughout = np.nonzero(frames.reshape(len(frames), -1).max(axis=1) < 0)[0]
    if len(negative_throughout):
        listed = ", ".join(str(i) for i in negative_throughout[:5]) + (", ..." if len(negative_throughout) > 5 else "")
        raise InputFileError(path, f"{len(negative_throughout)} frame(s) are negative throughout (frames "
                             f"{listed}): expected intensities or amplitudes >= 0", field="ptychogram")
    n_negative = int((frames < 0).sum())
    if n_negative == 0:
        return frames, []
    note = (f"clipped {n_negative} negative values (down to {frames.min():.3g}, largest frame value "
            f"{frames.max():.3g}) to 0")
    warnings.warn(f"{path}: ptychogram: {note}", NegativeFramesWarning, stacklevel=3)
    return np.maximum(frames, 0), [note]


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


def smallest_upsample(path, make):
    """The smallest upsampling factor (>= 1) whose windows fit in the spectrum."""
    last = None
    for upsample in range(1, MAX_AUTO_UPSAMPLE + 1):
        try:
            return make(upsample)
        except AcquisitionError as error:
            last = error
            if "windows leave" not in str(error):
                raise InputFileError(path, str(error)) from None
    raise InputFileError(path, f"illumination angles too large for upsampling up to {MAX_AUTO_UPSAMPLE}: {last}")


def read_measurement(path) -> Measurement:
    """Read and check a measurement file (opened read-only; never modified).

    Raises
    ------
    InputFileError
        With the file, the dataset and the problem: missing or misnamed datasets, wrong shapes or
        types, NaN/Inf, frames negative throughout, frames vs LEDs mismatch, non-physical optics.
    """
    path = Path(path)
    with open_hdf5(path) as f:
        if "ptychogram" not in f:
            raise InputFileError(path, "missing: expected the (L, M, M) frames of a PtyLab FPM file; datasets "
                                 f"present: {', '.join(sorted(f.keys())) or 'none'}", field="ptychogram")
        frames = read_array(f, path, "ptychogram", 3)
        L, M, M2 = frames.shape
        if M != M2 or M < 2 or L < 1:
            raise InputFileError(path, f"expected (L, M, M) square frames, got shape {frames.shape}",
                                 field="ptychogram")
        if np.abs(frames).max() > np.finfo(np.float32).max:
            raise InputFileError(path, "values overflow float32 (larger than 3.4e38)", field="ptychogram")
        frames = frames.astype(np.float32)
        frames, notes = clip_negative_frames(frames, path)
        if not np.any(frames > 0):
            raise InputFileError(path, "all frames are zero: there is no signal to reconstruct", field="ptychogram")
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
        if "direction_sines" in f:
            sines = read_array(f, path, "direction_sines", 2)
            if sines.shape != (L, 2):
                raise InputFileError(path, f"inconsistent geometry: {L} frames but direction_sines has shape "
                                     f"{sines.shape} (expected ({L}, 2))", field="direction_sines")
            geometry["direction_sines"] = sines
        else:
            if "encoder" not in f:
                raise InputFileError(path, "missing: expected LED positions (L, 2) in metres (or the "
                                     "optional direction_sines)", field="encoder")
            geometry["led_positions"] = encoder_positions(f, path, L)
            geometry["led_distance"] = read_scalar(f, path, "zled")
            if geometry["led_distance"] <= 0:
                raise InputFileError(path, f"must be positive, got {geometry['led_distance']}", field="zled")
        if "pupil" in f:
            pupil = read_array(f, path, "pupil", 2, dtype_kind="complex")
            if pupil.shape != (M, M):
                raise InputFileError(path, f"expected shape ({M}, {M}) like the frames, got {pupil.shape}",
                                     field="pupil")
            geometry["pupil"] = pupil
        geometry["defocus"] = read_scalar(f, path, "defocus", required=False, default=0.0)
        frame_type = read_text(f, path, "frame_type", "intensity")
        if frame_type not in FRAME_TYPES:
            raise InputFileError(path, f"expected one of {FRAME_TYPES}, got {frame_type!r}", field="frame_type")
        upsample = read_scalar(f, path, "upsample", required=False)

        def make(factor):
            return Acquisition(frame_size=M, upsample=factor, **optics, **geometry)

        if upsample is None:
            acquisition = smallest_upsample(path, make)
            notes.append(f"upsample not given: using {acquisition.upsample}, the smallest that fits "
                         "the illumination windows")
        else:
            if upsample != int(upsample) or upsample < 1:
                raise InputFileError(path, f"expected a positive integer, got {upsample}", field="upsample")
            try:
                acquisition = make(int(upsample))
            except AcquisitionError as error:
                raise InputFileError(path, str(error)) from None
        truth = None
        if "ground_truth" in f:
            truth = read_array(f, path, "ground_truth", 2, dtype_kind="complex")
            N = acquisition.grid_size
            if truth.shape != (N, N):
                raise InputFileError(path, f"expected shape ({N}, {N}) (upsample x frame size), got {truth.shape}",
                                     field="ground_truth")
            truth = truth.astype(np.complex64)
    return Measurement(frames=frames, acquisition=acquisition, frame_type=frame_type, ground_truth=truth,
                       path=path, notes=notes)


def acquisition_key(acquisition: Acquisition) -> str:
    """A digest of everything that defines the forward operator: equal keys can share one batched solve."""
    digest = hashlib.sha256()
    for value in (acquisition.wavelength, acquisition.na, acquisition.magnification, acquisition.camera_pixel,
                  acquisition.frame_size, acquisition.upsample, acquisition.defocus):
        digest.update(repr(float(value)).encode())
    digest.update(np.ascontiguousarray(acquisition.window_shifts).tobytes())
    digest.update(np.ascontiguousarray(acquisition.pupil_function().astype(np.complex64)).tobytes())
    return digest.hexdigest()[:16]
