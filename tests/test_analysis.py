"""Extraction from factors and the metrics, against dense linear algebra and closed forms."""

import numpy as np
import pytest
import torch

from ptycho_app.analysis import (
    amplitude_psnr,
    amplitude_ssim,
    factor_eigh,
    leading_vector,
    numerical_rank,
    object_from_factors,
    relative_error,
)
from ptycho_app.physics import object_to_spectrum

from .conftest import random_factors


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_factor_eigh_matches_dense_eigh(dtype):
    U, d = random_factors(40, 5, 3, dtype, seed=1)
    values, vectors = factor_eigh(U, d)
    X = (U * d[:, None, :].to(dtype)) @ U.conj().transpose(-1, -2)
    dense = torch.linalg.eigvalsh(X).flip(-1)[:, :5]
    torch.testing.assert_close(values, dense, rtol=1e-10, atol=1e-10)
    # eigenvectors: X v = lambda v, orthonormal
    torch.testing.assert_close(X @ vectors, vectors * values[:, None, :].to(dtype), rtol=1e-9, atol=1e-9)
    gram = vectors.conj().transpose(-1, -2) @ vectors
    torch.testing.assert_close(gram, torch.eye(5, dtype=dtype).expand(3, 5, 5), rtol=0, atol=1e-12)


def test_zero_weights_give_exact_zero_eigenvalues():
    U, d = random_factors(30, 4, 2, torch.complex128, seed=2)
    d[:, 2:] = 0
    values, _ = factor_eigh(U, d)
    assert torch.all(values[:, 2:] == 0)
    assert torch.all(values[:, :2] > 0)


def test_leading_vector_recovers_rank_one_factor_up_to_phase():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 64, dtype=torch.complex128, generator=g)
    # X = x x^* written with three columns that all point along x, weights summing to 1
    U = torch.stack([x * 0.5, x * 1j, -x * 0.3], dim=-1)
    d = torch.tensor([[1.0, 0.5, 2.0]], dtype=torch.float64) / (0.25 + 0.5 + 0.18)
    estimate = leading_vector(U, d)
    assert relative_error(estimate.numpy(), x.numpy()) < 1e-12


def test_object_from_factors_inverts_the_spectrum_convention():
    rng = np.random.default_rng(0)
    obj = rng.standard_normal((16, 16)) + 1j * rng.standard_normal((16, 16))
    spectrum = object_to_spectrum(torch.as_tensor(obj)).reshape(1, -1, 1)
    recovered = object_from_factors(spectrum, torch.ones(1, 1, dtype=torch.float64), 16)[0]
    assert relative_error(recovered.numpy(), obj) < 1e-12


def test_relative_error_ignores_global_phase_only():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8))
    assert relative_error(truth * np.exp(2.1j), truth) < 1e-14
    # closed form: for e = 1.1 * truth the error is 0.1; a phase does not change it
    assert relative_error(1.1 * truth * np.exp(-0.7j), truth) == pytest.approx(0.1, rel=1e-12)


def test_numerical_rank_counts_relative_to_the_largest():
    assert numerical_rank(np.array([2.0, 1e-3, 1e-7, 0.0]), tol=1e-6) == 2
    assert numerical_rank(np.array([2.0, 1e-3, 1e-7, 0.0]), tol=1e-2) == 1
    assert numerical_rank(np.zeros(3)) == 0


def test_amplitude_metrics_match_closed_forms():
    truth = np.linspace(0, 1, 64 * 64).reshape(64, 64) * np.exp(0.3j)
    assert amplitude_ssim(truth * np.exp(1j), truth) == pytest.approx(1.0)
    # PSNR of a constant offset delta with data range 1: -10 log10(delta^2)
    assert amplitude_psnr(np.abs(truth) + 0.01, truth) == pytest.approx(40.0, rel=1e-9)
