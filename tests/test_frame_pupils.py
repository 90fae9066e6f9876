"""Per-frame and per-problem transfer functions in the FP operators (the calibration's seam)."""

import dataclasses

import numpy as np
import torch

from ptycho_app.lifting import LiftedFP
from ptycho_app.lifting.losses import make_loss
from ptycho_app.physics import Acquisition, FPMeasurement, led_grid

from .conftest import random_factors


def tiny_acquisition(pupil=None):
    """8x8 frames, 2x upsampling (n = 256), 3x3 LEDs."""
    return Acquisition(wavelength=532e-9, na=0.08, magnification=4.0, camera_pixel=6.5e-6, frame_size=8,
                       upsample=2, led_positions=led_grid(3, 4e-3), led_distance=80e-3, pupil=pupil)


def aberration(seed, M=8):
    rng = np.random.default_rng(seed)
    return np.exp(1j * rng.uniform(-1, 1, (M, M))) * rng.uniform(0.5, 1.5, (M, M))


def test_per_problem_pupils_equal_separate_acquisitions():
    """A batch with per-problem pupils measures and fits as each problem's own acquisition does."""
    plain = tiny_acquisition()
    pupils = [aberration(1), aberration(2)]
    U, d = random_factors(LiftedFP(plain, dtype=torch.complex128).n, 3, 2, torch.complex128, seed=4)
    batched = LiftedFP(plain, dtype=torch.complex128)
    batched.set_pupils(np.stack([np.broadcast_to(plain.pupil_function() * p, (plain.n_frames, 8, 8))
                                 for p in pupils]))
    b = batched.measure(U, d).detach() * 1.1 + 0.01
    loss = make_loss("amplitude").bind(b)
    value, residual_sq, product = batched.evaluate(U, d, b, loss)
    for k, pupil in enumerate(pupils):
        alone = LiftedFP(tiny_acquisition(pupil), dtype=torch.complex128)
        expected = alone.measure(U[k:k + 1], d[k:k + 1])
        assert torch.allclose(batched.measure(U, d)[k], expected[0], rtol=1e-10, atol=1e-12)
        v, r, p = alone.evaluate(U[k:k + 1], d[k:k + 1], b[k:k + 1], loss.bind(b[k:k + 1]))
        assert torch.allclose(value[k], v[0], rtol=1e-10)
        assert torch.allclose(residual_sq[k], r[0], rtol=1e-10)
        assert torch.allclose(product[k], p[0], rtol=1e-10, atol=1e-12)


def test_per_frame_pupils_scale_intensities():
    """sqrt(c_l) on frame l's pupil multiplies its intensities by c_l (brightness folds into the pupil)."""
    acquisition = tiny_acquisition(aberration(3))
    c = np.linspace(0.6, 1.4, acquisition.n_frames)
    base = LiftedFP(acquisition, dtype=torch.complex128)
    scaled = LiftedFP(acquisition, dtype=torch.complex128,
                      pupils=np.sqrt(c)[:, None, None] * acquisition.pupil_function())
    U, d = random_factors(base.n, 2, 1, torch.complex128, seed=5)
    expected = base.measure(U, d) * torch.as_tensor(c)[None, :, None, None]
    assert torch.allclose(scaled.measure(U, d), expected, rtol=1e-10, atol=1e-14)
    # the fused pass agrees with the linear operator's measure and adjoint
    b = expected.detach() + 0.05
    value, _, product = scaled.evaluate(U, d, b, make_loss("intensity").bind(b))
    residual = scaled.measure(U, d) - b
    assert torch.allclose(value, 0.5 * residual.square().sum(dim=(1, 2, 3)), rtol=1e-10)
    assert torch.allclose(product, scaled.adjoint_apply(residual, U), rtol=1e-10, atol=1e-12)


def test_pupils_off_the_support_are_ignored():
    """set_pupils keeps the support the operator was built with; ones everywhere = the plain disc."""
    acquisition = tiny_acquisition()
    operator = LiftedFP(acquisition, dtype=torch.complex128)
    U, d = random_factors(operator.n, 1, 1, torch.complex128, seed=6)
    expected = operator.measure(U, d)
    operator.set_pupils(np.ones((8, 8), complex))
    assert torch.allclose(operator.measure(U, d), expected, rtol=1e-12)
    assert torch.equal(FPMeasurement(dataclasses.replace(acquisition)).window_index, operator.linear.window_index)


def test_pupil_gradient_matches_autograd():
    """evaluate's pupil_gradient is d loss / d conj(P_l) (torch's complex gradient is twice it)."""
    acquisition = tiny_acquisition()
    operator = LiftedFP(acquisition, dtype=torch.complex128)
    U, d = random_factors(operator.n, 2, 2, torch.complex128, seed=7)
    rng = np.random.default_rng(8)
    L = acquisition.n_frames
    pupils = torch.as_tensor(acquisition.pupil_function() * np.exp(1j * rng.uniform(-1, 1, (2, L, 8, 8))))
    operator.set_pupils(pupils)
    b = operator.measure(U, d).detach() * torch.as_tensor(rng.uniform(0.5, 1.5, (2, L, 8, 8)))
    loss = make_loss("amplitude").bind(b)
    operator.record_pupil_terms = True
    value, _, _ = operator.evaluate(U, d, b, loss)
    gradient = operator.support_to_window(operator.pupil_gradient)  # (B, L, M, M)
    energy = operator.support_to_window(operator.pupil_energy)
    operator.record_pupil_terms = False

    variable = pupils.clone().requires_grad_(True)
    check = LiftedFP(acquisition, dtype=torch.complex128)
    check.set_pupils(variable)
    values, _ = loss.value_and_weight(check.measure(U, d), b)
    values.sum().backward()
    assert torch.allclose(values.detach(), value, rtol=1e-10)
    support = torch.as_tensor(np.abs(acquisition.pupil_function()) > 0)
    assert torch.allclose(2 * gradient, variable.grad * support, rtol=1e-8, atol=1e-12)
    # the energy behind each pupil pixel: sum_r d_r |window_l(u_r)|^2 / N^4
    N = acquisition.grid_size
    top, left = acquisition.window_centers[0] - 4
    expected = sum(d[0, r] * U[0, :, r].reshape(N, N)[top:top + 8, left:left + 8].abs().square()
                   for r in range(2)) / N**4
    assert torch.allclose(energy[0, 0], expected * support, rtol=1e-10)


def test_jacobi_diagonal_with_per_problem_pupils():
    """The preconditioner's diagonal with per-problem pupils is the mean of the problems' diagonals."""
    acquisition = tiny_acquisition()
    first, second = aberration(11), aberration(12)
    batched = LiftedFP(acquisition, dtype=torch.complex128)
    L = acquisition.n_frames
    batched.set_pupils(np.stack([np.broadcast_to(acquisition.pupil_function() * p, (L, 8, 8))
                                 for p in (first, second)]))
    alone = [LiftedFP(tiny_acquisition(p), dtype=torch.complex128).jacobi_diagonal() for p in (first, second)]
    assert torch.allclose(batched.jacobi_diagonal(), (alone[0] + alone[1]) / 2, rtol=1e-12)


def test_support_pupils_reach_every_pass():
    """set_support_pupils (the calibration's hot path) = set_pupils of the same pupils on the window
    grid, in the fused pass and in measure / adjoint_apply / jacobi_diagonal (built when needed)."""
    acquisition = tiny_acquisition()
    operator = LiftedFP(acquisition, dtype=torch.complex128)
    U, d = random_factors(operator.n, 2, 2, torch.complex128, seed=13)
    K, L = len(operator._support), acquisition.n_frames
    rng = np.random.default_rng(14)
    values = torch.as_tensor(rng.normal(size=(2, L, K)) + 1j * rng.normal(size=(2, L, K)))
    windows = operator.support_to_window(values)
    assert torch.equal(windows.flatten(-2)[..., operator.window_positions()], values)
    full = LiftedFP(acquisition, dtype=torch.complex128)
    full.set_pupils(windows)
    operator.set_support_pupils(values)
    b = full.measure(U, d).detach() + 0.05
    loss = make_loss("intensity").bind(b)
    value, _, product = operator.evaluate(U, d, b, loss)
    expected_value, _, expected_product = full.evaluate(U, d, b, loss)
    assert torch.allclose(value, expected_value, rtol=1e-12)
    assert torch.allclose(product, expected_product, rtol=1e-12, atol=1e-14)
    residual = operator.measure(U, d) - b
    assert torch.allclose(value, 0.5 * residual.square().sum(dim=(1, 2, 3)), rtol=1e-10)
    assert torch.allclose(product, operator.adjoint_apply(residual, U), rtol=1e-10, atol=1e-12)
    assert torch.allclose(operator.jacobi_diagonal(), full.jacobi_diagonal(), rtol=1e-12)


def test_measure_agrees_with_evaluate_after_a_calibration_update():
    """After CalibrationStep.update (pupil and brightness on the support), measure() sees the pupils
    evaluate() uses, and they are compose_frame_pupils of the step's pupil and brightness."""
    from ptycho_app.calibration.pupil import compose_frame_pupils
    from ptycho_app.calibration.steps import CalibrationStep
    from ptycho_app.solvers import SolverOptions

    acquisition = dataclasses.replace(tiny_acquisition(aberration(15)), subpixel=True)
    operator = LiftedFP(acquisition, dtype=torch.complex128)
    U, d = random_factors(operator.n, 1, 2, torch.complex128, seed=16)
    b = operator.measure(U, d).detach() * 1.2 + 0.01
    options = SolverOptions.preset("fast", pupil="recover", calibrate="brightness", calibration_delay=0,
                                   loss="intensity")
    loss = make_loss("intensity").bind(b)
    step = CalibrationStep(operator, options)
    step.start(b, loss)
    for k in range(3):
        operator.evaluate(U, d, b, loss)
        step.update(k)
        value, _, _ = operator.evaluate(U, d, b, loss)
        residual = operator.measure(U, d) - b
        assert torch.allclose(value, 0.5 * residual.square().sum(dim=(1, 2, 3)), rtol=1e-10)
    check = LiftedFP(acquisition, dtype=torch.complex128)
    check.set_pupils(compose_frame_pupils(step.pupil, step.brightness, step.model))
    assert torch.allclose(check.measure(U, d), operator.measure(U, d), rtol=1e-10, atol=1e-14)
