"""Simulated FP data: test objects, LED arrays and noise.

Objects come from scikit-image's bundled images (amplitude from one, phase from another) or from a
user's files; LED arrays are rectangular grids (size, pitch, centre offset, rotation) in raster or
outward-spiral order; noise is Poisson (photons per bright-field pixel), additive Gaussian, or none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import data
from skimage.color import rgb2gray
from skimage.transform import resize

from .io.errors import InputFileError
from .physics import Acquisition, fp_intensities

#: scikit-image images that ship with the package (no download needed).
BUNDLED_IMAGES = ("camera", "astronaut", "moon", "coins", "cell", "brick", "grass", "gravel", "page", "text",
                  "clock", "coffee", "chelsea", "rocket", "horse", "checkerboard", "shepp_logan_phantom")

NOISE_KINDS = ("none", "poisson", "gaussian")

#: ``N = upsample * M`` of a simulation whose object grid nothing else fixes.
DEFAULT_UPSAMPLE = 4


def rescale_image(image, size, value_range) -> np.ndarray:
    """Grey image resized to ``size x size`` and mapped linearly onto ``value_range``.

    Returns
    -------
    (size, size) float64
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:  # colour: the mean of R, G and B
        image = image[..., :3].mean(axis=2)
    image = resize(image, (size, size), anti_aliasing=True)
    low, high = value_range
    image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
    return low + (high - low) * image


def bundled_image(name: str) -> np.ndarray:
    """One of :data:`BUNDLED_IMAGES` as a float array."""
    if name not in BUNDLED_IMAGES:
        raise ValueError(f"unknown image {name!r}: choose one of {', '.join(BUNDLED_IMAGES)}")
    return np.asarray(getattr(data, name)(), dtype=np.float64)


def reference_object(size: int, amplitude_range=(0.3, 1.0), phase_range=(-np.pi / 2, np.pi / 2),
                     amplitude_image="camera", phase_image="astronaut") -> np.ndarray:
    """Complex test object: amplitude from one scikit-image image, phase from another.

    Parameters
    ----------
    size : int
        ``N``: the object is ``N x N``.
    amplitude_range : (float, float)
        The amplitude image's grey levels are mapped linearly onto this range.
    phase_range : (float, float)
        Phase in radians, likewise.
    amplitude_image, phase_image : str
        Names from :data:`BUNDLED_IMAGES` (defaults: ``camera`` and ``astronaut``).

    Returns
    -------
    (N, N) complex128
    """
    amplitude = rescale_image(bundled_image(amplitude_image), size, amplitude_range)
    phase = rescale_image(bundled_image(phase_image), size, phase_range)
    return amplitude * np.exp(1j * phase)


def read_image(path) -> np.ndarray:
    """A 2-D image from .npy, .png, .tif or another format scikit-image reads (checked)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        if path.suffix.lower() == ".npy":
            image = np.load(path, allow_pickle=False)
        else:
            from skimage.io import imread

            image = imread(path)
    except Exception as error:  # noqa: BLE001 (any reader failure is the user's file)
        reason = (str(error).strip().splitlines() or [""])[0]
        raise InputFileError(path, f"cannot be read as an image ({type(error).__name__}: {reason})") from None
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and not np.iscomplexobj(image):
        image = rgb2gray(image[..., :3].astype(np.float64) / (255.0 if image.dtype == np.uint8 else 1.0))
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.number) and image.dtype != bool:
        raise InputFileError(path, f"expected a 2-D image, got shape {image.shape} dtype {image.dtype}")
    if not np.all(np.isfinite(image)):
        raise InputFileError(path, "contains NaN or Inf")
    return image


def upsample_for_object(path, frame_size: int) -> int:
    """The upsampling factor a complex object file implies: its size ``N`` over the frame size ``M``.

    Raises
    ------
    InputFileError
        When the object is not square or ``N`` is not a multiple of ``M``.
    """
    shape = read_image(path).shape
    size = shape[0]
    if shape[0] != shape[1] or size < frame_size or size % frame_size:
        raise InputFileError(path, f"expected an N x N object with N a multiple of the frame size {frame_size} "
                             f"(N = upsample x {frame_size}), got shape {shape}")
    return size // frame_size


def object_from_files(size: int, complex_file=None, amplitude_file=None, phase_file=None,
                      amplitude_range=(0.3, 1.0), phase_range=(-np.pi / 2, np.pi / 2),
                      amplitude_image="camera", phase_image="astronaut") -> np.ndarray:
    """A user's object: a complex ``.npy`` (used as is, must be ``N x N``), or amplitude and/or
    phase images (resized to ``N x N`` and mapped onto the ranges; a missing one comes from the
    bundled images).

    Returns
    -------
    (N, N) complex128
    """
    if complex_file is not None:
        obj = read_image(complex_file)
        if obj.shape != (size, size):
            raise InputFileError(complex_file, f"expected a ({size}, {size}) object (upsample x frame size), "
                                 f"got {obj.shape}")
        return obj.astype(np.complex128)
    amplitude = rescale_image(read_image(amplitude_file) if amplitude_file else bundled_image(amplitude_image),
                              size, amplitude_range)
    phase = rescale_image(read_image(phase_file) if phase_file else bundled_image(phase_image), size, phase_range)
    return amplitude * np.exp(1j * phase)


def spiral_order(size: int) -> np.ndarray:
    """Indices of a ``size x size`` raster grid in outward-spiral order.

    From the centre LED (the one at ``(size // 2, size // 2)``): moves of +x once, +y once, -x
    twice, -y twice, +x three times, ... (the order of the blood-smear data in shared/), keeping
    the positions that fall inside the grid.

    Returns
    -------
    (size * size,) int64
        Raster indices ``row * size + col``.
    """
    row = col = size // 2
    order = [row * size + col]
    moves, run = [(0, 1), (1, 0), (0, -1), (-1, 0)], 1
    step = 0
    while len(order) < size * size:
        for _ in range(2):
            dr, dc = moves[step % 4]
            for _ in range(run):
                row, col = row + dr, col + dc
                if 0 <= row < size and 0 <= col < size:
                    order.append(row * size + col)
            step += 1
        run += 1
    return np.asarray(order, dtype=np.int64)


def led_array(size: int, pitch: float, center_offset=(0.0, 0.0), rotation=0.0, order="raster") -> np.ndarray:
    """LED positions of a square grid.

    Parameters
    ----------
    size : int
        LEDs per side.
    pitch : float
        Spacing in metres.
    center_offset : (float, float)
        ``(y, x)`` in metres of the grid centre from the point under the sample centre.
    rotation : float
        Rotation of the grid about its centre, degrees (counter-clockwise from x towards y).
    order : {"raster", "spiral"}
        Row by row, or outward from the centre LED (:func:`spiral_order`).

    Returns
    -------
    (size * size, 2) float64
        ``(y, x)`` in metres.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"LED grid size must be a positive integer, got {size}")
    if not (np.isfinite(pitch) and pitch > 0):
        raise ValueError(f"LED pitch must be a positive finite number, got {pitch}")
    if order not in ("raster", "spiral"):
        raise ValueError(f"LED order must be raster or spiral, got {order!r}")
    offsets = (np.arange(size) - (size - 1) / 2) * pitch
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    angle = np.deg2rad(rotation)
    yr = np.sin(angle) * x.ravel() + np.cos(angle) * y.ravel()
    xr = np.cos(angle) * x.ravel() - np.sin(angle) * y.ravel()
    positions = np.stack([yr, xr], axis=1) + np.asarray(center_offset, dtype=np.float64)
    return positions[spiral_order(size)] if order == "spiral" else positions


def default_acquisition(frame_size: int = 16, upsample: int = DEFAULT_UPSAMPLE, leds_per_side: int = 7,
                        led_pitch: float = 4e-3, led_distance: float = 80e-3,
                        wavelength: float = 532e-9, na: float = 0.08, magnification: float = 4.0,
                        camera_pixel: float = 6.5e-6, center_offset=(0.0, 0.0), rotation=0.0,
                        order="raster", defocus=0.0) -> Acquisition:
    """A square LED-grid acquisition with the optics of the FP-256 reference problem.

    Defaults: 7 x 7 LEDs, 4 mm pitch, 80 mm below the sample, 532 nm, NA 0.08, 4x, 6.5 um
    camera pixels, 16 x 16 frames upsampled 4x (a 64 x 64 object).  Neighbouring pupils overlap
    by about 70%.
    """
    return Acquisition(wavelength=wavelength, na=na, magnification=magnification,
                       camera_pixel=camera_pixel, frame_size=frame_size, upsample=upsample,
                       led_positions=led_array(leds_per_side, led_pitch, center_offset, rotation, order),
                       led_distance=led_distance, defocus=defocus)


def add_noise(intensities, acquisition: Acquisition, kind="none", photons=1000.0, sigma=0.01, seed=0):
    """Noisy frames.

    Parameters
    ----------
    intensities : (L, M, M) float
        Noise-free intensities.
    acquisition : Acquisition
        Tells which frames are bright-field.
    kind : {"none", "poisson", "gaussian"}
        ``poisson``: counts with mean ``photons`` per bright-field pixel on average, scaled back
        to the intensity units; ``gaussian``: additive, standard deviation ``sigma`` times the
        mean bright-field intensity (may leave small negatives, as background subtraction does).
    photons, sigma : float
    seed : int

    Returns
    -------
    (L, M, M) float32
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    intensities = np.asarray(intensities, dtype=np.float64)
    if kind == "none":
        return intensities.astype(np.float32)
    rng = np.random.default_rng(seed)
    bright = acquisition.bright_field
    level = intensities[bright].mean() if bright.any() else intensities.mean()
    if kind == "poisson":
        if not photons > 0:
            raise ValueError(f"photons must be positive, got {photons}")
        gain = photons / level
        return (rng.poisson(intensities * gain) / gain).astype(np.float32)
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return (intensities + sigma * level * rng.standard_normal(intensities.shape)).astype(np.float32)


def simulate_frames(obj, acquisition: Acquisition, noise="none", photons=1000.0, sigma=0.01, seed=0):
    """Frames of ``obj`` under ``acquisition`` with noise: (L, M, M) float32 intensities."""
    return add_noise(fp_intensities(obj, acquisition), acquisition, noise, photons, sigma, seed)
