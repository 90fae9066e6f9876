"""``ptycho-app import``: frames from any source, the LED geometry, camera corrections, one measurement.

Sources (:func:`ptycho_app.io.images.source_kind`): MATLAB ``.mat`` (:mod:`ptycho_app.io.matlab`),
TIFF/PNG folders, globs and stacks, HDF5 datasets (:mod:`ptycho_app.io.images`). Illumination: an
LED grid as ``simulate`` takes it (the simulation's :func:`~ptycho_app.simulation.led_array`), an
LED-order file, a kx/ky CSV, or (``.mat``) kx/ky variables. Messages name the command's flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..physics.acquisition import Acquisition, AcquisitionError, check_optics, direction_sines_from_leds
from .errors import InputFileError
from .geometry_check import transform_points
from .images import corner_background, crop_center, grid_positions, read_exposure_table, source_kind

#: How import's messages name each quantity: its flag.
IMPORT_NAMES = {"wavelength": "--wavelength", "na": "--na", "magnification": "--magnification",
                "camera_pixel": "--camera-pixel", "pixel_size": "--pixel-size", "defocus": "--defocus",
                "led_distance": "--distance", "led_pitch": "--pitch", "illumination": "--illumination CSV",
                "frames_key": "--frames-key", "crop": "--crop", "upsample": "--upsample",
                "pupil_key": "a file without its 'aberration' pupil",
                "pixel_at_sample": "the pixel at the sample (--camera-pixel or --pixel-size, over --magnification)",
                "direction_sines": "the illumination (--illumination or --leds)",
                "led_positions": "the LED grid (--leds, --pitch)", "frame_size": "the frame size (--crop)"}
#: Largest upsampling factor tried when ``upsample`` is not given (as the MATLAB importer).
MAX_UPSAMPLE = 16


@dataclass
class Imported:
    """What :func:`import_source` read: frames as measured, the acquisition, the corrections."""

    frames: np.ndarray
    acquisition: Acquisition
    frame_type: str
    exposure: np.ndarray | None = None
    background: np.ndarray | None = None
    saturation_level: float | None = None
    notes: list = field(default_factory=list)


def led_grid_sines(where, leds, pitch, distance, order="raster", led_order=None, center_offset=(0.0, 0.0),
                   rotation=0.0, flips=(False, False, False)):
    """LED positions of the grid (y, x) m, flipped/swapped as asked, and a note; None without a grid."""
    given = {"--leds": leds, "--pitch": pitch, "--distance": distance}
    if all(value is None for value in given.values()) and led_order is None:
        if any(flips):
            raise ValueError("--flip-y, --flip-x and --swap-xy apply to an LED grid: give --leds, --pitch and "
                             "--distance")
        return None
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        raise ValueError(f"an LED grid needs --leds, --pitch and --distance together: missing {', '.join(missing)}")
    if leds < 1:
        raise ValueError(f"--leds must be a positive integer, got {leds}")
    check_optics(IMPORT_NAMES, led_distance=distance, led_pitch=pitch)
    positions = grid_positions(leds, pitch, tuple(center_offset), rotation, order, led_order)
    if any(flips):
        positions = transform_points(positions, *flips)
    how = f"LED order from {Path(led_order).name}" if led_order else f"{order} order"
    note = (f"illumination: {leds} x {leds} LED grid, pitch {pitch:g} m, {distance:g} m below, {how}, centre offset "
            f"{tuple(center_offset)} m, rotation {rotation:g} deg" + (f", flips {flips}" if any(flips) else ""))
    return positions, note


def build_acquisition(where, frame_size, upsample, **fields) -> tuple[Acquisition, str]:
    """An acquisition with ``upsample`` given, or the smallest (>= 2) that fits the windows."""
    factors = [upsample] if upsample is not None else range(2, MAX_UPSAMPLE + 1)
    for factor in factors:
        try:
            acquisition = Acquisition(frame_size=frame_size, upsample=factor, **fields)
        except AcquisitionError as error:
            if "windows leave" in str(error) and factor != factors[-1]:
                continue
            text = error.named(IMPORT_NAMES).replace("increase upsample", "increase --upsample")
            tried = "" if upsample is not None else f" (tried --upsample 2..{MAX_UPSAMPLE})"
            raise InputFileError(where, text + tried) from None
        how = "as given" if upsample is not None else "the smallest >= 2 that fits every window"
        return acquisition, f"upsample: {factor}, {how} (N = {acquisition.grid_size})"
    raise AssertionError("unreachable")


def read_frames_any(source, frames_key=None, frame_order=None, crop=None):
    """Frames and notes from a non-MATLAB source."""
    from .images import read_hdf5_frames, read_image_frames

    if source_kind(source) == "hdf5":
        if frame_order is not None:
            raise ValueError("--frame-order applies to a folder or glob of image files, not to an HDF5 file")
        return read_hdf5_frames(source, frames_key, crop)
    if frames_key is not None:
        raise ValueError("--frames-key applies to .mat and HDF5 files, not to image files")
    return read_image_frames(source, frame_order, crop)


def read_background(spec, frames, acquisition, crop, notes):
    """``--background``: a dark frame (M, M) or ``corners`` (one level per frame)."""
    if spec is None:
        return None
    if spec == "corners":
        level = corner_background(frames, acquisition.bright_field)
        notes.append(f"background: from each frame's corners, {level.min():.4g} to {level.max():.4g} "
                     "(bright-field frames take the dark-field median)")
        return level
    from ..simulation import read_image

    try:
        dark = read_image(spec).astype(np.float64)
    except InputFileError as error:
        raise InputFileError(error.path, error.problem, field="--background") from None
    M = acquisition.frame_size
    if crop is not None and dark.shape != (M, M) and min(dark.shape) >= M:
        dark = crop_center(dark[None], M, spec)[0]
    if dark.shape != (M, M):
        raise InputFileError(spec, f"expected a dark frame of the frames' size {M} x {M}, got {dark.shape}",
                             field="--background")
    notes.append(f"background: dark frame {Path(spec).name}, mean {dark.mean():.4g}")
    return dark


def exposures(exposure, dark_field_exposure, table, acquisition, notes):
    """(L,) exposures from ``--exposure``, ``--dark-field-exposure`` or ``--exposure-table``; None: none given."""
    L = acquisition.n_frames
    if table is not None:
        if exposure is not None or dark_field_exposure is not None:
            raise ValueError("give --exposure-table or --exposure / --dark-field-exposure, not both")
        values = read_exposure_table(table, L)
        notes.append(f"exposure: {Path(table).name}, {values.min():g} to {values.max():g}")
        return values
    if exposure is None and dark_field_exposure is None:
        return None
    for flag, value in (("--exposure", exposure), ("--dark-field-exposure", dark_field_exposure)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a positive number of seconds, got {value}")
    values = np.full(L, 1.0 if exposure is None else float(exposure))
    if dark_field_exposure is not None:
        values[~acquisition.bright_field] = dark_field_exposure
    notes.append(f"exposure: {values[acquisition.bright_field][:1].tolist() or '-'} bright-field, "
                 f"{values[~acquisition.bright_field][:1].tolist() or '-'} dark-field")
    return values


def import_source(source, *, na, magnification, frame_type=None, wavelength=None, camera_pixel=None,
                  pixel_size=None, defocus=None, upsample=None, crop=None, frames_key=None, frame_order=None,
                  illumination=None, kx_key="kx_na", ky_key="ky_na", sines_sign=-1.0, leds=None, pitch=None,
                  distance=None, order="raster", led_order=None, center_offset=(0.0, 0.0), rotation=0.0,
                  flip_y=False, flip_x=False, swap_xy=False, exposure=None, dark_field_exposure=None,
                  exposure_table=None, background=None, saturation=None, ignore_pupil=False) -> Imported:
    """Read any import source with its geometry and corrections (the flags of ``ptycho-app import``).

    Returns
    -------
    Imported
        ``frames`` (L, M, M) float32 as measured, the acquisition, the corrections and notes.

    Raises
    ------
    InputFileError, ValueError
        One line naming the file and the flag.
    """
    kind = source_kind(source)
    if illumination is not None and (leds is not None or led_order is not None):
        raise ValueError("give --illumination or an LED grid (--leds ...), not both")
    grid = led_grid_sines(source, leds, pitch, distance, order, led_order, center_offset, rotation,
                          (swap_xy, flip_y, flip_x))
    if kind == "mat":
        from .matlab import read_matlab_fp

        if frame_type is None:
            raise ValueError("--frame-type is required for a .mat file: say whether the frames hold intensity "
                             "or amplitude (MATLAB files rarely do)")
        if frame_order is not None:
            raise ValueError("--frame-order applies to a folder or glob of image files, not to a .mat file")
        sines = None if grid is None else direction_sines_from_leds(grid[0], distance)
        matlab = read_matlab_fp(source, illumination, frames_key=frames_key, frame_type=frame_type,
                                wavelength=wavelength, na=na, magnification=magnification, camera_pixel=camera_pixel,
                                pixel_size=pixel_size, defocus=defocus, upsample=upsample, kx_key=kx_key,
                                ky_key=ky_key, sines_sign=sines_sign, crop=crop, direction_sines=sines,
                                names=IMPORT_NAMES, pupil_key=None if ignore_pupil else "aberration")
        frames, acquisition, notes = matlab.frames, matlab.acquisition, list(matlab.notes)
        if grid is not None:
            notes.append(grid[1])
    else:
        read = read_frames_any(source, frames_key, frame_order, crop)
        frames, notes = read.frames, list(read.notes)
        frame_type = frame_type or "intensity"
        if grid is not None:
            geometry = dict(led_positions=grid[0], led_distance=distance)
            notes.append(grid[1])
        elif illumination is not None:
            from .matlab import read_illumination_csv

            frame_index, k = read_illumination_csv(illumination, kx_key, ky_key)
            if len(k) != len(frames):
                raise InputFileError(illumination, f"{len(k)} illumination rows for {len(frames)} frames in {source}",
                                     field="rows")
            frames = frames[frame_index]
            geometry = dict(direction_sines=sines_sign * k)
            notes.append(f"illumination: CSV {Path(illumination).name}, sines = {sines_sign:+g} * (ky, kx)")
        else:
            raise InputFileError(source, "no illumination: pass --leds, --pitch and --distance (an LED grid, as "
                                 "simulate takes it) or --illumination CSV (kx, ky per frame)", field="illumination")
        n_leds = len(geometry.get("led_positions", geometry.get("direction_sines")))
        if n_leds != len(frames):
            what = "--led-order lists" if led_order else ("the LED grid (--leds) has" if grid else "")
            raise InputFileError(source, f"{len(frames)} frames, but {what} {n_leds} LEDs: expected one frame per "
                                 "LED", field="frames")
        if wavelength is None:
            raise ValueError("--wavelength is required for image and HDF5 sources (metres, e.g. 5.32e-07)")
        if (camera_pixel is None) == (pixel_size is None):
            raise ValueError("give exactly one of --camera-pixel (camera, m) and --pixel-size (at the sample, m)")
        optics = dict(wavelength=wavelength, na=na, magnification=magnification,
                      camera_pixel=camera_pixel if camera_pixel is not None else pixel_size * magnification,
                      defocus=defocus or 0.0)
        acquisition, note = build_acquisition(source, frames.shape[1], upsample, **optics, **geometry)
        notes.append(note)
    if saturation is not None and not (np.isfinite(saturation) and saturation > 0):
        raise ValueError(f"--saturation must be a positive camera level, got {saturation}")
    if saturation is not None:
        saturated = frames >= saturation
        notes.append(f"saturation: {int(saturated.sum())} pixel(s) at or above {saturation:g} get zero weight "
                     f"({int(saturated.any(axis=(1, 2)).sum())} frame(s))")
    result = Imported(frames, acquisition, frame_type, saturation_level=saturation, notes=notes)
    result.exposure = exposures(exposure, dark_field_exposure, exposure_table, acquisition, notes)
    result.background = read_background(background, frames, acquisition, crop, notes)
    return result
