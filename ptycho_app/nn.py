"""Factorized linear layers with SVD-based pruning: UDV (Hou, Sra, Yurtsever 2025) and plain UV.

:class:`UDVLinear` computes ``x -> V diag(w) U^T x (+ b)`` with ``U`` and ``V`` kept in Frobenius
balls of radius ``radius`` and ``w >= 0``: call :meth:`UDVLinear.project_` after every optimizer step
(projected gradient descent, as in the paper).  Units whose ``w`` reaches 0 are gone for good, so the
layer's matrix becomes truly low-rank; :meth:`UDVLinear.prune` then drops the units whose singular
value is below a threshold and returns a smaller :class:`UDVLinear` that computes the truncated SVD of
the matrix.  :class:`UVLinear` (``x -> V U^T x``, unconstrained) is the comparison, with the same
:meth:`singular_values` and :meth:`prune`.

Shapes: a batch ``x`` is ``(B, in_features)``, the output ``(B, out_features)``; ``U`` is
``(in_features, k)``, ``V`` is ``(out_features, k)``, ``w`` is ``(k,)``, ``k`` the number of units.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .analysis import factor_svd


def _factored_svd(U, w, V):
    """SVD of ``V diag(w) U^T`` from its factors in O((in + out) k^2), by the solvers' own
    :func:`ptycho_app.analysis.factor_svd` (the stacked factor ``[V; U]``, ``d = w``).

    Parameters
    ----------
    U : (in, k) real tensor
    w : (k,) real tensor, >= 0, or None for ``diag(w) = I``
    V : (out, k) real tensor

    Returns
    -------
    left : (out, s) real tensor
        Left singular vectors (orthonormal columns), ``s = min(in, out, k)``.
    sigma : (s,) real tensor
        Singular values, descending.
    right : (in, s) real tensor
        Right singular vectors.
    """
    weights = torch.ones(U.shape[1], dtype=U.dtype, device=U.device) if w is None else w
    sigma, left, right = factor_svd(torch.cat([V, U])[None], weights[None], V.shape[0])
    return left[0], sigma[0], right[0]


class _FactorizedLinear(nn.Module):
    """What :class:`UDVLinear` and :class:`UVLinear` share: parameters ``U (in, k)``, ``V (out, k)`` and
    optional ``bias``; subclasses give the diagonal (:meth:`_diagonal`) and how a smaller layer holds a
    truncated SVD (:meth:`_from_svd`)."""

    @property
    def units(self) -> int:
        """``k``, the number of units."""
        return self.U.shape[1]

    def _diagonal(self):
        """``w`` of ``V diag(w) U^T`` (None: the identity)."""
        return None

    def _from_svd(self, left, sigma, right):
        """A new layer of ``len(sigma)`` units computing ``left diag(sigma) right^T`` (bias not set)."""
        raise NotImplementedError

    @torch.no_grad()
    def singular_values(self):
        """Singular values of the layer's matrix, descending, ``(min(in, out, k),)``, from the factors in
        O((in + out) k^2) (QR of ``U`` and ``V``, then a small SVD)."""
        return _factored_svd(self.U, self._diagonal(), self.V)[1]

    @torch.no_grad()
    def truncate(self, rank):
        """A new layer of the same kind with ``rank`` units computing the rank-``rank`` truncated SVD of
        this layer's matrix (same bias)."""
        left, sigma, right = _factored_svd(self.U, self._diagonal(), self.V)
        rank = int(rank)
        if not 1 <= rank <= len(sigma):
            raise ValueError(f"rank must be in 1..{len(sigma)}, got {rank}")
        layer = self._from_svd(left[:, :rank], sigma[:rank], right[:, :rank])
        if self.bias is not None:
            layer.bias.copy_(self.bias)
        return layer.to(self.U.device)

    def prune(self, threshold):
        """Drop the units whose singular value is at most ``threshold``: a new layer of the kept rank
        (:meth:`truncate`; at least one unit is kept)."""
        return self.truncate(max(1, int((self.singular_values() > threshold).sum())))

    def numerical_rank(self, rtol=1e-6):
        """Number of singular values above ``rtol * sigma_1``."""
        sigma = self.singular_values()
        return int((sigma > rtol * sigma[0]).sum())


class UDVLinear(_FactorizedLinear):
    """``x -> V diag(w) U^T x (+ b)``: a linear layer of ``k`` units, ``U``, ``V`` in Frobenius balls, ``w >= 0``.

    Parameters
    ----------
    in_features, out_features : int
    units : int
        ``k``, the number of units (the inner dimension).
    bias : bool
        Whether to add a learned bias ``b`` (``(out_features,)``, starts at 0).
    radius : float
        Radius of the Frobenius balls of ``U`` and ``V`` (:meth:`project_`), each its own, as in the
        authors' layer.  (The solvers' ``udv`` method uses ``radius / sqrt 2`` per factor instead, so that
        the stacked ``[U; V]`` has UDU's scale; see ``ptycho_app.solvers.methods.UDV``.)
    xi : float or None
        Size of the start: ``U, V = xi * G / ||G||_F`` with ``G`` standard Gaussian (the authors'
        start) and ``w = 1``.  ``None``: ``xi = radius``, the start on the balls' spheres.
    generator : torch.Generator or None
        Random numbers of the start.

    Notes
    -----
    The start is the authors': ``U = xi G_u / ||G_u||_F``, ``V = xi G_v / ||G_v||_F``, ``w = 1``.  The
    scale of the layer's matrix lives in ``w`` (unbounded above), its directions in ``U`` and ``V``.
    """

    def __init__(self, in_features, out_features, units, bias=True, radius=1.0, xi=None, generator=None,
                 dtype=None):
        super().__init__()
        if min(in_features, out_features, units) < 1:
            raise ValueError(f"UDVLinear: sizes must be positive, got in={in_features}, out={out_features}, "
                             f"units={units}")
        if not radius > 0:
            raise ValueError(f"UDVLinear: radius must be positive, got {radius}")
        self.in_features, self.out_features, self.radius = in_features, out_features, float(radius)
        xi = self.radius if xi is None else float(xi)
        dtype = dtype or torch.get_default_dtype()
        G_u = torch.randn(in_features, units, generator=generator, dtype=dtype)
        G_v = torch.randn(out_features, units, generator=generator, dtype=dtype)
        self.U = nn.Parameter(xi * G_u / torch.linalg.norm(G_u))
        self.V = nn.Parameter(xi * G_v / torch.linalg.norm(G_v))
        self.w = nn.Parameter(torch.ones(units, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        """``(B, in_features) -> (B, out_features)``: ``((x U) * w) V^T + b``."""
        y = ((x @ self.U) * self.w) @ self.V.T
        return y + self.bias if self.bias is not None else y

    def weight(self):
        """The layer's matrix ``V diag(w) U^T``, ``(out_features, in_features)``."""
        return (self.V * self.w) @ self.U.T

    @torch.no_grad()
    def project_(self):
        """Projection onto the constraints, in place: ``U`` and ``V`` each scaled back into the
        Frobenius ball of radius ``radius`` (if outside), ``w`` clipped at 0."""
        for factor in (self.U, self.V):
            norm = torch.linalg.norm(factor)
            if norm > self.radius:
                factor.mul_(self.radius / norm)
        self.w.clamp_(min=0)
        return self

    def _diagonal(self):
        return self.w

    def _from_svd(self, left, sigma, right):
        """``U``, ``V`` the singular vectors scaled onto the balls' spheres (``radius / sqrt(rank)``
        each), ``w`` the singular values times ``rank / radius^2``."""
        scale = self.radius / math.sqrt(len(sigma))
        layer = UDVLinear(self.in_features, self.out_features, len(sigma), bias=self.bias is not None,
                          radius=self.radius, dtype=self.w.dtype)
        layer.U.copy_(right * scale)
        layer.V.copy_(left * scale)
        layer.w.copy_(sigma / scale**2)
        return layer


class UVLinear(_FactorizedLinear):
    """``x -> V U^T x (+ b)``: the unconstrained factorized layer of ``k`` units (the comparison).

    Parameters
    ----------
    in_features, out_features, units : int
    bias : bool
    xi : float or None
        ``None``: ``U``, ``V`` entries uniform in ``(-1/sqrt(in), 1/sqrt(in))`` and
        ``(-1/sqrt(k), 1/sqrt(k))`` (PyTorch's ``nn.Linear`` start, one per factor).  A number: the
        small start ``xi * G / ||G||_F``, as :class:`UDVLinear`.
    generator : torch.Generator or None
    """

    def __init__(self, in_features, out_features, units, bias=True, xi=None, generator=None, dtype=None):
        super().__init__()
        if min(in_features, out_features, units) < 1:
            raise ValueError(f"UVLinear: sizes must be positive, got in={in_features}, out={out_features}, "
                             f"units={units}")
        self.in_features, self.out_features = in_features, out_features
        dtype = dtype or torch.get_default_dtype()
        if xi is None:
            U = (2 * torch.rand(in_features, units, generator=generator, dtype=dtype) - 1) / math.sqrt(in_features)
            V = (2 * torch.rand(out_features, units, generator=generator, dtype=dtype) - 1) / math.sqrt(units)
        else:
            G_u = torch.randn(in_features, units, generator=generator, dtype=dtype)
            G_v = torch.randn(out_features, units, generator=generator, dtype=dtype)
            U, V = xi * G_u / torch.linalg.norm(G_u), xi * G_v / torch.linalg.norm(G_v)
        self.U, self.V = nn.Parameter(U), nn.Parameter(V)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        """``(B, in_features) -> (B, out_features)``."""
        y = (x @ self.U) @ self.V.T
        return y + self.bias if self.bias is not None else y

    def weight(self):
        """The layer's matrix ``V U^T``, ``(out_features, in_features)``."""
        return self.V @ self.U.T

    def project_(self):
        """Nothing to project (unconstrained); here so that both layers train with the same loop."""
        return self

    def _from_svd(self, left, sigma, right):
        """Balanced: ``U = right sqrt(sigma)``, ``V = left sqrt(sigma)``."""
        layer = UVLinear(self.in_features, self.out_features, len(sigma), bias=self.bias is not None,
                         dtype=self.U.dtype)
        root = sigma.sqrt()
        layer.U.copy_(right * root)
        layer.V.copy_(left * root)
        return layer
