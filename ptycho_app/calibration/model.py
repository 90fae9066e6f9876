"""What a calibration holds: the recovered pupil, its Zernike coefficients, LED brightness and geometry.

A :class:`Calibration` is what ``reconstruct --pupil recover`` / ``--calibrate ...`` recover next to
the object, what a result file stores in its ``calibration`` group, and what ``--calibration FILE``
applies to other measurements.  Every field is optional (None: not recovered, the measurement's own
model is used).

Result-file layout (group ``calibration``; see :mod:`ptycho_app.io.results`):

==============================  ==================  ===============================================
``calibration/pupil``           (M, M) complex64    the coherent transfer function (support disc times
                                                    the aberration), window layout, DC at ``M // 2``
``calibration/zernike``         (J,) float64        aberration phase in Zernike polynomials, Noll order
                                                    ``j = 1 .. J`` (``zernike[j - 1]``), radians,
                                                    RMS-normalized over the unit pupil ``|f| <= NA / lambda``
``calibration/brightness``      (L,) float64        per-frame brightness scalars (1: as the model says)
``calibration/direction_sines`` (L, 2) float64      illumination ``(s_y, s_x)`` per frame, as refined
==============================  ==================  ===============================================

The LED-array fit is stored as attributes of the group: ``led_shift_y``, ``led_shift_x`` (metres),
``led_rotation`` (degrees), ``led_distance`` (metres); ``pupil_mode`` (``fixed`` / ``recover``) and
``calibrate`` (``none`` / ``brightness`` / ``geometry`` / ``all``) record what was recovered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Attributes of the LED-array fit, in the order they are shown.
LED_MODEL_KEYS = ("led_shift_y", "led_shift_x", "led_rotation", "led_distance")


@dataclass
class Calibration:
    """A recovered (or given) calibration of one acquisition.

    Attributes
    ----------
    pupil : (M, M) complex128 or None
        The whole coherent transfer function on the window grid (DC at ``M // 2``): support times
        aberration, zero outside the support.
    zernike : (J,) float64 or None
        Aberration phase in radians, Noll order (``zernike[0]`` is piston ``Z_1``).
    brightness : (L,) float64 or None
        Per-frame brightness scalars (the model's intensities of frame ``l`` are multiplied by it).
    direction_sines : (L, 2) float64 or None
        Refined illumination ``(s_y, s_x)`` per frame.
    led_model : dict
        The LED-array fit (keys :data:`LED_MODEL_KEYS`), empty when not fitted.
    attrs : dict
        What was recovered and how (``pupil_mode``, ``calibrate``, ...).
    """

    pupil: np.ndarray | None = None
    zernike: np.ndarray | None = None
    brightness: np.ndarray | None = None
    direction_sines: np.ndarray | None = None
    led_model: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def is_empty(self) -> bool:
        """Nothing recovered."""
        return (self.pupil is None and self.zernike is None and self.brightness is None
                and self.direction_sines is None and not self.led_model)
