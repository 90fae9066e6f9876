"""Adjointness of every linear piece and the lifted gradient against autograd."""

import numpy as np
import pytest
import torch

from ptycho_app.lifting import GaussianSensing, LiftedFP, MatrixCompletion
from ptycho_app.physics import Acquisition, FPMeasurement, led_grid

from .conftest import random_factors


def tiny_acquisition():
    """8x8 frames, 2x upsampling (n = 256), 3x3 LEDs, with a defocus and a complex aberration."""
    M = 8
    aberration = np.exp(1j * np.linspace(0, 1, M * M).reshape(M, M))
    return Acquisition(wavelength=532e-9, na=0.08, magnification=4.0, camera_pixel=6.5e-6,
                       frame_size=M, upsample=2, led_positions=led_grid(3, 4e-3),
                       led_distance=80e-3, pupil=aberration, defocus=5e-6)


def lifted_operators():
    """(name, operator) for every lifted operator kind, in double precision."""
    acq = tiny_acquisition()
    return [
        ("fp", LiftedFP(acq, dtype=torch.complex128)),
        ("fp-blocks", LiftedFP(acq, dtype=torch.complex128, frames_per_block=4)),
        ("completion-real", MatrixCompletion.random(12, 60, rng=0, dtype=torch.float64)),
        ("completion-complex", MatrixCompletion.random(12, 60, rng=0, is_complex=True,
                                                       dtype=torch.complex128)),
        ("sensing-real", GaussianSensing.random(10, 40, seed=0)),
        ("sensing-complex", GaussianSensing.random(10, 40, is_complex=True, seed=0)),
    ]


OPERATORS = lifted_operators()
IDS = [name for name, _ in OPERATORS]


def inner(a, b):
    """Real inner product ``Re <a, b>`` over all entries."""
    return float((a.conj() * b).real.sum())


@pytest.mark.parametrize("frames_per_block", [None, 3])
def test_fp_measurement_dot_test(frames_per_block):
    """<B x, y> = <x, B^H y> for the FP measurement operator, block by block and at once."""
    B = FPMeasurement(tiny_acquisition(), dtype=torch.complex128, frames_per_block=frames_per_block)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, B.n, dtype=torch.complex128, generator=g)
    for block in B.blocks + [slice(None)]:
        y = torch.randn(2, *B.forward(x, block).shape[1:], dtype=torch.complex128, generator=g)
        lhs = complex((B.forward(x, block).conj() * y).sum())
        rhs = complex((x.conj() * B.adjoint(y, block)).sum())
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("name,operator", OPERATORS, ids=IDS)
def test_lifted_dot_test(name, operator):
    """<A(X), w> = <X, A^*(w)> for random Hermitian X and real w."""
    g = torch.Generator().manual_seed(5)
    batch = 2
    Z = torch.randn(batch, operator.n, operator.n, dtype=operator.dtype, generator=g)
    X = Z + Z.conj().transpose(-1, -2)
    w = torch.randn(batch, *operator.measurement_shape, dtype=operator.real_dtype, generator=g)
    lhs = inner(operator.apply_dense(X), w)
    rhs = inner(X, operator.adjoint_dense(w))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    adjoint = operator.adjoint_dense(w)
    assert torch.allclose(adjoint, adjoint.conj().transpose(-1, -2), atol=1e-12)


@pytest.mark.parametrize("name,operator", OPERATORS, ids=IDS)
def test_measure_matches_dense_matrix(name, operator):
    """measure(U, d) equals A applied to the explicit X = U diag(d) U^*."""
    U, d = random_factors(operator.n, 3, 2, operator.dtype, seed=7)
    X = (U * d[:, None, :].to(U.dtype)) @ U.conj().transpose(-1, -2)
    assert torch.allclose(operator.measure(U, d), operator.apply_dense(X), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,operator", OPERATORS, ids=IDS)
def test_lifted_gradient_matches_autograd(name, operator):
    """grad_U = 2 G U D and grad_D = diag(U^* G U) equal torch.autograd's gradients of
    f(U, d) = 1/2 ||A(U diag(d) U^*) - b||^2."""
    U, d = random_factors(operator.n, 3, 2, operator.dtype, seed=11)
    g = torch.Generator().manual_seed(12)
    b = torch.randn(2, *operator.measurement_shape, dtype=operator.real_dtype, generator=g)
    U.requires_grad_(True)
    d.requires_grad_(True)
    loss = 0.5 * (operator.measure(U, d) - b).pow(2).sum()
    loss.backward()
    with torch.no_grad():
        residual, GU = operator.residual_and_product(U, d, b)
        grad_U = 2 * GU * d[:, None, :]
        grad_d = (U.conj() * GU).sum(dim=1).real
        assert torch.allclose(residual, operator.measure(U, d) - b, rtol=1e-12, atol=1e-12)
        assert torch.allclose(GU, operator.adjoint_apply(residual, U), rtol=1e-12, atol=1e-12)
    scale_U = U.grad.abs().max()
    assert (grad_U - U.grad).abs().max() <= 1e-10 * scale_U
    assert (grad_d - d.grad).abs().max() <= 1e-10 * d.grad.abs().max()


def test_fp_buffered_hot_path_equals_the_generic_one(monkeypatch):
    """LiftedFP's buffered evaluate (pupil support only, persistent buffers, automatic frame blocks,
    BM's unit weights skipped) with the intensity loss equals QuadraticLifted's plain
    residual_and_product, call after call: value = 1/2 ||r||^2, residual_sq = ||r||^2, G U = A^*(r) U.
    (Every loss against QuadraticLifted.evaluate: tests/test_losses.py.)"""
    import ptycho_app.lifting.fp as fp
    from ptycho_app.lifting.losses import make_loss
    from ptycho_app.lifting.quadratic import QuadraticLifted

    operator = LiftedFP(tiny_acquisition(), dtype=torch.complex128)
    monkeypatch.setattr(fp, "BLOCK_BYTES", 2 * 3 * 8 * 8 * 16 * 4)  # 4 frames per block
    assert [b.stop - b.start for b in operator.work_blocks(2, 3)] == [4, 4, 1]
    U, d = random_factors(operator.n, 3, 2, operator.dtype, seed=5)
    b = torch.rand(2, *operator.measurement_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    loss = make_loss("intensity").bind(b)
    for weights in (d, torch.ones_like(d), d):
        value, residual_sq, GU = operator.evaluate(U, weights, b, loss)
        expected_residual, expected_GU = QuadraticLifted.residual_and_product(operator, U, weights, b)
        expected_sq = expected_residual.flatten(1).square().sum(1)
        assert torch.allclose(residual_sq, expected_sq, rtol=1e-12, atol=0)
        assert torch.allclose(value, 0.5 * expected_sq, rtol=1e-12, atol=0)
        assert torch.allclose(GU, expected_GU, rtol=1e-12, atol=1e-13 * expected_GU.abs().max())
