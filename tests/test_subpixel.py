"""Sub-pixel illumination: bilinear pupil shifts and the exactly shifted pupil of the acquisition."""

import dataclasses

import numpy as np
import torch

from ptycho_app.analysis import object_from_factors, relative_error
from ptycho_app.calibration.subpixel import (
    bilinear_shift,
    bilinear_shift_adjoint,
    bilinear_shift_derivative,
    tilted_intensities,
)
from ptycho_app.lifting import LiftedFP
from ptycho_app.physics import FPMeasurement, band_limit, fp_intensities
from ptycho_app.simulation import default_acquisition, reference_object
from ptycho_app.solvers import SolverOptions, iterate


def random_pupil(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def with_shifts(acquisition, shifts, **changes):
    """The acquisition lit so that its windows sit ``shifts`` (pixels, (L, 2)) from the centre."""
    step = acquisition.wavelength * acquisition.frequency_step
    return dataclasses.replace(acquisition, led_positions=None, led_distance=None,
                               direction_sines=np.asarray(shifts, float) * step, **changes)


def test_bilinear_shift_closed_forms():
    """delta = 0: the pupil itself; whole shifts move it (zero fill); half a pixel averages neighbours."""
    P = random_pupil((8, 8), 1)
    out = bilinear_shift(P, np.array([[0.0, 0.0], [1.0, -2.0], [0.5, 0.0], [0.25, -0.75]])).numpy()
    assert np.array_equal(out[0], P)
    moved = np.zeros_like(P)
    moved[1:, :-2] = P[:-1, 2:]  # P(k - (1, -2))
    assert np.allclose(out[1], moved, atol=1e-15)
    assert np.allclose(out[2][1:], (P[1:] + P[:-1]) / 2, atol=1e-15)
    expected = (0.25 * (0.25 * P[:-1, :-1] + 0.75 * P[:-1, 1:]) + 0.75 * (0.25 * P[1:, :-1] + 0.75 * P[1:, 1:]))
    assert np.allclose(out[3][1:, :-1], expected, atol=1e-15)  # k - delta = (k_y - 1/4, k_x + 3/4)


def test_bilinear_shift_adjoint_dot_test_and_batch():
    P = random_pupil((3, 8, 8), 2)
    V = random_pupil((3, 5, 8, 8), 3)
    delta = np.random.default_rng(4).uniform(-0.5, 0.5, (3, 5, 2))
    forward = bilinear_shift(P, delta)
    assert forward.shape == (3, 5, 8, 8)
    left = np.vdot(forward.numpy(), V)
    right = np.vdot(P, bilinear_shift_adjoint(V, delta).numpy())
    assert abs(left - right) < 1e-12 * abs(left)
    assert torch.allclose(forward[1], bilinear_shift(P[1], delta[1]))  # batched = one by one


def test_bilinear_shift_derivative_matches_finite_differences():
    P = random_pupil((8, 8), 5)
    delta = np.array([[0.3, -0.2], [-0.41, 0.17]])
    derivative = bilinear_shift_derivative(P, delta).numpy()  # (L, 2, M, M)
    h = 1e-6
    for axis in range(2):
        step = np.zeros_like(delta)
        step[:, axis] = h
        fd = (bilinear_shift(P, delta + step).numpy() - bilinear_shift(P, delta - step).numpy()) / (2 * h)
        assert np.allclose(derivative[:, axis], fd, atol=1e-8)


def test_tilted_truth_equals_a_tiled_finer_grid():
    """The truth for non-integer windows, against an independent simulation: the object tiled 4 x 4
    (a 4x larger field of view, so a 4x finer spectrum grid on which 4 t_l are whole shifts), the
    ordinary integer-window model there, and the central frame cut out."""
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3)
    shifts = np.array([[0.5, 2.5], [-3.5, 1.0], [1.25, -0.75]])
    obj = reference_object(32)
    truth = tilted_intensities(obj, with_shifts(acquisition, shifts))
    fine = fp_intensities(np.tile(obj, (4, 4)), with_shifts(acquisition, shifts, frame_size=32))
    assert np.allclose(fine[:, :8, :8], truth, rtol=1e-10, atol=1e-12 * truth.max())
    assert np.allclose(fine[:, 8:16, 16:24], truth, rtol=1e-10, atol=1e-12 * truth.max())


def test_subpixel_model_equals_the_truth_and_today_at_whole_shifts():
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3)
    obj = reference_object(32)
    shifts = np.array([[0.0, 0.0], [3.0, -2.0], [-4.0, 1.0]])
    whole = with_shifts(acquisition, shifts)
    today = fp_intensities(obj, whole)
    assert np.allclose(fp_intensities(obj, dataclasses.replace(whole, subpixel=True)), today, rtol=1e-10, atol=0)
    assert np.allclose(tilted_intensities(obj, whole), today, rtol=1e-10, atol=1e-14)
    # non-integer windows: the model P(k - delta_l) is the truth; rounding and the opposite sign are not
    off = with_shifts(acquisition, shifts + np.array([[0.3, -0.45], [-0.2, 0.4], [0.49, 0.1]]))
    truth = tilted_intensities(obj, off)
    model = fp_intensities(obj, dataclasses.replace(off, subpixel=True))
    assert np.allclose(model, truth, rtol=1e-10, atol=1e-14)
    spectrum = torch.fft.fftshift(torch.fft.fft2(torch.as_tensor(obj)))
    flipped = FPMeasurement(off, dtype=torch.complex128, pupils=off.pupil_function(-off.window_remainders))
    wrong_sign = flipped.forward(spectrum.reshape(-1)).abs().square().numpy()
    for other in (fp_intensities(obj, off), wrong_sign):
        assert np.linalg.norm(other - truth) > 0.05 * np.linalg.norm(truth)


def test_subpixel_reconstruction_beats_rounding():
    """Noise-free data with non-integer windows (the tilted truth): sub-pixel windows reconstruct to
    <= 1% error, rounded windows do not (about 1e-6 and 45% on this 8 x 8-frame problem)."""
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3, led_distance=70e-3)
    assert np.abs(acquisition.window_remainders).max() > 0.35
    obj = reference_object(32)
    b = torch.as_tensor(tilted_intensities(obj, acquisition))[None]
    subpixel = dataclasses.replace(acquisition, subpixel=True)
    truth = band_limit(obj, subpixel)
    errors = {}
    for name, a in (("rounded", acquisition), ("subpixel", subpixel)):
        options = SolverOptions.preset("fast", method="bm", rank=1, max_iters=300, yield_every=300)
        for state in iterate(LiftedFP(a, dtype=torch.complex128), b, options):  # noqa: B007 (the last)
            pass
        obj_hat = object_from_factors(state.U, state.physical_weights(), 32)[0].numpy()
        errors[name] = relative_error(obj_hat, truth)
    assert errors["subpixel"] <= 0.01
    assert errors["rounded"] > 0.1
