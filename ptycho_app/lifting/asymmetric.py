"""Asymmetric Gaussian matrix sensing, through the symmetric embedding.

A rectangular ``X`` (``n1 x n2``) is measured by ``b_i = <A_i, X> / sqrt(m)`` (``A_i`` standard
Gaussian, ``<A, X> = Re tr(A^* X)``).  With ``W = [U; V]`` (``(n1 + n2) x r``) the Hermitian
``W D W^*`` has ``U D V^*`` as its off-diagonal block, and

    ``<A_i, U D V^*> = <S_i, W D W^*>``,  ``S_i = [[0, A_i / 2], [A_i^* / 2, 0]]``,

so this is a :class:`~ptycho_app.lifting.base.LiftedOperator` of size ``n = n1 + n2`` and the one
driver runs on it unchanged: BM's step on ``W`` is gradient descent on ``U`` and ``V``
(``grad_U = G_x V``, ``grad_V = G_x^* U``, ``G_x = sum_i w_i A_i / sqrt(m)``), UDU's is the same
with ``D``.  The methods ``uv`` and ``udv`` (:mod:`ptycho_app.solvers.methods`) read the split
from :attr:`AsymmetricSensing.blocks`.  ``A`` is stored as ``(m, n1, n2)``; no ``(n1 + n2)^2``
matrix is formed.
"""

from __future__ import annotations

import math

import torch

from .base import LiftedOperator


class AsymmetricSensing(LiftedOperator):
    """Gaussian sensing of an ``n1 x n2`` matrix ``X = U diag(d) V^*`` given as ``W = [U; V]``.

    Parameters
    ----------
    matrices : (m, n1, n2) real or complex tensor
        Measurement matrices ``A_i`` (scaled by ``1 / sqrt(m)`` here).
    device : str or torch.device

    Attributes
    ----------
    blocks, shape : (int, int)
        ``(n1, n2)``: the rows of ``W`` that are ``U``, then ``V``.
    """

    def __init__(self, matrices: torch.Tensor, device="cpu"):
        matrices = torch.as_tensor(matrices)
        if matrices.dim() != 3:
            raise ValueError(f"measurement matrices must have shape (m, n1, n2), got {tuple(matrices.shape)}")
        m, n1, n2 = matrices.shape
        self.blocks = self.shape = (n1, n2)
        self.n = n1 + n2
        self.measurement_shape = (m,)
        self.is_complex = matrices.is_complex()
        self.dtype = matrices.dtype
        self.device = torch.device(device)
        self.matrices = (matrices / math.sqrt(m)).to(self.device)

    @classmethod
    def random(cls, n1, n2, m, dtype=torch.float64, seed=0, device="cpu"):
        """``m`` standard Gaussian ``n1 x n2`` matrices, reproducible from ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        return cls(torch.randn(m, n1, n2, dtype=dtype, generator=generator), device=device)

    def split(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(U (B, n1, r), V (B, n2, r))`` from ``W`` (B, n1 + n2, r)."""
        n1 = self.blocks[0]
        return W[:, :n1], W[:, n1:]

    def measure_matrix(self, X: torch.Tensor) -> torch.Tensor:
        """(B, m) real: ``<A_i, X> / sqrt(m)`` for explicit ``X`` (B, n1, n2)."""
        flat = self.matrices.reshape(self.matrices.shape[0], -1)
        return (X.reshape(X.shape[0], -1) @ flat.conj().T).real

    def measure(self, U, d):
        """(B, m) real: ``A(U_block diag(d) V_block^*)`` for ``U = W`` (B, n1 + n2, r), ``d`` (B, r)."""
        left, right = self.split(U)
        X = (left * d[:, None, :].to(left.dtype)) @ right.mH
        return self.measure_matrix(X)

    def gradient_matrix(self, w: torch.Tensor) -> torch.Tensor:
        """(B, n1, n2): ``G_x = sum_i w_i A_i / sqrt(m)`` for ``w`` (B, m) real."""
        m, n1, n2 = self.matrices.shape
        return (w.to(self.dtype) @ self.matrices.reshape(m, -1)).reshape(-1, n1, n2)

    def adjoint_apply(self, w, V):
        """(B, n1 + n2, k): ``sum_i w_i S_i V = [G_x V_bottom / 2; G_x^* V_top / 2]``."""
        G = self.gradient_matrix(w)
        top, bottom = self.split(V)
        return torch.cat([G @ bottom, G.mH @ top], dim=1) / 2

    def apply_dense(self, X):
        """``A(X)``: an ``(n1 + n2)``-square Hermitian ``X`` is read through its off-diagonal block
        (``<S_i, X>``); an ``(n1, n2)`` matrix is measured directly."""
        n1, n2 = self.blocks
        if tuple(X.shape[-2:]) == (n1, n2):
            return self.measure_matrix(X)
        block = X[:, :n1, n1:]
        return (self.measure_matrix(block) + self.measure_matrix(X[:, n1:, :n1].mH)) / 2

    def embedded_matrices(self) -> torch.Tensor:
        """(m, n1 + n2, n1 + n2): the dense ``S_i`` (tests and small problems only)."""
        m, n1, n2 = self.matrices.shape
        S = torch.zeros(m, self.n, self.n, dtype=self.dtype, device=self.device)
        S[:, :n1, n1:] = self.matrices / 2
        S[:, n1:, :n1] = self.matrices.mH / 2
        return S
