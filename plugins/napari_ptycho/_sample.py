"""Sample data: the demo's simulated acquisition (64 x 64 object, 7 x 7 LEDs), with its ground truth."""

from __future__ import annotations


def make_sample_data():
    """Frames of the default simulation, and the object they were made from (hidden layers)."""
    from ptycho_app.io.measurement import Measurement
    from ptycho_app.physics import fp_intensities
    from ptycho_app.simulation import default_acquisition, reference_object

    from ._reader import measurement_layers

    acquisition = default_acquisition()
    obj = reference_object(acquisition.grid_size)
    measurement = Measurement(frames=fp_intensities(obj, acquisition).astype("float32"), acquisition=acquisition,
                              ground_truth=obj.astype("complex64"))
    return measurement_layers(measurement, "simulated")
