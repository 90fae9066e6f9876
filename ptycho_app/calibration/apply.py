"""Reusing a calibration: ``ptycho-app reconstruct ... --calibration RESULT``.

A recovered :class:`~ptycho_app.calibration.Calibration` (the ``calibration`` group of a result
file) is applied to other measurements taken with the same microscope:

- its **pupil** (the whole coherent transfer function, support times aberration) becomes the
  acquisition's ``pupil`` and the acquisition's ``defocus`` is set to 0 (the recovered pupil already
  holds any defocus), so that :meth:`~ptycho_app.physics.Acquisition.pupil_function` is the circular
  support times the calibration's pupil: the calibration's pupil itself, when it is zero outside the
  NA disc (as recovered pupils are);
- its **direction sines** replace the illumination geometry (LED positions are dropped);
- its **brightness** ``c_l`` divides the measured frames: the model says frame ``l`` is ``c_l |psi_l|^2``,
  so intensities become ``I_l / c_l`` (amplitude frames ``a_l / sqrt(c_l)``).  The file on disk is never
  changed; the division happens in memory.

Every part is optional (what the calibration does not hold is left as the measurement has it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..io.errors import InputFileError
from ..io.measurement import Measurement, has, open_hdf5
from ..physics import Acquisition, AcquisitionError
from .model import Calibration

#: Fraction of the pupil's energy outside the NA disc above which applying it notes the loss.
OUTSIDE_NOTE = 1e-6


def read_calibration_file(path) -> Calibration:
    """The calibration stored in a result file (read-only, checked).

    Raises
    ------
    InputFileError
        For a file that cannot be read, has no ``calibration`` group (a result computed without
        ``--pupil recover`` / ``--calibrate``, or a measurement file), or holds a damaged one.
    """
    from ..io.results import read_calibration

    path = Path(path)
    with open_hdf5(path) as f:
        calibration = read_calibration(f, path)
        if calibration is None:
            kind = ("a measurement file" if has(f, path, "ptychogram") else
                    "a result without one" if has(f, path, "factors/U") else "not a ptycho-app result")
            raise InputFileError(path, f"missing ({kind}): expected a result file of a run that recovered a "
                                 "calibration (--pupil recover or --calibrate)", field="calibration")
    if calibration.is_empty():
        raise InputFileError(path, "is empty: expected at least one of pupil, zernike, brightness, direction_sines",
                             field="calibration")
    return calibration


def apply_calibration(target: Measurement | Acquisition, calibration: Calibration, source=None):
    """A measurement or acquisition with a calibration applied (see the module docstring); the target
    is not modified.

    Parameters
    ----------
    target : Measurement or Acquisition
        A measurement gets its acquisition replaced and its frames divided by the brightness; an
        acquisition gets its pupil and direction sines (a brightness needs frames and is ignored).
    calibration : Calibration
    source : str or Path, optional
        The file the calibration came from (named in errors and in the measurement's notes).

    Returns
    -------
    Measurement or Acquisition
        Of the same kind as ``target``.

    Raises
    ------
    InputFileError
        Naming ``source`` and the dataset: a pupil of another size than the frames, a brightness or
        direction sines for another number of frames, a brightness that is not positive, or
        illumination windows that leave the object spectrum.
    """
    source = Path(source) if source is not None else Path("calibration")
    if isinstance(target, Acquisition):
        return calibrated_acquisition(target, calibration, source, "the acquisition")
    measurement = target
    where = str(measurement.path) if measurement.path is not None else "the measurement"
    acquisition = calibrated_acquisition(measurement.acquisition, calibration, source, where)
    frames = measurement.frames
    applied = [name for name in ("pupil", "direction_sines") if getattr(calibration, name) is not None]
    if calibration.brightness is not None:
        brightness = brightness_for(calibration.brightness, acquisition.n_frames, source, where)
        if frames is not None:
            divisor = brightness if measurement.frame_type == "intensity" else np.sqrt(brightness)
            frames = (frames / divisor[:, None, None]).astype(frames.dtype, copy=False)
        applied.append("brightness")
    notes = [*measurement.notes, f"calibration from {source} applied: {', '.join(applied) or 'nothing'}"]
    if calibration.pupil is not None:
        pupil = np.asarray(calibration.pupil)
        total = float((np.abs(pupil) ** 2).sum())
        kept = float((np.abs(acquisition.pupil_function()) ** 2).sum())
        if total > 0 and (total - kept) / total > OUTSIDE_NOTE:
            notes.append(f"{source}: calibration/pupil: {(total - kept) / total:.2%} of its energy lies outside the "
                         f"NA disc and is cut off")
    return replace(measurement, frames=frames, acquisition=acquisition, notes=notes)


def brightness_for(brightness, n_frames: int, source, where: str) -> np.ndarray:
    """(L,) float64: the brightness checked against the frames (one positive value per frame)."""
    brightness = np.asarray(brightness, dtype=np.float64)
    if brightness.shape != (n_frames,):
        raise InputFileError(source, f"has {brightness.size} values, expected {n_frames} (one per frame of {where})",
                             field="calibration/brightness")
    if not np.all(brightness > 0):
        raise InputFileError(source, f"expected positive values (the frames are divided by them), got minimum "
                             f"{brightness.min():g}", field="calibration/brightness")
    return brightness


def calibrated_acquisition(acquisition: Acquisition, calibration: Calibration, source: Path,
                           where: str) -> Acquisition:
    """``acquisition`` with the calibration's pupil (defocus 0) and direction sines."""
    changes = {}
    M, L = acquisition.frame_size, acquisition.n_frames
    if calibration.pupil is not None:
        pupil = np.asarray(calibration.pupil)
        if pupil.shape != (M, M):
            raise InputFileError(source, f"has shape {pupil.shape}, expected ({M}, {M}) like the frames of {where}",
                                 field="calibration/pupil")
        changes.update(pupil=pupil.astype(np.complex128), defocus=0.0)
    if calibration.direction_sines is not None:
        sines = np.asarray(calibration.direction_sines, dtype=np.float64)
        if sines.shape != (L, 2):
            raise InputFileError(source, f"has shape {sines.shape}, expected ({L}, 2) (one (s_y, s_x) per frame of "
                                 f"{where})", field="calibration/direction_sines")
        changes.update(direction_sines=sines, led_positions=None, led_distance=None)
    if calibration.brightness is not None:
        brightness_for(calibration.brightness, L, source, where)
    try:
        return replace(acquisition, **changes)
    except AcquisitionError as error:
        raise InputFileError(source, f"applied to {where}: {error}", field="calibration") from None
