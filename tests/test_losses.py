"""The data-fit losses and the operators' fused pass against independent truths: torch.autograd,
the closed forms of the losses module, the generic (unbuffered) lifted code and dense matrices."""

import numpy as np
import pytest
import torch

from ptycho_app.lifting import LiftedFP
from ptycho_app.lifting.losses import EPS_RELATIVE, LOSSES, make_loss
from ptycho_app.lifting.quadratic import QuadraticLifted
from ptycho_app.physics import synthetic_aperture

from .conftest import random_factors
from .test_operators import OPERATORS, tiny_acquisition

LOSS_NAMES = ["intensity", "amplitude", "poisson"]


def _positive(shape, seed, low=0.0):
    """Uniform draws in [low, low + 1) (float64)."""
    return low + torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _closed_form(name, q, b, eps):
    """The losses module's table written out in NumPy (float64), per problem (summed over the rest)."""
    q, b = q.numpy(), b.numpy()
    eps = np.asarray(eps).reshape(-1, *[1] * (q.ndim - 1))
    if name == "intensity":
        terms = 0.5 * (q - b) ** 2
    elif name == "amplitude":
        terms = 0.5 * (np.sqrt(q + eps) - np.sqrt(b)) ** 2
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_term = np.where(b > 0, b * np.log((q + eps) / np.where(b > 0, b, 1.0)), 0.0)
        terms = q - b - log_term
    return terms.reshape(q.shape[0], -1).sum(1)


@pytest.fixture(scope="module")
def fp_operator():
    return LiftedFP(tiny_acquisition(), dtype=torch.complex128)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- 1. the losses themselves ------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_weight_is_the_autograd_derivative_of_its_value(name):
    """weight = d(sum value)/dq, elementwise, as torch.autograd computes it (b >= 0 with some exact
    zeros, q > 0), for a batch of two problems of different brightness."""
    b = _positive((2, 5, 7), seed=1) * torch.tensor([1.0, 300.0], dtype=torch.float64)[:, None, None]
    b[0, 0, :3] = 0.0  # dark pixels: the Poisson and amplitude terms must still differentiate cleanly
    q = (_positive((2, 5, 7), seed=2, low=0.05) * torch.tensor([1.0, 300.0], dtype=torch.float64)[:, None, None])
    loss = make_loss(name).bind(b)
    q.requires_grad_(True)
    value, weight = loss.value_and_weight(q, b)
    assert value.shape == (2,) and weight.shape == q.shape
    value.sum().backward()
    torch.testing.assert_close(weight.detach(), q.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_value_matches_the_closed_form(name):
    """value equals the table of losses.py written out in NumPy, with eps = EPS_RELATIVE x each
    problem's mean measurement (amplitude and Poisson) and the weights likewise."""
    b = _positive((3, 4, 6), seed=3) * torch.tensor([1.0, 1e-3, 1e5], dtype=torch.float64)[:, None, None]
    b[1, 2, 2] = 0.0
    q = _positive((3, 4, 6), seed=4, low=0.01) * torch.tensor([1.0, 1e-3, 1e5], dtype=torch.float64)[:, None, None]
    loss = make_loss(name).bind(b)
    value, weight = loss.value_and_weight(q, b)
    eps = EPS_RELATIVE * b.flatten(1).mean(1)
    expected = _closed_form(name, q, b, eps)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12, atol=0)
    e = eps.numpy()[:, None, None]
    qn, bn = q.numpy(), b.numpy()
    expected_weight = {"intensity": qn - bn,
                       "amplitude": 0.5 * (1 - np.sqrt(bn / (qn + e))),
                       "poisson": 1 - bn / (qn + e)}[name]
    np.testing.assert_allclose(weight.numpy(), expected_weight, rtol=1e-12, atol=1e-15)
    if name != "intensity":
        np.testing.assert_allclose(loss.eps.flatten().numpy(), eps.numpy(), rtol=1e-15)


@pytest.mark.parametrize("name", ["amplitude", "poisson"])
def test_amplitude_and_poisson_vanish_at_the_data(name):
    """At q = b the amplitude and Poisson losses are 0 up to eps: |value| <= eps per pixel (Poisson:
    -sum b log(1 + eps/b) ~ -m eps; amplitude: ~ sum eps^2 / 8b), far below a 10% misfit's value,
    and their weights are ~0 (|w| <= eps / b_min)."""
    b = _positive((2, 8, 8), seed=5, low=0.1) * 40.0
    loss = make_loss(name).bind(b)
    value, weight = loss.value_and_weight(b.clone(), b)
    eps = float(loss.eps.max())
    assert bool((value.abs() <= eps * 64).all()), (value, eps)
    assert float(weight.abs().max()) <= eps / (0.1 * 40.0)
    misfit, _ = loss.value_and_weight(1.1 * b, b)
    assert bool((value.abs() < 1e-2 * misfit).all()), (value, misfit)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_scales_as_its_scale_power(name):
    """Multiplying q and b by tau multiplies the (re-bound) loss by tau ** scale_power (eps scales
    with the data), which is how the solver converts normalized losses to physical units."""
    b = _positive((2, 3, 5), seed=6)
    q = _positive((2, 3, 5), seed=7, low=0.02)
    tau = 37.5
    loss_cls = LOSSES[name]
    value, _ = loss_cls().bind(b).value_and_weight(q, b)
    scaled, _ = loss_cls().bind(tau * b).value_and_weight(tau * q, tau * b)
    torch.testing.assert_close(scaled, tau**loss_cls.scale_power * value, rtol=1e-12, atol=0)


def test_unbound_eps_loss_and_unknown_name_raise():
    """An amplitude/Poisson loss used before bind() says so; make_loss names the allowed losses."""
    q = b = torch.ones(1, 3, dtype=torch.float64)
    for name in ("amplitude", "poisson"):
        with pytest.raises(RuntimeError, match="bind"):
            make_loss(name).value_and_weight(q, b)
    with pytest.raises(ValueError, match="loss must be one of intensity, amplitude, poisson"):
        make_loss("l1")


# ---- 2. gradients of the fused pass ------------------------------------------------------------

def _autograd_gradients(operator, U, d, b, loss):
    """torch.autograd's gradients of loss(operator.measure(U, d)) in U and d."""
    U = U.clone().requires_grad_(True)
    d = d.clone().requires_grad_(True)
    value, _ = loss.value_and_weight(operator.measure(U, d), b)
    value.sum().backward()
    return value.detach(), U.grad, d.grad


def _fused_gradients(operator, U, d, b, loss):
    value, residual_sq, GU = operator.evaluate(U, d, b, loss)
    grad_U = 2 * GU * d[:, None, :]
    grad_d = (U.conj() * GU).sum(dim=1).real
    return value, residual_sq, grad_U, grad_d


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fp_evaluate_gradients_match_autograd(fp_operator, name):
    """For LiftedFP and each loss, grad_U = 2 G U diag(d) and grad_d = Re diag(U^* G U) from
    evaluate() equal torch.autograd's gradients of the loss of measure(U, d) (complex U: U.grad,
    i.e. dL/dRe U + i dL/dIm U), and evaluate's value and ||q - b||^2 are the loss and residual."""
    operator = fp_operator
    U, d = random_factors(operator.n, 3, 2, operator.dtype, seed=21)
    q0 = operator.measure(U, d)
    # data near the prediction (as in a solve), b >= 0 with a few exact zeros
    b = (q0 * _positive(q0.shape, seed=22, low=0.5)).detach()
    b[0, 0, 0, :2] = 0.0
    loss = make_loss(name).bind(b)
    value_ad, grad_U_ad, grad_d_ad = _autograd_gradients(operator, U, d, b, loss)
    value, residual_sq, grad_U, grad_d = _fused_gradients(operator, U, d, b, loss)
    torch.testing.assert_close(value, value_ad, rtol=1e-12, atol=0)
    torch.testing.assert_close(residual_sq, (q0 - b).flatten(1).square().sum(1), rtol=1e-12, atol=0)
    assert (grad_U - grad_U_ad).abs().max() <= 1e-10 * grad_U_ad.abs().max()
    assert (grad_d - grad_d_ad).abs().max() <= 1e-10 * grad_d_ad.abs().max()


SMALL_OPERATORS = [(name, operator) for name, operator in OPERATORS if not name.startswith("fp")]


@pytest.mark.parametrize("label,operator", SMALL_OPERATORS, ids=[name for name, _ in SMALL_OPERATORS])
def test_completion_and_sensing_evaluate_gradients_match_autograd(label, operator):
    """MatrixCompletion and GaussianSensing (generic evaluate) with the intensity loss: value =
    1/2 ||q - b||^2, residual_sq = ||q - b||^2 and the U, d gradients equal autograd's."""
    U, d = random_factors(operator.n, 3, 2, operator.dtype, seed=31)
    b = torch.randn(2, *operator.measurement_shape, dtype=operator.real_dtype,
                    generator=torch.Generator().manual_seed(32))
    loss = make_loss("intensity").bind(b)
    value_ad, grad_U_ad, grad_d_ad = _autograd_gradients(operator, U, d, b, loss)
    value, residual_sq, grad_U, grad_d = _fused_gradients(operator, U, d, b, loss)
    torch.testing.assert_close(value, value_ad, rtol=1e-12, atol=0)
    torch.testing.assert_close(residual_sq, 2 * value_ad, rtol=1e-12, atol=0)
    assert (grad_U - grad_U_ad).abs().max() <= 1e-10 * grad_U_ad.abs().max()
    assert (grad_d - grad_d_ad).abs().max() <= 1e-10 * grad_d_ad.abs().max()


# ---- 3. the buffered hot path ------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fp_buffered_evaluate_equals_the_generic_one(monkeypatch, name):
    """LiftedFP.evaluate (pupil support only, persistent buffers, automatic frame blocks, BM's unit
    weights skipped) equals QuadraticLifted.evaluate (plain forward/adjoint per block) for every
    loss, call after call (buffers reused), with non-unit and unit d."""
    import ptycho_app.lifting.fp as fp

    operator = LiftedFP(tiny_acquisition(), dtype=torch.complex128)
    monkeypatch.setattr(fp, "BLOCK_BYTES", 2 * 3 * 8 * 8 * 16 * 4)  # 4 frames per block
    assert [blk.stop - blk.start for blk in operator.work_blocks(2, 3)] == [4, 4, 1]
    U, d = random_factors(operator.n, 3, 2, operator.dtype, seed=5)
    b = 50 * _positive((2, *operator.measurement_shape), seed=6)
    loss = make_loss(name).bind(b)
    for weights in (d, torch.ones_like(d), d, 2.5 * d):
        value, residual_sq, GU = operator.evaluate(U, weights, b, loss)
        expected_value, expected_sq, expected_GU = QuadraticLifted.evaluate(operator, U, weights, b, loss)
        torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=0)
        torch.testing.assert_close(residual_sq, expected_sq, rtol=1e-12, atol=0)
        assert (GU - expected_GU).abs().max() <= 1e-12 * expected_GU.abs().max()


# ---- 4. the spectral preconditioner and the support --------------------------------------------

def test_fp_jacobi_diagonal_is_the_dense_adjoint_of_ones(fp_operator):
    """A^*(1) = sum_l B_l^H B_l as a dense matrix (adjoint_dense) is diagonal, its diagonal is
    jacobi_diagonal(), and that equals sum_l |P_l(k)|^2 (M/N)^4 / M^2 accumulated in NumPy over
    the windows; support() is physics.synthetic_aperture(acquisition) raveled."""
    operator = fp_operator
    acq = operator.acquisition
    dense = operator.adjoint_dense(torch.ones(1, *operator.measurement_shape, dtype=torch.float64))[0]
    diagonal = torch.diagonal(dense)
    off = dense - torch.diag(diagonal)
    scale = float(diagonal.real.max())
    assert float(off.abs().max()) <= 1e-13 * scale
    assert float(diagonal.imag.abs().max()) <= 1e-13 * scale
    jacobi = operator.jacobi_diagonal()
    assert jacobi.dtype == torch.float64 and jacobi.shape == (operator.n,)
    torch.testing.assert_close(jacobi, diagonal.real, rtol=1e-12, atol=1e-13 * scale)

    M, N = acq.frame_size, acq.grid_size
    m = np.zeros((N, N))
    pupil_power = np.abs(acq.pupil_function()) ** 2 * (M / N) ** 4 / M**2
    for row, col in acq.window_centers - M // 2:
        m[row:row + M, col:col + M] += pupil_power
    np.testing.assert_allclose(jacobi.numpy(), m.ravel(), rtol=1e-12, atol=1e-15)

    support = operator.support()
    assert support.dtype == torch.bool
    np.testing.assert_array_equal(support.numpy(), synthetic_aperture(acq).ravel())
    assert 0 < int(support.sum()) < operator.n  # the tiny acquisition leaves part of the spectrum dark
