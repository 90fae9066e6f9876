"""Reader: measurement files open as a frame stack, result files as amplitude and phase layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import LAYER_KEY


def get_reader(path):
    """Return :func:`read_ptycho` for ptycho-app / PtyLab HDF5 files, else None (napari tries others)."""
    if isinstance(path, list) or not str(path).lower().endswith((".h5", ".hdf5")):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "ptychogram" in f or "factors/U" in f:
                return read_ptycho
    except OSError:
        return None
    return None


def measurement_layers(measurement, name):
    """Layer data of a measurement: frames (L, M, M), and the ground truth when there is one."""
    a = measurement.acquisition
    um = 1e6
    layers = [(measurement.frames, {"name": f"{name} frames", "scale": (1, a.pixel_size_lr * um, a.pixel_size_lr * um),
                                    "colormap": "gray",
                                    "metadata": {LAYER_KEY: measurement}}, "image")]
    if measurement.ground_truth is not None:
        scale = (a.pixel_size_hr * um, a.pixel_size_hr * um)
        truth = measurement.ground_truth
        layers += [(np.abs(truth), {"name": f"{name} truth amplitude", "scale": scale, "visible": False,
                                    "colormap": "gray"}, "image"),
                   (np.angle(truth), {"name": f"{name} truth phase", "scale": scale, "visible": False,
                                      "colormap": "twilight", "contrast_limits": (-np.pi, np.pi)}, "image")]
    return layers


def read_ptycho(path):
    """Layer data for one file (napari's reader protocol)."""
    import h5py

    from ptycho_app.io.measurement import read_measurement
    from ptycho_app.io.results import read_result

    path = Path(path)
    with h5py.File(path, "r") as f:
        is_result = "factors/U" in f
    if not is_result:
        return measurement_layers(read_measurement(path), path.stem)
    result = read_result(path)
    if result.object is None:
        raise ValueError(f"{path}: a {result.attrs.get('problem')} result has no image to show")
    pixel = float(result.attrs.get("pixel_size", 1e-6)) * 1e6
    label = f"{path.stem.split('.')[0]} {result.method.upper()}"
    return [(np.abs(result.object), {"name": f"{label} amplitude", "scale": (pixel, pixel), "colormap": "gray"},
             "image"),
            (np.angle(result.object), {"name": f"{label} phase", "scale": (pixel, pixel), "colormap": "twilight",
                                       "contrast_limits": (-np.pi, np.pi)}, "image")]
