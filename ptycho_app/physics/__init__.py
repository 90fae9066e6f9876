"""FP physics: acquisition geometry, the measurement operator and the simulator."""

from .acquisition import Acquisition, AcquisitionError, direction_sines_from_leds, led_grid
from .fp_operator import (
    FPMeasurement,
    band_limit,
    fp_intensities,
    object_to_spectrum,
    spectrum_to_object,
    synthetic_aperture,
)

__all__ = [
    "Acquisition",
    "AcquisitionError",
    "FPMeasurement",
    "band_limit",
    "direction_sines_from_leds",
    "fp_intensities",
    "led_grid",
    "object_to_spectrum",
    "spectrum_to_object",
    "synthetic_aperture",
]
