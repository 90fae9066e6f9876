"""Built-in test objects and acquisitions for simulations, demos and benchmarks."""

from __future__ import annotations

import numpy as np
from skimage import data
from skimage.transform import resize

from .physics import Acquisition, led_grid


def reference_object(size: int, amplitude_range=(0.3, 1.0), phase_range=(-np.pi / 2, np.pi / 2)) -> np.ndarray:
    """Complex test object: amplitude from scikit-image's ``camera``, phase from ``astronaut``.

    Parameters
    ----------
    size : int
        ``N``: the object is ``N x N``.
    amplitude_range : (float, float)
        Amplitude is the camera image mapped linearly onto this range.
    phase_range : (float, float)
        Phase (radians) is the astronaut's grey level mapped onto this range.

    Returns
    -------
    (N, N) complex128
    """
    def rescaled(image, low, high):
        image = resize(image.astype(np.float64), (size, size), anti_aliasing=True)
        image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
        return low + (high - low) * image

    amplitude = rescaled(data.camera(), *amplitude_range)
    phase = rescaled(data.astronaut().mean(axis=2), *phase_range)
    return amplitude * np.exp(1j * phase)


def default_acquisition(frame_size: int = 16, upsample: int = 4, leds_per_side: int = 7,
                        led_pitch: float = 4e-3, led_distance: float = 80e-3,
                        wavelength: float = 532e-9, na: float = 0.08, magnification: float = 4.0,
                        camera_pixel: float = 6.5e-6) -> Acquisition:
    """A square LED-grid acquisition with the optics of the FP-256 reference problem.

    Defaults: 7 x 7 LEDs, 4 mm pitch, 80 mm below the sample, 532 nm, NA 0.08, 4x, 6.5 um
    camera pixels, 16 x 16 frames upsampled 4x (a 64 x 64 object).  Neighbouring pupils overlap
    by about 70%.
    """
    return Acquisition(wavelength=wavelength, na=na, magnification=magnification,
                       camera_pixel=camera_pixel, frame_size=frame_size, upsample=upsample,
                       led_positions=led_grid(leds_per_side, led_pitch), led_distance=led_distance)
