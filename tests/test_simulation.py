"""Simulation helpers: LED grids (order, offset, rotation), objects and noise, against closed forms."""

from pathlib import Path

import numpy as np
import pytest

from ptycho_app.io.errors import InputFileError
from ptycho_app.simulation import (
    add_noise,
    led_array,
    object_from_files,
    reference_object,
    rescale_image,
    spiral_order,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fpm_bloodsmear_uconn"


def test_spiral_order_of_a_3x3_grid_by_hand():
    # centre (1,1); +x -> (1,2); +y -> (2,2); -x twice -> (2,1), (2,0); -y twice -> (1,0), (0,0);
    # +x three times -> (0,1), (0,2), (0,3) outside
    assert spiral_order(3).tolist() == [4, 5, 8, 7, 6, 3, 0, 1, 2]


def test_spiral_order_matches_the_blood_smear_acquisition():
    if not SHARED.is_dir():
        pytest.skip(f"real data not found: {SHARED} (../shared is absent)")
    table = np.loadtxt(SHARED / "illumination_bloodsmear_red.csv", delimiter=",", skiprows=1)
    led_dx, led_dy = table[:, 1].astype(int), table[:, 2].astype(int)
    order = spiral_order(15)
    np.testing.assert_array_equal(order // 15 - 7, led_dy)
    np.testing.assert_array_equal(order % 15 - 7, led_dx)


def test_led_array_offset_and_rotation_in_closed_form():
    grid = led_array(3, 4e-3)
    assert grid[4].tolist() == [0, 0] and grid[5].tolist() == [0, 4e-3]  # raster: row by row, (y, x)
    shifted = led_array(3, 4e-3, center_offset=(1e-3, -2e-3))
    np.testing.assert_allclose(shifted - grid, np.tile([1e-3, -2e-3], (9, 1)), atol=1e-15)
    quarter = led_array(3, 4e-3, rotation=90)
    # a quarter turn from x towards y: (y, x) -> (x, -y)
    np.testing.assert_allclose(quarter, np.stack([grid[:, 1], -grid[:, 0]], axis=1), atol=1e-15)
    turned = led_array(5, 1.0, rotation=17)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=1), np.linalg.norm(led_array(5, 1.0), axis=1))


def test_reference_object_ranges_and_images():
    obj = reference_object(32, amplitude_range=(0.2, 0.9), phase_range=(-1, 1), amplitude_image="moon",
                           phase_image="coins")
    assert np.abs(obj).min() == pytest.approx(0.2) and np.abs(obj).max() == pytest.approx(0.9)
    assert np.angle(obj).min() == pytest.approx(-1) and np.angle(obj).max() == pytest.approx(1)
    with pytest.raises(ValueError, match="unknown image 'dog'"):
        reference_object(8, amplitude_image="dog")


def test_object_from_image_files(tmp_path):
    from skimage.io import imsave

    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    imsave(tmp_path / "amplitude.png", ramp, check_contrast=False)
    np.save(tmp_path / "phase.npy", ramp.T.astype(np.float64))
    obj = object_from_files(32, amplitude_file=tmp_path / "amplitude.png", phase_file=tmp_path / "phase.npy",
                            amplitude_range=(0.5, 1.0), phase_range=(0.0, 1.0))
    np.testing.assert_allclose(np.abs(obj), rescale_image(ramp, 32, (0.5, 1.0)), atol=1e-12)
    np.testing.assert_allclose(np.angle(obj), rescale_image(ramp.T, 32, (0.0, 1.0)), atol=1e-12)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputFileError, match="broken.png: cannot be read as an image"):
        object_from_files(32, amplitude_file=tmp_path / "broken.png")
    np.save(tmp_path / "small.npy", np.ones((8, 8), np.complex64))
    with pytest.raises(InputFileError, match=r"expected a \(32, 32\) object"):
        object_from_files(32, complex_file=tmp_path / "small.npy")


def test_noise_statistics(small_acquisition, small_object):
    from ptycho_app.physics import fp_intensities

    clean = fp_intensities(small_object, small_acquisition)
    bright = small_acquisition.bright_field
    level = clean[bright].mean()
    noisy = add_noise(clean, small_acquisition, "poisson", photons=400, seed=1)
    # Poisson counts: mean = variance = intensity * gain, gain = photons / mean bright-field intensity
    gain = 400 / level
    z = (noisy[bright] - clean[bright]) * gain / np.sqrt(np.maximum(clean[bright] * gain, 1e-12))
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and z.std() == pytest.approx(1.0, abs=0.06)  # 4 sigma
    gaussian = add_noise(clean, small_acquisition, "gaussian", sigma=0.02, seed=2)
    assert np.std(gaussian - clean) == pytest.approx(0.02 * level, rel=0.03)
    np.testing.assert_array_equal(add_noise(clean, small_acquisition, "none"), clean.astype(np.float32))
    with pytest.raises(ValueError, match="noise must be one of"):
        add_noise(clean, small_acquisition, "speckle")
