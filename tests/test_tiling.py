"""Whole fields of view: tile layout, per-tile illumination and the exact full-field simulator."""

import numpy as np
import pytest
import torch

from ptycho_app.physics import Acquisition, direction_sines_from_leds, fp_intensities
from ptycho_app.simulation import led_array, reference_object
from ptycho_app.tiling import (
    crop_margin,
    curvature_phase,
    cut_object_tile,
    cut_tile,
    full_field_intensities,
    illumination_curvature,
    sample_coordinates,
    spherical_phase,
    tile_acquisition,
    tile_frames,
    tile_grid,
)

OPTICS = dict(wavelength=532e-9, na=0.08, magnification=4.0, camera_pixel=6.5e-6, upsample=4)


def whole_pixel_leds(shifts, frame_size, distance):
    """LED positions (y, x) whose direction sines shift the windows by exactly ``shifts`` pixels."""
    dk = OPTICS["magnification"] / (frame_size * OPTICS["camera_pixel"])
    sines = np.asarray(shifts, dtype=np.float64) * OPTICS["wavelength"] * dk
    return sines * distance / np.sqrt(1 - (sines**2).sum(axis=1, keepdims=True))


def test_tile_grid_covers_with_overlap():
    corners = tile_grid(100, 32, 8)
    covered = np.zeros((100, 100), dtype=int)
    for row, col in corners:
        covered[row:row + 32, col:col + 32] += 1
    assert covered.min() >= 1
    starts = sorted({row for row, _ in corners})
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(later - earlier <= 32 - 8 for earlier, later in zip(starts, starts[1:], strict=False))
    assert tile_grid(32, 32, 0) == [(0, 0)]


@pytest.mark.parametrize("tile, overlap", [(40, 0), (16, 16), (16, -1)])
def test_tile_grid_rejects(tile, overlap):
    with pytest.raises(ValueError):
        tile_grid(32, tile, overlap)


def test_tile_sines():
    acq = Acquisition(frame_size=32, led_positions=led_array(3, 4e-3), led_distance=30e-3, **OPTICS)
    centred = tile_acquisition(acq, 128, (48, 48), 32)
    np.testing.assert_allclose(centred.direction_sines, acq.direction_sines, atol=1e-15)
    assert centred.frame_size == 32
    # top-left tile: centre at (0 + 16 - 64) camera pixels of 6.5 um / 4 = -78 um on both axes
    corner = tile_acquisition(acq, 128, (0, 0), 32)
    led = acq.led_positions[0]  # (-4 mm, -4 mm)
    offset = led - (-78e-6)
    expected = offset / np.sqrt((offset**2).sum() + 30e-3**2)
    np.testing.assert_allclose(corner.direction_sines[0], expected, rtol=1e-12)
    np.testing.assert_allclose(corner.direction_sines, direction_sines_from_leds(acq.led_positions + 78e-6, 30e-3))
    assert cut_tile(np.zeros((9, 128, 128)), (0, 96), 32).shape == (9, 32, 32)


def test_constant_object_on_axis_gives_its_intensity():
    acq = Acquisition(frame_size=16, led_positions=np.zeros((1, 2)), led_distance=1e3, **OPTICS)
    frames = full_field_intensities(np.full((64, 64), 0.7 + 0.2j), acq, 16, dtype=torch.complex128)
    np.testing.assert_allclose(frames, 0.53, rtol=1e-9)


def test_plane_wave_limit_matches_fp_intensities():
    """One tile-sized field, LEDs 10 km away: the spherical waves are plane waves to within the
    curvature phase pi r^2 / (wavelength z) <= 2e-7 rad (r = 18 um, the half diagonal), so the
    frames agree with fp_intensities to ~1e-7 of the frame maximum (whole-pixel window shifts:
    the tilted wave is periodic on the grid, as fp_intensities assumes)."""
    shifts = [(0, 0), (5, -3), (-12, 7), (20, 2), (0, -24)]
    acq = Acquisition(frame_size=16, led_positions=whole_pixel_leds(shifts, 16, 1e4), led_distance=1e4,
                      subpixel=True, **OPTICS)
    obj = reference_object(64)
    expected = fp_intensities(obj, acq)
    scale = expected.max(axis=(1, 2), keepdims=True)
    frames = full_field_intensities(obj, acq, 16, dtype=torch.complex128)
    assert np.max(np.abs(frames - expected) / scale) < 1e-6  # measured 4e-8
    frames64 = full_field_intensities(obj, acq, 16, frames_per_block=2)  # complex64, in blocks
    assert frames64.dtype == np.float32
    assert np.max(np.abs(frames64 - expected) / scale) < 3e-5  # measured 7e-6 (float32 phases)


def test_tiles_of_a_full_field_match_per_tile_sines():
    """128 x 128 camera pixels, 5 x 5 LEDs 4 mm apart 30 mm below: the corner tile's frames are
    fp_intensities with the tile's own sines to 6.5% (relative L2), against 9.6% with the field
    centre's.  The object is periodic with the tile's period (so fp_intensities' periodic tile is
    the truth up to the illumination), the field padded by 64 pixels (the FFT's wrap, where the
    tilted waves jump in phase, moved away).  What remains (also 5.7% on the centred tile) is the
    spherical wave's curvature across a 52 um tile, pi r^2 / (wavelength z) ~ 0.27 rad in its
    corners, which no direction sine models; in the plane-wave limit (LEDs 1 km away at the same
    angles) the same comparison gives 1.0% (the wrap's Airy tails through the 64-pixel pad)."""
    field, tile, upsample = 128, 32, OPTICS["upsample"]
    obj = np.tile(reference_object(tile * upsample), (field // tile, field // tile))
    acq = Acquisition(frame_size=tile, led_positions=led_array(5, 4e-3), led_distance=30e-3, subpixel=True,
                      **OPTICS)
    frames = full_field_intensities(obj, acq, field, dtype=torch.complex128, pad=64, pad_mode="wrap")
    assert frames.shape == (25, field, field)

    def error(corner, acquisition):
        measured = cut_tile(frames, corner, tile)
        model = fp_intensities(cut_object_tile(obj, corner, tile, upsample), acquisition)
        return np.linalg.norm(model - measured) / np.linalg.norm(measured)

    centre = error((48, 48), tile_acquisition(acq, field, (48, 48), tile))
    local = error((0, 0), tile_acquisition(acq, field, (0, 0), tile))
    far = error((0, 0), acq)
    assert centre < 0.07 and local < 0.075  # measured 0.057, 0.065
    assert far > 1.35 * local  # measured 0.096


def test_tile_frames_put_the_tile_inside_an_unmeasured_margin():
    frames = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)
    saturated = frames < 30
    inner, measured = tile_frames(frames, (2, 3), 4, 2, mask=~saturated)
    assert inner.shape == measured.shape == (2, 8, 8) and inner.dtype == np.float32
    np.testing.assert_array_equal(inner[:, 2:6, 2:6], frames[:, 2:6, 3:7])
    assert not inner[:, :2].any() and not inner[:, :, 6:].any()
    np.testing.assert_array_equal(measured[:, 2:6, 2:6], ~saturated[:, 2:6, 3:7])
    assert measured.sum() == 2 * 16 - 4  # values 23-26 (frame 0, the tile's first row) are saturated
    assert not measured[:, :2].any() and not measured[:, :, 6:].any()
    np.testing.assert_array_equal(crop_margin(np.ones((16, 16)) * np.arange(16), 4, 2, 2)[0], np.arange(4, 12))


def test_curvature_is_the_second_order_term_of_the_spherical_wave():
    """One LED 2 mm / -8 mm off a tile's centre, 30 mm below: the exact optical path of its spherical
    wave across a 128 x 128 object tile (spherical_phase), less its value and slope at the centre
    (the tile model's plane wave), is the curvature phase to 7e-5 rad where it reaches 0.25 rad (the
    third-order rest, |rho|^3 / R^2)."""
    tile, upsample, distance = 32, 4, 30e-3
    led = np.array([[2e-3, -8e-3]])
    acquisition = Acquisition(frame_size=tile, led_positions=led, led_distance=distance, **OPTICS)
    rho = sample_coordinates(tile * upsample, acquisition.pixel_size_hr)
    wavenumber = 2 * np.pi / OPTICS["wavelength"]
    path = spherical_phase(rho, led[0], distance)  # R(rho) - R(0)
    slope = -led[0] / np.sqrt((led**2).sum() + distance**2)
    rest = wavenumber * (path - slope[0] * rho[:, None] - slope[1] * rho[None, :])
    expected = curvature_phase(acquisition, tile)
    assert np.abs(expected).max() > 0.2  # measured 0.249
    assert np.abs(rest - expected).max() < 2e-4  # measured 7.4e-5
    # the mean over the bright-field LEDs of a centred array is isotropic: H = I / z to first order
    array = Acquisition(frame_size=tile, led_positions=led_array(3, 1e-3), led_distance=distance, **OPTICS)
    np.testing.assert_allclose(illumination_curvature(array), np.eye(2) / distance, rtol=3e-3)
