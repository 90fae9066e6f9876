"""Whole fields of view: an exact full-field simulator, tiles and per-tile illumination.

A real acquisition is a stack of full camera frames ``(L, Mf, Mf)``.  The LED board is a few
centimetres from the sample, so each LED lights the field with a spherical wave whose local
direction changes across the field of view.  The field is therefore cut into overlapping
``T x T`` tiles (:func:`tile_grid`, :func:`cut_tile`); each tile is an ordinary FP problem with
its own direction sines (:func:`tile_acquisition`), evaluated at the tile's centre.

Sample coordinates (stated once, used everywhere here)
------------------------------------------------------
Coordinates ``(y, x)`` at the sample are in metres from the geometric centre of the field.
Camera pixel ``r`` (a row or column index, ``0 <= r < Mf``) covers ``[r, r + 1) * dx_lr`` from
the field's edge, so its centre is at ``(r + 1/2 - Mf / 2) * dx_lr``; high-resolution pixel
``i`` likewise sits at ``(i + 1/2 - Nf / 2) * dx_hr``.  The centre of the tile whose top-left
camera pixel is ``(r0, c0)`` is at ``((r0 + T/2 - Mf/2) dx_lr, (c0 + T/2 - Mf/2) dx_lr)``: a tile
centred in the field (``r0 = c0 = (Mf - T) / 2``) has its centre on the field's centre and gets
the global direction sines.

:func:`full_field_intensities` is independent of the tiling: the object on the full
``Nf x Nf`` grid (``Nf = upsample * Mf``) times each LED's spherical wave, the objective's
coherent transfer function on the full grid, and the camera exactly as in
:func:`~ptycho_app.physics.fp_intensities` (the band-limited field cropped to the ``Mf x Mf``
central spectrum, scaled by ``(Mf / Nf)^2``, squared).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .physics import Acquisition, direction_sines_from_leds

#: Default number of full-field frames simulated at once (memory ``~ 3 * block * Nf^2`` complex).
FRAMES_PER_BLOCK = 4
#: Default unmeasured margin around each tile's model, camera pixels (``--tile-margin``; docs/tiling.md).
TILE_MARGIN = 16


def sample_coordinates(size: int, pixel: float) -> np.ndarray:
    """Pixel-centre coordinates along one axis, metres from the field's centre.

    Parameters
    ----------
    size : int
        Pixels along the axis.
    pixel : float
        Pixel size at the sample, metres.

    Returns
    -------
    (size,) float64
        ``(i + 1/2 - size / 2) * pixel``.
    """
    return (np.arange(size) + 0.5 - size / 2) * pixel


def full_grid_pupil(acquisition: Acquisition, grid_size: int) -> np.ndarray:
    """The objective's coherent transfer function on a full ``Nf x Nf`` spectrum grid.

    Parameters
    ----------
    acquisition : Acquisition
        Optics (``pupil``, an aberration array on the tile grid, is not supported).
    grid_size : int
        ``Nf``.

    Returns
    -------
    (Nf, Nf) complex128
        ``1`` on ``|f| <= NA / wavelength`` (fftshifted layout, DC at ``Nf // 2``, step
        ``1 / (Nf dx_hr)``), times the defocus phase ``exp(i 2 pi dz sqrt(1/wavelength^2 - |f|^2))``.
    """
    step = 1.0 / (grid_size * acquisition.pixel_size_hr)
    f = (np.arange(grid_size) - grid_size // 2) * step
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    pupil = (f2 <= (acquisition.na / acquisition.wavelength) ** 2).astype(np.complex128)
    if acquisition.defocus != 0.0:
        kz = np.sqrt(np.maximum(1.0 / acquisition.wavelength**2 - f2, 0.0))
        pupil = pupil * np.exp(2j * np.pi * acquisition.defocus * kz)
    return pupil


def spherical_phase(coords: np.ndarray, led: np.ndarray, distance: float) -> np.ndarray:
    """Optical path from one LED to every sample pixel, minus the path to the field's centre.

    Parameters
    ----------
    coords : (Nf,) float64
        Pixel-centre coordinates along each axis (:func:`sample_coordinates`), metres.
    led : (2,) float64
        LED position ``(y, x)``, metres.
    distance : float
        ``z``, metres.

    Returns
    -------
    (Nf, Nf) float64
        ``R(y, x) - R0`` with ``R = sqrt((x - x_l)^2 + (y - y_l)^2 + z^2)`` and ``R0 = R(0, 0)``,
        in the cancellation-free form ``(x^2 + y^2 - 2 x x_l - 2 y y_l) / (R + R0)`` (the
        constant ``R0`` only changes the global phase, which the intensities drop).
    """
    y, x = coords[:, None], coords[None, :]
    ly, lx = float(led[0]), float(led[1])
    r0 = np.sqrt(ly**2 + lx**2 + distance**2)
    r = np.sqrt((y - ly) ** 2 + (x - lx) ** 2 + distance**2)
    return (y**2 + x**2 - 2 * y * ly - 2 * x * lx) / (r + r0)


def full_field_intensities(obj, acquisition: Acquisition, field_frames: int, dtype=torch.complex64,
                           frames_per_block: int = FRAMES_PER_BLOCK, device="cpu", pad: int = 0,
                           pad_mode: str = "reflect") -> np.ndarray:
    """Exact full-field FP frames: spherical-wave illumination, no tiling, no plane-wave model.

    Frame ``l``: the object times the spherical wave
    ``exp(i 2 pi / wavelength * sqrt((x - x_l)^2 + (y - y_l)^2 + z^2))`` of LED ``l`` (unit
    amplitude: no ``1 / R`` or obliquity fall-off), filtered by :func:`full_grid_pupil` on the full
    ``Nf x Nf`` grid, then the camera as :func:`~ptycho_app.physics.fp_intensities`: the central
    ``Mf x Mf`` of the field's spectrum, inverse FFT, times ``(Mf / Nf)^2``, squared.  A constant
    object ``a`` lit on axis from far away gives ``|a|^2``.  The field is periodic on the
    ``Nf x Nf`` grid (the FFT), so the outermost few camera pixels see light wrapped from the
    opposite edge through the point-spread function; cut tiles away from the edge or ignore them.

    Parameters
    ----------
    obj : (Nf, Nf) complex
        Object transmission on the full high-resolution grid, ``Nf = acquisition.upsample * Mf``.
    acquisition : Acquisition
        Optics and LED geometry (``led_positions`` and ``led_distance`` needed; ``frame_size``
        is ignored; ``pupil`` must be None).  The positions are ``(y, x)`` relative to the point
        under the field's centre.
    field_frames : int
        ``Mf``: camera pixels per side of the full field.
    dtype : torch.dtype
        ``torch.complex64`` (default) or ``torch.complex128``.
    frames_per_block : int
        Frames computed at once (bounds memory to a few ``frames_per_block x Nf x Nf`` arrays).
    device : str or torch.device
    pad : int
        Camera pixels added on every side before the FFT (the object extended by ``pad_mode``,
        the spherical wave computed on the larger grid) and cropped away after: moves the
        periodic wrap of the FFT, where the tilted wave jumps in phase, ``pad`` pixels away from
        the field (0: none, the field itself is the period).
    pad_mode : str
        :func:`numpy.pad` mode extending the object (``"reflect"``, ``"wrap"`` for a periodic
        object, ``"constant"`` for an opaque surround).

    Returns
    -------
    (L, Mf, Mf) float32 or float64
        Intensities, float64 with ``torch.complex128``.
    """
    if acquisition.led_positions is None or acquisition.led_distance is None:
        raise ValueError("the full-field simulator needs led_positions and led_distance (spherical waves)")
    if acquisition.pupil is not None:
        raise ValueError("the full-field simulator evaluates the circular pupil and defocus only "
                         "(acquisition.pupil must be None)")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
    Mf = int(field_frames)
    Nf = acquisition.upsample * Mf
    obj = np.asarray(obj)
    if obj.shape != (Nf, Nf):
        raise ValueError(f"object must be {Nf}x{Nf} (upsample {acquisition.upsample} x {Mf} camera pixels), "
                         f"got {obj.shape}")
    pad = int(pad)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    obj = np.pad(obj, acquisition.upsample * pad, mode=pad_mode)
    Mf, Nf = Mf + 2 * pad, Nf + 2 * acquisition.upsample * pad
    device = torch.device(device)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    coords = sample_coordinates(Nf, acquisition.pixel_size_hr)
    wavenumber = 2 * np.pi / acquisition.wavelength
    pupil = torch.as_tensor(np.fft.ifftshift(full_grid_pupil(acquisition, Nf)), dtype=dtype, device=device)
    obj_t = torch.as_tensor(obj, device=device).to(dtype)
    leds = np.asarray(acquisition.led_positions, dtype=np.float64)
    frames = []
    block = max(1, int(frames_per_block))
    for start in range(0, len(leds), block):
        phases = np.stack([spherical_phase(coords, led, acquisition.led_distance) for led in leds[start:start + block]])
        waves = torch.polar(torch.ones((), dtype=real, device=device),
                            torch.as_tensor(wavenumber * phases, device=device).to(real))
        spectra = torch.fft.fft2(obj_t * waves) * pupil  # (Lb, Nf, Nf)
        crop = camera_crop(spectra, Mf)
        fields = torch.fft.ifft2(crop) * (Mf / Nf) ** 2
        frames.append((fields.abs() ** 2)[:, pad:Mf - pad, pad:Mf - pad].cpu())
    return torch.cat(frames).numpy()


def camera_crop(spectra: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``Mf x Mf`` frequencies of full-grid spectra, both in FFT (unshifted) layout.

    Parameters
    ----------
    spectra : (Lb, Nf, Nf) complex
        ``fft2`` of the fields.
    size : int
        ``Mf``.

    Returns
    -------
    (Lb, Mf, Mf) complex
        The frequencies ``-Mf//2 .. Mf - Mf//2 - 1`` (DC at ``Nf // 2`` of the shifted full grid
        lands on ``Mf // 2`` of the shifted camera grid, as in ``fp_intensities``' windows).
    """
    grid = spectra.shape[-1]
    start = grid // 2 - size // 2
    shifted = torch.fft.fftshift(spectra, dim=(-2, -1))[..., start:start + size, start:start + size]
    return torch.fft.ifftshift(shifted, dim=(-2, -1))


def tile_grid(field_size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners of overlapping tiles covering a square field.

    Tiles start every ``tile - overlap`` pixels; the last row and column of tiles is moved
    flush with the field's edge (so it overlaps its neighbour by at least ``overlap``).

    Parameters
    ----------
    field_size : int
        ``Mf``: camera pixels per side.
    tile : int
        ``T``: tile size, pixels.
    overlap : int
        Least overlap of neighbouring tiles, pixels, ``0 <= overlap < tile``.

    Returns
    -------
    list of (int, int)
        ``(row, col)`` corners in camera pixels, row by row.

    Raises
    ------
    ValueError
        When ``tile > field_size``, ``tile < 1``, or ``overlap`` is not in ``[0, tile)``.
    """
    for name, value in (("field_size", field_size), ("tile", tile), ("overlap", overlap)):
        if int(value) != value:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    field_size, tile, overlap = int(field_size), int(tile), int(overlap)
    if tile < 1 or tile > field_size:
        raise ValueError(f"tile must be between 1 and the field size {field_size}, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile = {tile}), got {overlap}")
    starts = axis_starts(field_size, tile, tile - overlap)
    return [(row, col) for row in starts for col in starts]


def axis_starts(field_size: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: ``0, stride, 2 stride, ...``, the last one at ``field_size - tile``."""
    starts = list(range(0, field_size - tile, stride))
    return starts + [field_size - tile]


def tile_center(field_size: int, corner, tile: int, pixel: float) -> np.ndarray:
    """Sample coordinates of a tile's centre (see the module's convention).

    Parameters
    ----------
    field_size : int
        ``Mf``.
    corner : (int, int)
        ``(row, col)`` of the tile's top-left camera pixel.
    tile : int
        ``T``.
    pixel : float
        ``dx_lr``, metres.

    Returns
    -------
    (2,) float64
        ``(y, x) = (corner + T/2 - Mf/2) * dx_lr`` in metres from the field's centre.
    """
    return (np.asarray(corner, dtype=np.float64) + tile / 2 - field_size / 2) * pixel


def tile_acquisition(acquisition: Acquisition, field_size: int, corner, tile: int, margin: int = 0) -> Acquisition:
    """The acquisition of one tile: same optics, ``T x T`` frames, the tile's own illumination.

    The LED positions become relative to the point under the tile's centre ``c``
    (:func:`tile_center`), so the direction sines are
    ``s = (p_led - c) / |(p_led - c, z)|`` (:func:`~ptycho_app.physics.direction_sines_from_leds`).
    With a ``margin`` ``P``, the model's frames are ``(T + 2P) x (T + 2P)`` around the same centre
    (:func:`tile_frames`: the ring is not measured).

    Parameters
    ----------
    acquisition : Acquisition
        The full field's optics with ``led_positions`` (relative to the field's centre) and
        ``led_distance``.
    field_size : int
        ``Mf``: camera pixels per side of the full field.
    corner : (int, int)
        ``(row, col)`` of the tile's top-left camera pixel.
    tile : int
        ``T``.
    margin : int
        ``P``: unmeasured camera pixels on every side of the tile's model (0: none).

    Returns
    -------
    Acquisition
        ``frame_size = T + 2P``, ``led_positions = p_led - c``, everything else unchanged.

    Raises
    ------
    ValueError
        When the acquisition has no LED geometry, the tile leaves the field, or an aberration
        array ``pupil`` does not have the tile's shape.
    """
    if acquisition.led_positions is None or acquisition.led_distance is None:
        raise ValueError("per-tile illumination needs led_positions and led_distance")
    row, col = (int(v) for v in corner)
    if min(row, col) < 0 or max(row, col) + tile > field_size:
        raise ValueError(f"tile {tile} at {(row, col)} leaves the {field_size}x{field_size} field")
    if int(margin) != margin or margin < 0:
        raise ValueError(f"the tile margin must be a non-negative integer, got {margin!r}")
    size = int(tile) + 2 * int(margin)
    if acquisition.pupil is not None and acquisition.pupil.shape != (size, size):
        raise ValueError(f"the aberration array is {acquisition.pupil.shape}, the tile's model is {size}x{size}")
    center = tile_center(field_size, (row, col), tile, acquisition.pixel_size_lr)
    positions = np.asarray(acquisition.led_positions, dtype=np.float64) - center
    return dataclasses.replace(acquisition, frame_size=size, led_positions=positions, direction_sines=None)


def tile_frames(frames, corner, tile: int, margin: int, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """One tile's frames inside an unmeasured margin, and the mask of the pixels measured.

    FP's forward model is periodic on the tile, but a tile of a larger field is not: light from the
    object outside the tile reaches its border pixels through the point-spread function, and the
    object wraps around where the tile's edges meet.  A ring of ``P`` model pixels that no
    measurement constrains (mask False) lets the reconstructed object there take up both, so the
    wrap no longer distorts the measured tile (docs/tiling.md: measured errors).

    Parameters
    ----------
    frames : (L, Mf, Mf) array
        Full-field intensities.
    corner : (int, int)
        ``(row, col)`` of the tile's top-left camera pixel.
    tile : int
        ``T``.
    margin : int
        ``P``, camera pixels (0: the tile alone, every pixel measured).
    mask : (L, Mf, Mf) bool, optional
        Pixels of the full field the loss may use (saturation); None: all.

    Returns
    -------
    frames : (L, T + 2P, T + 2P) float32
        The tile's intensities in the centre, 0 in the ring.
    measured : (L, T + 2P, T + 2P) bool
        True on the tile's pixels (and ``mask`` there), False in the ring.
    """
    part = np.asarray(cut_tile(frames, corner, tile))
    size = int(tile) + 2 * int(margin)
    inner = (slice(None), slice(margin, margin + tile), slice(margin, margin + tile))
    out = np.zeros((part.shape[0], size, size), dtype=np.float32)
    out[inner] = part
    measured = np.zeros(out.shape, dtype=bool)
    measured[inner] = True if mask is None else np.asarray(cut_tile(mask, corner, tile))
    return out, measured


def crop_margin(obj, tile: int, margin: int, upsample: int):
    """The tile's own ``(upsample T) x (upsample T)`` object from its model's ``upsample (T + 2P)`` square."""
    start = int(margin) * int(upsample)
    size = int(tile) * int(upsample)
    return obj[..., start:start + size, start:start + size]


def illumination_curvature(acquisition: Acquisition) -> np.ndarray:
    """The mean curvature of the bright-field LEDs' spherical waves at a tile's centre.

    LED ``l`` at lateral offset ``D_l = c - p_l`` from the tile's centre and ``R_l = |(D_l, z)|``
    lights the tile with the phase ``k R(c + rho)``, whose Taylor expansion is
    ``k R_l + k s_l . rho + (k / 2) rho^T H_l rho + O(|rho|^3 / R_l^2)`` with the direction sines ``s_l``
    (the tile model's plane wave) and ``H_l = (I - u_l u_l^T) / R_l``, ``u_l = D_l / R_l``.  The
    tile model has no quadratic term: the reconstructed object carries the frames' common
    curvature, ``o(rho) exp(i k rho^T H rho / 2)``.  This returns ``H`` as the mean of ``H_l`` over
    the bright-field LEDs (the frames that carry most of the signal; all LEDs when none is).

    Parameters
    ----------
    acquisition : Acquisition
        A tile's (:func:`tile_acquisition`: LED positions relative to its centre, and the distance).

    Returns
    -------
    (2, 2) float64
        ``H`` in 1/m, axes ``(y, x)``.
    """
    offsets = -np.asarray(acquisition.led_positions, dtype=np.float64)  # D_l = c - p_l, c = 0
    R = np.sqrt((offsets**2).sum(axis=1) + acquisition.led_distance**2)
    u = offsets / R[:, None]
    H = (np.eye(2)[None] - u[:, :, None] * u[:, None, :]) / R[:, None, None]
    bright = np.hypot(u[:, 0], u[:, 1]) <= acquisition.na
    chosen = bright if bright.any() else np.ones(len(R), dtype=bool)
    return H[chosen].mean(axis=0)


def curvature_phase(acquisition: Acquisition, tile: int) -> np.ndarray:
    """The quadratic illumination phase a tile's reconstruction carries (:func:`illumination_curvature`).

    Parameters
    ----------
    acquisition : Acquisition
        The tile's.
    tile : int
        ``T``, camera pixels (the phase is evaluated on the tile's ``upsample T`` object pixels,
        ``rho`` from the tile's centre as in the module's convention).

    Returns
    -------
    (upsample T, upsample T) float64
        ``(k / 2) rho^T H rho`` in radians; multiply the object by ``exp(-i phase)`` to remove it.
    """
    H = illumination_curvature(acquisition)
    rho = sample_coordinates(int(tile) * acquisition.upsample, acquisition.pixel_size_hr)
    y, x = rho[:, None], rho[None, :]
    wavenumber = 2 * np.pi / acquisition.wavelength
    return wavenumber / 2 * (H[0, 0] * y**2 + 2 * H[0, 1] * y * x + H[1, 1] * x**2)


def tile_sines(acquisition: Acquisition, field_size: int, corner, tile: int) -> np.ndarray:
    """(L, 2) float64: direction sines ``(s_y, s_x)`` at a tile's centre (no tile acquisition built)."""
    center = tile_center(field_size, corner, tile, acquisition.pixel_size_lr)
    return direction_sines_from_leds(np.asarray(acquisition.led_positions) - center, acquisition.led_distance)


def cut_tile(frames, corner, tile: int):
    """One tile of full-field frames.

    Parameters
    ----------
    frames : (L, Mf, Mf) array or tensor
    corner : (int, int)
        ``(row, col)`` of the tile's top-left camera pixel.
    tile : int
        ``T``.

    Returns
    -------
    (L, T, T)
        A view of ``frames``.
    """
    row, col = (int(v) for v in corner)
    if min(row, col) < 0 or row + tile > frames.shape[-2] or col + tile > frames.shape[-1]:
        raise ValueError(f"tile {tile} at {(row, col)} leaves the {tuple(frames.shape[-2:])} frames")
    return frames[..., row:row + tile, col:col + tile]


def cut_object_tile(obj, corner, tile: int, upsample: int):
    """The high-resolution object under a tile: ``(Nf, Nf) -> (upsample T, upsample T)``."""
    row, col = (int(v) * upsample for v in corner)
    size = tile * upsample
    return obj[..., row:row + size, col:col + size]
