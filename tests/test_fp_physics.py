"""FP forward model against closed forms from fp-conventions.md."""

import numpy as np
import pytest
import torch

from ptycho_app.physics import (
    Acquisition,
    AcquisitionError,
    FPMeasurement,
    band_limit,
    direction_sines_from_leds,
    fp_intensities,
    led_grid,
    synthetic_aperture,
)


def test_constant_object_gives_central_frame_of_amplitude_squared(small_acquisition):
    """o = a everywhere: the on-axis frame is |a|^2 at every pixel; dark-field frames are 0."""
    a = 0.7 * np.exp(0.4j)
    N = small_acquisition.grid_size
    frames = fp_intensities(np.full((N, N), a), small_acquisition)
    centre = np.flatnonzero((small_acquisition.window_shifts == 0).all(axis=1))
    assert len(centre) == 1
    np.testing.assert_allclose(frames[centre[0]], abs(a) ** 2, rtol=1e-6)
    # Every window contains the DC pixel inside its pupil only for bright-field frames
    # (shift <= pupil radius); the others see nothing of a constant object.
    radius_px = small_acquisition.na / (small_acquisition.wavelength * small_acquisition.frequency_step)
    shifts = np.hypot(*small_acquisition.window_shifts.T)
    sees_dc = shifts <= radius_px
    np.testing.assert_allclose(frames[sees_dc], abs(a) ** 2, rtol=1e-6)
    assert np.abs(frames[~sees_dc]).max() < 1e-10


def test_spectral_delta_lands_in_predicted_frames(small_acquisition):
    """A single spectrum pixel (k_r, k_c) is seen by exactly the frames whose pupil, centred at
    N//2 + round(s / (lambda dk)), covers it, as a uniform frame of value (M/N)^4 / M^4 * ..."""
    acq = small_acquisition
    M, N = acq.frame_size, acq.grid_size
    k = np.array([N // 2 + 3, N // 2 - 2])
    spectrum = np.zeros((N, N), complex)
    spectrum[tuple(k)] = 1.0
    obj = np.fft.ifft2(np.fft.ifftshift(spectrum))
    frames = fp_intensities(obj.astype(np.complex128), acq)
    # predicted: the pixel sits at window offset k - centre; inside the pupil disk?
    offset = k[None, :] - acq.window_centers
    f = offset * acq.frequency_step
    inside = (np.abs(offset) <= M // 2 - (M % 2 == 0)).all(axis=1) & (
        (f**2).sum(axis=1) <= (acq.na / acq.wavelength) ** 2)
    assert 0 < inside.sum() < acq.n_frames
    # value: S entry 1 -> psi = (M/N)^2 * ifft2(delta) = (M/N)^2 / M^2 in modulus, everywhere
    expected = ((M / N) ** 2 / M**2) ** 2
    np.testing.assert_allclose(frames[inside], expected, rtol=1e-9)
    assert np.abs(frames[~inside]).max() < 1e-20


def test_bright_dark_field_split_matches_na():
    """Bright-field frames are those with sqrt(s_x^2 + s_y^2) < NA, counted in closed form."""
    positions = led_grid(9, 4e-3)
    acq = Acquisition(wavelength=532e-9, na=0.09, magnification=4, camera_pixel=6.5e-6,
                      frame_size=16, upsample=4, led_positions=positions, led_distance=80e-3)
    radius = np.hypot(positions[:, 0], positions[:, 1])
    sines = radius / np.sqrt(radius**2 + 0.08**2)
    np.testing.assert_array_equal(acq.bright_field, sines < 0.09)
    # NA 0.09 at 80 mm: radius < 0.09 * 80 / sqrt(1 - 0.09^2) = 7.23 mm -> the centre LED,
    # 4 at 4 mm and 4 at 5.66 mm (diagonals); the next ring (8 mm) is dark-field: 9 LEDs
    assert acq.bright_field.sum() == 9
    # The total energy of a bright-field frame of a weak object is close to |a|^2 M^2,
    # of a dark-field frame far below it.
    N = acq.grid_size
    obj = np.full((N, N), 1.0 + 0j) + 0.05 * np.random.default_rng(0).standard_normal((N, N))
    frames = fp_intensities(obj, acq)
    means = frames.mean(axis=(1, 2))
    assert means[acq.bright_field].min() > 0.9
    assert means[~acq.bright_field].max() < 0.05


def test_direction_sines_formula():
    sines = direction_sines_from_leds(np.array([[3e-3, -4e-3]]), 12e-3)
    np.testing.assert_allclose(sines, [[3 / 13, -4 / 13]])


def test_explicit_direction_sines_equal_led_geometry(small_acquisition):
    acq = small_acquisition
    explicit = Acquisition(wavelength=acq.wavelength, na=acq.na, magnification=acq.magnification,
                           camera_pixel=acq.camera_pixel, frame_size=acq.frame_size,
                           upsample=acq.upsample, direction_sines=acq.direction_sines)
    np.testing.assert_array_equal(explicit.window_centers, acq.window_centers)


def test_pupil_is_centred_on_pixel_m_over_2(small_acquisition):
    """The pupil disk is symmetric about pixel M//2 (not (M-1)/2)."""
    pupil = np.abs(small_acquisition.pupil_function())
    c = small_acquisition.frame_size // 2
    inner = pupil[1:, 1:]  # drop the first row/col so the grid is symmetric about c
    np.testing.assert_array_equal(inner, inner[::-1, ::-1])
    assert pupil[c, c] == 1 and pupil[0, 0] == 0


def test_defocus_is_pure_phase_and_aberration_multiplies(small_acquisition):
    acq = small_acquisition
    kwargs = dict(wavelength=acq.wavelength, na=acq.na, magnification=acq.magnification,
                  camera_pixel=acq.camera_pixel, frame_size=acq.frame_size, upsample=acq.upsample,
                  direction_sines=acq.direction_sines)
    focused = Acquisition(**kwargs).pupil_function()
    defocused = Acquisition(**kwargs, defocus=20e-6).pupil_function()
    np.testing.assert_allclose(np.abs(defocused), np.abs(focused))
    M = acq.frame_size
    f = (np.arange(M) - M // 2) * acq.frequency_step
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    expected = np.exp(2j * np.pi * 20e-6 * np.sqrt(1 / acq.wavelength**2 - f2)) * focused
    np.testing.assert_allclose(defocused, expected, atol=1e-12)


def test_numpy_and_torch_paths_agree(small_acquisition, small_object):
    frames_np = fp_intensities(small_object, small_acquisition)
    frames_t = fp_intensities(torch.as_tensor(small_object), small_acquisition)
    np.testing.assert_allclose(frames_np, frames_t.numpy(), rtol=1e-12, atol=1e-14)


def test_whole_number_floats_are_accepted_as_sizes(small_acquisition):
    acq = Acquisition(wavelength=532e-9, na=0.08, magnification=4, camera_pixel=6.5e-6,
                      frame_size=16.0, upsample=np.int64(2), led_positions=led_grid(3, 4e-3),
                      led_distance=80e-3)
    assert type(acq.frame_size) is int and type(acq.upsample) is int
    FPMeasurement(acq)  # builds its index tensors from them


def test_band_limit_is_a_projection_inside_the_aperture(small_acquisition, small_object):
    once = band_limit(small_object, small_acquisition)
    np.testing.assert_allclose(band_limit(once, small_acquisition), once, atol=1e-12)
    # frames only see the band-limited part
    np.testing.assert_allclose(fp_intensities(once, small_acquisition),
                               fp_intensities(small_object, small_acquisition), rtol=1e-9, atol=1e-12)
    covered = synthetic_aperture(small_acquisition)
    assert 0 < covered.mean() < 1


@pytest.mark.parametrize("bad,match", [
    (dict(wavelength=0.0), "wavelength"),
    (dict(wavelength=-1e-9), "wavelength"),
    (dict(na=1.0), "na"),
    (dict(na=0.0), "na"),
    (dict(frame_size=1), "frame_size"),
    (dict(upsample=1, led_positions=led_grid(15, 6e-3)), "increase upsample"),
    (dict(led_positions=np.zeros((3, 3))), r"shape \(L, 2\)"),
    (dict(frame_size=16.5), "frame_size"),
    (dict(wavelength="532e-9"), "wavelength"),
    (dict(led_distance=0.0), "led_distance"),
])
def test_non_physical_acquisitions_are_rejected(bad, match):
    kwargs = dict(wavelength=532e-9, na=0.08, magnification=4, camera_pixel=6.5e-6, frame_size=16,
                  upsample=2, led_positions=led_grid(3, 4e-3), led_distance=80e-3)
    kwargs.update(bad)
    with pytest.raises(AcquisitionError, match=match):
        Acquisition(**kwargs)


def test_simulator_matches_stored_reference_frames():
    """Frames from a naive, independent NumPy implementation of the conventions (data/)."""
    from pathlib import Path

    ref = np.load(Path(__file__).resolve().parents[1] / "data" / "reference_fp.npz")
    acq = Acquisition(wavelength=float(ref["wavelength"]), na=float(ref["na"]),
                      magnification=float(ref["magnification"]), camera_pixel=float(ref["camera_pixel"]),
                      frame_size=int(ref["frame_size"]), upsample=int(ref["upsample"]),
                      led_positions=ref["led_positions"], led_distance=float(ref["led_distance"]),
                      defocus=float(ref["defocus"]))
    np.testing.assert_allclose(acq.direction_sines, ref["direction_sines"], rtol=1e-14)
    frames = fp_intensities(ref["object"], acq)
    np.testing.assert_allclose(frames, ref["frames"], rtol=1e-10, atol=1e-14)


def test_synthetic_aperture_is_the_union_of_pupil_discs():
    """One on-axis LED: the aperture is the pupil disc (|f| <= NA / lambda) around the centre;
    two LEDs: the union of two discs, counted pixel by pixel in closed form."""
    kwargs = dict(wavelength=532e-9, na=0.08, magnification=4, camera_pixel=6.5e-6, frame_size=16,
                  upsample=4)
    one = Acquisition(direction_sines=np.array([[0.0, 0.0]]), **kwargs)
    N, dk = one.grid_size, one.frequency_step
    k = (np.arange(N) - N // 2) * dk
    radius2 = (one.na / one.wavelength) ** 2
    disc = k[:, None] ** 2 + k[None, :] ** 2 <= radius2
    np.testing.assert_array_equal(synthetic_aperture(one), disc)
    two = Acquisition(direction_sines=np.array([[0.0, 0.0], [0.0, 0.1]]), **kwargs)
    shift = two.window_shifts[1, 1] * dk
    second = k[:, None] ** 2 + (k[None, :] - shift) ** 2 <= radius2
    np.testing.assert_array_equal(synthetic_aperture(two), disc | second)
