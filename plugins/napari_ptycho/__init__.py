"""napari plugin of ptycho-app: open FP files, simulate a sample, reconstruct live with BM and UDU.

Everything numerical lives in the Qt-free ``ptycho_app`` package; this package only draws.
"""

__all__ = ["LAYER_KEY"]

#: Key in a layer's ``metadata`` holding the :class:`ptycho_app.io.measurement.Measurement`.
LAYER_KEY = "ptycho_app_measurement"
