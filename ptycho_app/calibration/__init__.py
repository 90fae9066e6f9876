"""Calibration of the FP model: pupil recovery, LED brightness and geometry (see :mod:`.model`)."""

from .model import LED_MODEL_KEYS, Calibration

__all__ = ["Calibration", "LED_MODEL_KEYS"]
