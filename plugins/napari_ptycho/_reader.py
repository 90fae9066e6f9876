"""Reader: measurement files open as a frame stack, result files as amplitude and phase layers.

A stitched result (``reconstruct --tile``) also gets its per-tile maps over the object: ``log10
lambda2/lambda1`` (magma, half opaque; none at rank 1, where the ratio is undefined), the tiles'
relative residual (hidden) and the tile borders (hidden), all in micrometres like the object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import LAYER_KEY, UNITS


def get_reader(path):
    """Return :func:`read_ptycho` for ptycho-app / PtyLab HDF5 files, else None (napari tries others).

    A ``.h5`` file that cannot be read (damaged, a FIFO...) gets :func:`read_ptycho` too, so that
    the user sees why in its one-line error instead of napari's "no reader".
    """
    if isinstance(path, list) or not str(path).lower().endswith((".h5", ".hdf5")):
        return None
    from ptycho_app.io.errors import InputFileError
    from ptycho_app.io.measurement import has, open_hdf5

    try:
        with open_hdf5(path) as f:
            return read_or_notify if has(f, path, "ptychogram") or has(f, path, "factors/U") else None
    except InputFileError:
        return read_or_notify


def measurement_layers(measurement, name):
    """Layer data of a measurement: frames (L, M, M), and the ground truth when there is one."""
    a = measurement.acquisition
    um = 1e6
    layers = [(measurement.frames, {"name": f"{name} frames", "scale": (1, a.pixel_size_lr * um, a.pixel_size_lr * um),
                                    "units": ("pixel", *UNITS), "colormap": "gray",
                                    "metadata": {LAYER_KEY: measurement}}, "image")]
    if measurement.ground_truth is not None:
        scale = (a.pixel_size_hr * um, a.pixel_size_hr * um)
        truth = measurement.ground_truth
        layers += [(np.abs(truth), {"name": f"{name} truth amplitude", "scale": scale, "units": UNITS,
                                    "visible": False, "colormap": "gray"}, "image"),
                   (np.angle(truth), {"name": f"{name} truth phase", "scale": scale, "units": UNITS,
                                      "visible": False, "colormap": "twilight", "contrast_limits": (-np.pi, np.pi)},
                    "image")]
    return layers


def read_or_notify(path):
    """:func:`read_ptycho`, with any failure shown as a one-line napari notification (no layer, no
    traceback): napari's null-layer sentinel ``[(None,)]`` tells it the file was handled."""
    from napari.utils.notifications import show_error

    from ptycho_app.io.errors import InputFileError, one_line

    try:
        return read_ptycho(path)
    except Exception as error:  # noqa: BLE001 (any failure to read the user's file: a notification)
        text = str(error) if isinstance(error, InputFileError) else f"{path}: {type(error).__name__}: {one_line(error)}"
        show_error(f"ptycho-app: cannot open {text}")
        return [(None,)]


def read_ptycho(path):
    """Layer data for one file (napari's reader protocol).

    Raises
    ------
    ptycho_app.io.errors.InputFileError
        One line naming the file and the dataset, for any file that cannot be shown (damaged,
        incomplete, not a regular file, a result without an image).
    """
    from ptycho_app.io.errors import InputFileError
    from ptycho_app.io.measurement import has, open_hdf5, read_measurement
    from ptycho_app.io.results import read_result

    path = Path(path)
    with open_hdf5(path) as f:
        is_result = has(f, path, "factors/U")
    if not is_result:
        return measurement_layers(read_measurement(path), path.stem)
    result = read_result(path)
    if result.object is None:
        raise InputFileError(path, f"a {result.attrs.get('problem')} result has no image to show", field="object")
    pixel = float(result.attrs.get("pixel_size", 1e-6)) * 1e6
    label = f"{path.stem.split('.')[0]} {result.method.upper()}"
    return object_layers(result, label, pixel) + pupil_layers(result, label, pixel) + tiled_layers(result, label, pixel)


#: Ratios below this are drawn at it (log10: -17, the double-precision floor), as in the widget's spectrum plot.
RATIO_FLOOR = 1e-17


def nearest_tile(starts, tile: int, size: int) -> np.ndarray:
    """(size,) int: for each camera pixel along one axis, the index of the tile whose centre is nearest
    (``starts``: the tiles' first pixels along that axis, increasing)."""
    centres = np.asarray(starts, dtype=np.float64) + tile / 2
    pixels = np.arange(size) + 0.5
    return np.abs(pixels[:, None] - centres[None, :]).argmin(axis=1)


def camera_map(values, corners, tile: int, size: int) -> np.ndarray:
    """A (rows, cols) map on the tile grid drawn on the camera pixels, (size, size): each pixel gets the
    value of the tile whose centre is nearest (rows and columns apart), i.e. the tile that the feathered
    stitch weighs most there.  The last row and column of tiles sit flush with the field's edge, closer
    to their neighbours than the others, so a plain scale of the (rows, cols) map could not place them."""
    corners = np.asarray(corners)
    rows = nearest_tile(np.unique(corners[:, 0]), tile, size)
    cols = nearest_tile(np.unique(corners[:, 1]), tile, size)
    return np.asarray(values)[np.ix_(rows, cols)]


def tiled_layers(result, label, pixel):
    """Layers of a stitched result's maps, over its object (``pixel``: the object's pixel, um).

    Returns
    -------
    list of (data, kwargs, layer type)
        ``{label} log10 lambda2/lambda1``: (Mf, Mf) float32 on the camera pixels, each pixel the
        value of the nearest tile centre (:func:`camera_map`), magma, opacity 0.5; left out when the
        ratio is NaN everywhere (rank 1: no lambda_2).  ``{label} tile residual``: the same for
        ``maps/residual``, hidden.  ``{label} tile borders``: one rectangle per tile, hidden.  All
        have the object's units; a camera pixel is ``upsample`` object pixels (scale
        ``upsample * pixel``, translate ``(upsample - 1) / 2 * pixel`` so that camera and object
        pixels share their edges).  None for an untiled result.
    """
    if not result.tiled:
        return []
    corners = np.asarray(result.tile_corners, dtype=np.int64)
    tile = int(result.attrs["tile"])
    size = int(corners.max()) + tile  # Mf: the last tiles are flush with the field's edge
    upsample = result.object.shape[0] // size
    camera = upsample * pixel
    placement = {"scale": (camera, camera), "translate": ((upsample - 1) / 2 * pixel,) * 2, "units": UNITS}
    layers = []
    ratio = np.asarray(result.lambda_ratio, dtype=np.float64)
    if np.isfinite(ratio).any():
        logs = np.log10(np.maximum(ratio, RATIO_FLOOR))  # NaN stays NaN (a tile with lambda_1 = 0)
        low, high = float(np.nanmin(logs)), float(np.nanmax(logs))
        layers.append((camera_map(logs, corners, tile, size).astype(np.float32),
                       {"name": f"{label} log10 lambda2/lambda1", **placement, "colormap": "magma", "opacity": 0.5,
                        "contrast_limits": (low, high if high > low else low + 1.0)}, "image"))
    residual = np.asarray(result.residual_map, dtype=np.float64)
    high = float(np.nanmax(residual)) if np.isfinite(residual).any() else 1.0
    layers.append((camera_map(residual, corners, tile, size).astype(np.float32),
                   {"name": f"{label} tile residual", **placement, "colormap": "viridis", "opacity": 0.5,
                    "visible": False, "contrast_limits": (0.0, high if high > 0 else 1.0)}, "image"))
    edge = -pixel / 2  # the object's pixel p covers [p - 1/2, p + 1/2] pixels
    rectangles = [np.array([[top, left], [top + side, left + side]]) for top, left, side in
                  ((r * camera + edge, c * camera + edge, tile * camera) for r, c in corners)]
    layers.append((rectangles, {"name": f"{label} tile borders", "shape_type": "rectangle", "edge_width": pixel,
                                "edge_color": "cyan", "face_color": "transparent", "units": UNITS,
                                "translate": (0.0, 0.0), "visible": False}, "shapes"))
    return layers


def pupil_layers(result, label, pixel):
    """Amplitude and phase (inside the support; 0 outside) of a result's recovered pupil, drawn at the
    object's size to its right (the pupil's axes are spatial frequencies); none without a calibration."""
    from ptycho_app.calibration.summary import pupil_phase

    if result.calibration is None or result.calibration.pupil is None:
        return []
    pupil = result.calibration.pupil
    size = result.object.shape[0] * pixel
    scale = (size / pupil.shape[0],) * 2
    left = size * 1.12  # a gap as between the widget's tiles
    phase = np.nan_to_num(pupil_phase(pupil), nan=0.0)
    bound = max(float(np.abs(phase).max()), 1e-3)
    return [(np.abs(pupil), {"name": f"{label} pupil amplitude", "scale": scale, "units": UNITS,
                             "translate": (0.0, left), "colormap": "gray"}, "image"),
            (phase, {"name": f"{label} pupil phase", "scale": scale, "units": UNITS, "translate": (0.0, left),
                     "colormap": "PiYG", "contrast_limits": (-bound, bound)}, "image")]


def object_layers(result, label, pixel):
    """Amplitude and phase layers of a result's object."""
    return [(np.abs(result.object), {"name": f"{label} amplitude", "scale": (pixel, pixel), "units": UNITS,
                                     "colormap": "gray"}, "image"),
            (np.angle(result.object), {"name": f"{label} phase", "scale": (pixel, pixel), "units": UNITS,
                                       "colormap": "twilight", "contrast_limits": (-np.pi, np.pi)}, "image")]
