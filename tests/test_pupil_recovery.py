"""Pupil recovery, Zernike fits and brightness calibration on simulated data with a known truth."""

import dataclasses

import numpy as np
import pytest
import torch

from ptycho_app.analysis import object_from_factors, relative_error
from ptycho_app.calibration.pupil import compose_frame_pupils, frame_model, phase_error_rms, pull_back
from ptycho_app.calibration.zernike import fit_zernike, noll_to_nm, pupil_radius, zernike, zernike_phase
from ptycho_app.lifting import LiftedFP
from ptycho_app.lifting.losses import make_loss
from ptycho_app.physics import band_limit, fp_intensities
from ptycho_app.simulation import add_noise, default_acquisition, reference_object
from ptycho_app.solvers import SolverOptions, iterate

from .conftest import random_factors


def test_noll_indices_and_orthonormality():
    """Noll's (n, m) table, and (1/pi) int_disc Z_i Z_j = delta_ij by exact quadrature."""
    assert [noll_to_nm(j) for j in range(1, 12)] == [(0, 0), (1, 1), (1, -1), (2, 0), (2, -2), (2, 2), (3, -1),
                                                       (3, 1), (3, -3), (3, 3), (4, 0)]
    nodes, weights = np.polynomial.legendre.leggauss(20)
    rho, w_rho = (nodes + 1) / 2, weights / 2  # on [0, 1]
    theta = np.arange(64) * 2 * np.pi / 64  # exact for trigonometric degree < 64
    r, t = np.meshgrid(rho, theta, indexing="ij")
    w = (w_rho * rho)[:, None] * (2 * np.pi / 64)
    Z = np.stack([zernike(j, r, t) for j in range(1, 22)])
    gram = np.einsum("iab,jab,ab->ij", Z, Z, w) / np.pi
    assert np.allclose(gram, np.eye(21), atol=1e-12)
    # closed forms: defocus sqrt(3)(2 rho^2 - 1), x-coma sqrt(8)(3 rho^3 - 2 rho) cos(theta)
    assert np.allclose(zernike(4, r, t), np.sqrt(3) * (2 * r**2 - 1))
    assert np.allclose(zernike(8, r, t), np.sqrt(8) * (3 * r**3 - 2 * r) * np.cos(t))


def test_zernike_fit_recovers_a_known_combination():
    """Phases beyond pi (wrapped in the pupil) are unwrapped and fitted exactly."""
    coefficients = np.array([0.0, 0.1, -0.2, 1.5, 0.5, -0.4, 0.3, 0.25, 0.1, 0.0, -0.2])
    M, radius = 64, 20.3
    pupil = np.exp(1j * zernike_phase(coefficients, M, radius)) * (zernike_phase([1.0], M, radius) > 0)
    fitted = fit_zernike(pupil, radius, 15)
    assert np.allclose(fitted[1:11], coefficients[1:11], atol=1e-9)
    assert np.allclose(fitted[11:], 0, atol=1e-9)


def test_composition_adjoint_matches_autograd():
    """pull_back is the adjoint of compose_frame_pupils (brightness and the exact sub-pixel model),
    and the model pupil composed with the sub-pixel model is the exactly shifted pupil."""
    rng = np.random.default_rng(1)
    acquisition = dataclasses.replace(default_acquisition(frame_size=8, upsample=2, leds_per_side=3, defocus=3e-6),
                                      subpixel=True)
    L, M = acquisition.n_frames, acquisition.frame_size
    B = 2
    pupil = torch.as_tensor(rng.standard_normal((B, M, M)) + 1j * rng.standard_normal((B, M, M)))
    brightness = torch.as_tensor(rng.uniform(0.5, 1.5, (B, L)))
    delta = rng.uniform(-0.5, 0.5, (L, 2))
    model = frame_model(acquisition, delta)
    g = torch.as_tensor(rng.standard_normal((B, L, M, M)) + 1j * rng.standard_normal((B, L, M, M)))
    variable = pupil.clone().requires_grad_(True)
    # f = Re <g, compose(P)>: its gradient in conj(P) is pull_back(g) / 2 (torch gives twice that)
    value = torch.real(torch.vdot(g.flatten(), compose_frame_pupils(variable, brightness, model).flatten()))
    value.backward()
    assert torch.allclose(variable.grad, pull_back(g, brightness, model), atol=1e-12)
    assert torch.allclose(compose_frame_pupils(pupil, brightness, None)[1, 3], pupil[1] * brightness[1, 3].sqrt())
    common = torch.as_tensor(acquisition.pupil_function())[None]
    exact = torch.as_tensor(acquisition.pupil_function(shift=delta))
    assert torch.allclose(compose_frame_pupils(common, None, model)[0], exact, atol=1e-12)


def test_frame_sums_match_the_prediction():
    """record_frame_sums: per-frame sums of q, q^2, q b, sqrt(q b), b from the fused pass."""
    acquisition = default_acquisition(frame_size=8, upsample=2, leds_per_side=3)
    operator = LiftedFP(acquisition, dtype=torch.complex128)
    U, d = random_factors(operator.n, 2, 2, torch.complex128, seed=3)
    q = operator.measure(U, d)
    b = q * torch.as_tensor(np.random.default_rng(2).uniform(0.5, 1.5, q.shape))
    operator.record_frame_sums = True
    operator.evaluate(U, d, b, make_loss("amplitude").bind(b))
    sums = operator.frame_sums
    for key, value in (("q", q), ("qq", q * q), ("qb", q * b), ("rqb", (q * b).sqrt()), ("b", b)):
        assert torch.allclose(sums[key], value.sum(dim=(-2, -1)), rtol=1e-10), key


def aberrated_problem(photons=1000.0, brightness=None):
    """FP-256's optics at 128 x 128 (32 x 32 frames, 11 x 11 LEDs) with defocus 20 um, 0.5 rad
    astigmatism (Z6) and 0.3 rad coma (Z8)."""
    plain = default_acquisition(frame_size=32, upsample=4, leds_per_side=11)
    radius = pupil_radius(plain)
    coefficients = np.zeros(8)
    coefficients[5], coefficients[7] = 0.5, 0.3
    true = dataclasses.replace(plain, pupil=np.exp(1j * zernike_phase(coefficients, 32, radius)), defocus=20e-6)
    obj = reference_object(128)
    frames = fp_intensities(obj, true)
    if brightness is not None:
        frames = frames * brightness[:, None, None]
    if photons:
        frames = add_noise(frames, true, "poisson", photons=photons, seed=1)
    return plain, true, band_limit(obj, true), torch.as_tensor(frames, dtype=torch.float32)[None]


def solve(acquisition, b, **options):
    operator = LiftedFP(acquisition)
    state = None
    for state in iterate(operator, b, SolverOptions.preset("fast", rank=1, yield_every=400, **options)):  # noqa: B007
        pass
    objects = object_from_factors(state.U, state.physical_weights(), acquisition.grid_size).numpy()
    return state, objects


@pytest.mark.parametrize("method", ["bm", "udu"])
def test_aberrations_recovered(method):
    """Defocus + astigmatism + coma: phase error < 0.1 rad RMS inside the NA (piston, tip/tilt removed),
    object error within 1.5x of the true pupil's (Poisson noise, 1000 photons per bright-field pixel)."""
    plain, true, truth, b = aberrated_problem()
    _, given = solve(true, b, method=method, max_iters=400)
    state, recovered = solve(plain, b, method=method, max_iters=400, pupil="recover")
    error_given, error = relative_error(given[0], truth), relative_error(recovered[0], truth)
    calibration = state.calibration[0]
    support = np.abs(true.pupil_function()) > 0
    phase_error = phase_error_rms(calibration.pupil, true.pupil_function(), support)
    assert phase_error < 0.1
    assert error < 1.5 * error_given
    _, fixed = solve(plain, b, method=method, max_iters=400)
    assert relative_error(fixed[0], truth) > 5 * error  # the ideal pupil is far off
    expected = fit_zernike(true.pupil_function(), pupil_radius(plain), 15)
    assert np.allclose(calibration.zernike[3:8], expected[3:8], atol=0.02)  # defocus, astigmatism, coma
    assert calibration.attrs == {"pupil_mode": "recover", "calibrate": "none"}


@pytest.mark.parametrize("method,subpixel", [("bm", False), ("udu", False), ("bm", True)])
def test_brightness_recovered(method, subpixel):
    """+-20% per-frame brightness recovered to 2% (mean over bright-field frames 1), also on the exact
    sub-pixel model (the brightness multiplies each frame's shifted model pupil)."""
    acquisition = dataclasses.replace(default_acquisition(frame_size=16, upsample=4, leds_per_side=7),
                                      subpixel=subpixel)
    brightness = np.random.default_rng(5).uniform(0.8, 1.2, acquisition.n_frames)
    brightness /= brightness[acquisition.bright_field].mean()
    obj = reference_object(64)
    b = torch.as_tensor(fp_intensities(obj, acquisition) * brightness[:, None, None], dtype=torch.float32)[None]
    state, recovered = solve(acquisition, b, method=method, max_iters=400, calibrate="brightness",
                             calibration_delay=50)
    estimate = state.calibration[0].brightness
    assert np.abs(estimate / brightness - 1).max() < 0.02
    assert state.calibration[0].pupil is None and state.calibration[0].attrs["calibrate"] == "brightness"
    _, plain = solve(acquisition, b, method=method, max_iters=400)
    truth = band_limit(obj, acquisition)
    assert relative_error(recovered[0], truth) < relative_error(plain[0], truth) / 2


def test_batched_calibration_equals_one_by_one():
    """Each problem has its own pupil and brightness: a batch of two equals the two alone."""
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=5)
    rng = np.random.default_rng(7)
    pupils = [np.exp(1j * zernike_phase(rng.uniform(-0.3, 0.3, 8), 8, pupil_radius(acquisition))) for _ in range(2)]
    frames = []
    for k, pupil in enumerate(pupils):
        acq = dataclasses.replace(acquisition, pupil=pupil)
        obj = reference_object(32) if k == 0 else reference_object(32).T * 2  # two different objects
        frames.append(fp_intensities(obj, acq) * rng.uniform(0.8, 1.2, (acquisition.n_frames, 1, 1)))
    b = torch.as_tensor(np.stack(frames))
    options = SolverOptions.preset("fast", method="udu", rank=2, max_iters=60, yield_every=30, pupil="recover",
                                   calibrate="brightness", calibration_delay=10, seed=(3, 4))
    batched = list(iterate(LiftedFP(acquisition, dtype=torch.complex128), b, options))
    for k in range(2):
        alone = list(iterate(LiftedFP(acquisition, dtype=torch.complex128), b[k:k + 1],
                             dataclasses.replace(options, seed=options.seed[k])))
        for s_batch, s_alone in zip(batched, alone, strict=True):
            assert torch.allclose(s_batch.U[k], s_alone.U[0], rtol=1e-9, atol=1e-12)
            one, other = s_batch.calibration[k], s_alone.calibration[0]
            assert np.allclose(one.pupil, other.pupil, rtol=1e-9, atol=1e-12)
            assert np.allclose(one.brightness, other.brightness, rtol=1e-9)



def test_relative_gauge_fix_equals_unwrapping():
    """fix_gauges with the previous (gauge-fixed) pupil as reference fits the plane of the phase change
    without unwrapping: the same pupil, tilt and scale as unwrapping the new pupil's phase."""
    from ptycho_app.calibration.pupil import fix_gauges

    acquisition = default_acquisition(frame_size=16, upsample=4, leds_per_side=5)
    radius = pupil_radius(acquisition)
    support = torch.as_tensor(np.abs(acquisition.pupil_function()) > 0)
    rng = np.random.default_rng(21)
    # aberrations with a wrapped phase, gauges fixed by unwrapping
    start = torch.as_tensor(np.stack([np.exp(1j * zernike_phase(rng.uniform(-0.6, 0.6, 10), 16, radius))
                                      for _ in range(2)]))
    norm = torch.linalg.vector_norm((start * support).flatten(1), dim=1)
    previous, _, _ = fix_gauges(start, support, norm)
    # a small step: amplitude and phase changes, with tip/tilt and piston
    y, x = np.meshgrid(np.arange(16) - 8, np.arange(16) - 8, indexing="ij")
    change = np.stack([np.exp(1j * (0.3 + 0.05 * y - 0.08 * x + zernike_phase(rng.uniform(-0.3, 0.3, 10), 16, radius)))
                       * rng.uniform(0.9, 1.1, (16, 16)) for _ in range(2)])
    stepped = previous * torch.as_tensor(change)
    expected = fix_gauges(stepped, support, norm)
    relative = fix_gauges(stepped, support, norm, reference=previous)
    for one, other in zip(relative, expected, strict=True):
        assert torch.allclose(one.to(other.device), other, rtol=1e-9, atol=1e-12)
