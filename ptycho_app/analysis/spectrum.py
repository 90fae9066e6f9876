"""Eigen-decomposition of ``X = U diag(d) U^*`` from its factors, and the FP object from it.

Cost ``O(n r^2)``: a thin QR ``U = Q R``, then the ``r x r`` Hermitian eigenproblem of
``R diag(d) R^*``.  ``X`` is never formed.
"""

from __future__ import annotations

import torch

from ..physics import spectrum_to_object


def factor_eigh(U: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of ``X = U diag(d) U^*``.

    Parameters
    ----------
    U : (B, n, r)
    d : (B, r) real, >= 0

    Returns
    -------
    eigenvalues : (B, k) real, k = min(n, r)
        Decreasing. ``rank(X) <= #{d > 0}`` holds exactly, so eigenvalues past that count are
        set to exactly 0 (UDU's clipped ``d`` entries give exact zeros, not round-off).
    eigenvectors : (B, n, k)
        Orthonormal columns, matching ``eigenvalues``.
    """
    Q, R = torch.linalg.qr(U)
    core = R * d[:, None, :].to(R.dtype) @ R.conj().transpose(-1, -2)
    core = (core + core.conj().transpose(-1, -2)) / 2
    values, vectors = torch.linalg.eigh(core)
    values, vectors = values.flip(-1), vectors.flip(-1)
    active = (d > 0).sum(dim=1, keepdim=True)
    positions = torch.arange(values.shape[-1], device=values.device)[None, :]
    values = torch.where(positions < active, values, torch.zeros_like(values))
    return values, Q @ vectors


def leading_vector(U: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Top eigenvector of ``X`` scaled by ``sqrt(lambda_1)``: the recovered ``x``.

    Parameters
    ----------
    U : (B, n, r)
    d : (B, r) real

    Returns
    -------
    (B, n)
    """
    return leading_from_eigh(*factor_eigh(U, d))


def leading_from_eigh(values: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``sqrt(lambda_1)`` times the top eigenvector, from :func:`factor_eigh`'s output: (B, n)."""
    return vectors[..., 0] * values[:, :1].clamp_min(0).sqrt().to(vectors.dtype)


def object_from_factors(U: torch.Tensor, d: torch.Tensor, grid_size: int) -> torch.Tensor:
    """FP object from the lifted spectrum's factors.

    Parameters
    ----------
    U : (B, n, r) complex, ``n = grid_size**2``
    d : (B, r) real (physical weights)
    grid_size : int
        ``N``.

    Returns
    -------
    (B, N, N) complex
        ``ifft2(ifftshift(S))`` with ``S`` the scaled top eigenvector, up to a global phase.
    """
    spectrum = leading_vector(U, d).reshape(-1, grid_size, grid_size)
    return spectrum_to_object(spectrum)


def factor_svd(U: torch.Tensor, d: torch.Tensor, n1: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Singular values and vectors of ``X = U_top diag(d) U_bottom^*`` from ``W = [U_top; U_bottom]``.

    Cost ``O((n1 + n2) r^2)``: thin QRs ``U_top D^1/2 = Q_1 R_1``, ``U_bottom D^1/2 = Q_2 R_2``, then the
    SVD of the small ``R_1 R_2^*``.  ``X`` is never formed.

    Parameters
    ----------
    U : (B, n1 + n2, r)
        ``W``, the stacked factors (:mod:`ptycho_app.lifting.asymmetric`).
    d : (B, r) real, >= 0
    n1 : int
        Rows of the top block (``X`` is ``n1 x n2``).

    Returns
    -------
    singular_values : (B, k) real, k = min(n1, n2, r)
        Decreasing; those past ``#{d > 0}`` are exactly 0.
    left : (B, n1, k)
    right : (B, n2, k)
        Orthonormal columns: ``X = left diag(singular_values) right^*``.
    """
    root = d.clamp_min(0).sqrt()[:, None, :].to(U.dtype)
    Q1, R1 = torch.linalg.qr(U[:, :n1] * root)
    Q2, R2 = torch.linalg.qr(U[:, n1:] * root)
    left, values, right_h = torch.linalg.svd(R1 @ R2.mH, full_matrices=False)
    k = min(values.shape[-1], U.shape[1] - n1, n1, U.shape[-1])
    values, left, right = values[:, :k], left[:, :, :k], right_h.mH[:, :, :k]
    active = (d > 0).sum(dim=1, keepdim=True)
    positions = torch.arange(k, device=values.device)[None, :]
    values = torch.where(positions < active, values, torch.zeros_like(values))
    return values, Q1 @ left, Q2 @ right
