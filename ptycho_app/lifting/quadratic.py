"""Lifted quadratic measurements ``A(X)_i = |b_i^* x|^2`` for a linear operator ``B``.

With ``X = U diag(d) U^*``: ``A(X) = sum_r d_r |B u_r|^2`` and ``A^*(w) V = B^H (w * B V)``.
FP is the case ``B`` = :class:`~ptycho_app.physics.FPMeasurement`; Gaussian phase retrieval
would be a dense ``B``.  Measurements are produced block by block (``B.blocks``) so memory
stays ``O(B * r * block)``.
"""

from __future__ import annotations

import torch

from .base import LiftedOperator, residual_norm_sq


class QuadraticLifted(LiftedOperator):
    """Lift of ``x -> |B x|^2`` for any linear ``B`` with ``forward``/``adjoint``/``blocks``.

    Parameters
    ----------
    linear : object
        Provides ``n``, ``measurement_shape`` (leading axis split by ``blocks``), ``blocks``
        (list of slices over that axis), ``forward(V (..., n), block) -> (..., *block_shape)``,
        ``adjoint(Y, block) -> (..., n)``, ``dtype`` and ``device``.
    """

    is_complex = True

    def __init__(self, linear):
        self.linear = linear
        self.n = linear.n
        self.measurement_shape = tuple(linear.measurement_shape)
        self.dtype = linear.dtype
        self.device = linear.device

    def _columns(self, U):
        # (B, n, r) -> (B, r, n): the linear operator acts on the last axis.
        return U.transpose(-1, -2)

    def measure(self, U, d):
        columns = self._columns(U)
        parts = []
        for block in self.linear.blocks:
            fields = self.linear.forward(columns, block)  # (B, r, Lb, ...)
            weights = d.reshape(*d.shape, *([1] * (fields.dim() - 2)))
            parts.append((weights * (fields.real**2 + fields.imag**2)).sum(dim=1))
        return torch.cat(parts, dim=1)

    def adjoint_apply(self, w, V):
        columns = self._columns(V)
        out = torch.zeros_like(columns)
        for block in self.linear.blocks:
            fields = self.linear.forward(columns, block)
            out += self.linear.adjoint(w[:, None, block] * fields, block)
        return out.transpose(-1, -2)

    def residual_and_product(self, U, d, b):
        columns = self._columns(U)
        product = torch.zeros_like(columns)
        residuals = []
        for block in self.linear.blocks:
            fields = self.linear.forward(columns, block)  # B U on this block, reused below
            weights = d.reshape(*d.shape, *([1] * (fields.dim() - 2)))
            residual = (weights * (fields.real**2 + fields.imag**2)).sum(dim=1) - b[:, block]
            product += self.linear.adjoint(residual[:, None] * fields, block)
            residuals.append(residual)
        return torch.cat(residuals, dim=1), product.transpose(-1, -2)

    def evaluate(self, U, d, b, loss, residual=True):
        columns = self._columns(U)
        product = torch.zeros_like(columns)
        value = torch.zeros(U.shape[0], dtype=b.dtype, device=b.device)
        residual_sq = torch.zeros_like(value) if residual or loss.weight_is_residual else None
        for block in self.linear.blocks:
            fields = self.linear.forward(columns, block)  # B U on this block, reused below
            weights = d.reshape(*d.shape, *([1] * (fields.dim() - 2)))
            q = (weights * (fields.real**2 + fields.imag**2)).sum(dim=1)
            block_value, weight = loss.value_and_weight(q, b[:, block], block)
            value += block_value
            if residual_sq is not None:
                residual_sq += residual_norm_sq(q, b[:, block], block_value, loss, True, block)
            product += self.linear.adjoint(weight[:, None] * fields, block)
        return value, residual_sq, product.transpose(-1, -2)
