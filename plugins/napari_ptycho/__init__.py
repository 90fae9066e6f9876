"""napari plugin of ptycho-app: open FP files, simulate a sample, reconstruct live with BM and UDU.

Everything numerical lives in the Qt-free ``ptycho_app`` package; this package only draws.
"""

__all__ = ["LAYER_KEY", "UNITS"]

#: Key in a layer's ``metadata`` holding the :class:`ptycho_app.io.measurement.Measurement`.
LAYER_KEY = "ptycho_app_measurement"
#: Units of the image layers' two axes: their scale is the pixel at the sample in um (the scale bar shows them).
UNITS = ("um", "um")
