"""The papers' validation problems: a random PSD ground truth and its lifted measurements."""

from __future__ import annotations

import numpy as np
import torch

from .lifting import GaussianSensing, MatrixCompletion


def random_psd(n, eigenvalues, rng=0, is_complex=False) -> np.ndarray:
    """``Q diag(eigenvalues) Q^*`` with ``Q`` (n, k) random orthonormal.

    Returns
    -------
    (n, n) float64 or complex128
    """
    rng = np.random.default_rng(rng)
    shape = (n, len(eigenvalues))
    gaussian = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if is_complex else 0)
    basis, _ = np.linalg.qr(gaussian)
    return (basis * np.asarray(eigenvalues, dtype=np.float64)) @ basis.conj().T


def completion_problem(n=100, eigenvalues=(1.0, 2.0, 3.0), m=900, seed=0, is_complex=False,
                       dtype=None):
    """Hou-Sra-Yurtsever's matrix completion: ``m`` uniformly drawn entries of a PSD matrix.

    Returns
    -------
    operator : MatrixCompletion
    b : (1, *measurement_shape) real tensor
    truth : (n, n) ndarray
    """
    dtype = dtype or (torch.complex128 if is_complex else torch.float64)
    truth = random_psd(n, eigenvalues, rng=seed, is_complex=is_complex)
    operator = MatrixCompletion.random(n, m, rng=seed + 1, is_complex=is_complex, dtype=dtype)
    b = operator.apply_dense(torch.as_tensor(truth, dtype=dtype)[None])
    return operator, b, truth


def sensing_problem(n=20, eigenvalues=(1.0, 2.0), m=200, seed=0, is_complex=False):
    """Symmetric Gaussian matrix sensing of a random PSD matrix (double precision).

    Returns
    -------
    operator : GaussianSensing
    b : (1, m) real tensor
    truth : (n, n) ndarray
    """
    truth = random_psd(n, eigenvalues, rng=seed, is_complex=is_complex)
    operator = GaussianSensing.random(n, m, is_complex=is_complex, seed=seed + 1)
    b = operator.apply_dense(torch.as_tensor(truth, dtype=operator.dtype)[None])
    return operator, b, truth


def asymmetric_problem(n1=40, n2=30, singular_values=(1.0, 2.0), m=700, seed=0):
    """Asymmetric Gaussian sensing of a random rank-k ``n1 x n2`` matrix (real, double precision).

    Returns
    -------
    operator : AsymmetricSensing
    b : (1, m) real tensor
    truth : (n1, n2) ndarray
        ``P diag(singular_values) Q^T`` with ``P``, ``Q`` random orthonormal.
    """
    from .lifting.asymmetric import AsymmetricSensing

    rng = np.random.default_rng(seed)
    k = len(singular_values)
    left, _ = np.linalg.qr(rng.standard_normal((n1, k)))
    right, _ = np.linalg.qr(rng.standard_normal((n2, k)))
    truth = (left * np.asarray(singular_values, dtype=np.float64)) @ right.T
    operator = AsymmetricSensing.random(n1, n2, m, seed=seed + 1)
    b = operator.measure_matrix(torch.as_tensor(truth)[None])
    return operator, b, truth
