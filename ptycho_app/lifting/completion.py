"""Matrix completion as a lifted operator: observed entries of a PSD matrix.

``A(X)_k = X[i_k, j_k]`` for observed positions ``(i_k, j_k)``.  Real problems (``X`` real
symmetric) give one real measurement per entry; complex ones (``X`` Hermitian) give two, the real
and imaginary parts, so measurements are ``(m,)`` or ``(m, 2)`` real.  The adjoint returns the
Hermitian part ``(W + W^*) / 2`` of ``W = sum_k w_k e_{i_k} e_{j_k}^*``, which is the gradient of
``1/2 ||A(X) - b||^2`` over Hermitian ``X``.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import LiftedOperator


class MatrixCompletion(LiftedOperator):
    """Observed entries of an ``n x n`` PSD matrix.

    Parameters
    ----------
    n : int
        Matrix size.
    rows, cols : (m,) int
        Observed positions.
    is_complex : bool
        Hermitian complex ``X`` (measurements ``(m, 2)``) instead of real symmetric (``(m,)``).
    device : str or torch.device
    dtype : torch.dtype
        Factor dtype; real problems need a real dtype, complex problems a complex one.
    """

    def __init__(self, n, rows, cols, is_complex=False, device="cpu", dtype=None):
        self.n = int(n)
        self.is_complex = bool(is_complex)
        self.dtype = dtype or (torch.complex64 if is_complex else torch.float32)
        if self.dtype.is_complex != self.is_complex:
            raise ValueError(f"dtype {self.dtype} does not match is_complex={is_complex}")
        self.device = torch.device(device)
        rows, cols = np.asarray(rows), np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError("rows and cols must be 1-D arrays of the same length")
        if rows.min() < 0 or cols.min() < 0 or max(rows.max(), cols.max()) >= self.n:
            raise ValueError(f"observed positions must lie in [0, {self.n})")
        self.rows = torch.as_tensor(rows, dtype=torch.int64, device=self.device)
        self.cols = torch.as_tensor(cols, dtype=torch.int64, device=self.device)
        m = len(rows)
        self.measurement_shape = (m, 2) if self.is_complex else (m,)

    @classmethod
    def random(cls, n, m, rng=None, **kwargs):
        """``m`` distinct positions drawn uniformly from the ``n x n`` entries.

        Parameters
        ----------
        n, m : int
        rng : numpy.random.Generator or int, optional
        **kwargs
            Passed to the constructor (``is_complex``, ``device``, ``dtype``).
        """
        rng = np.random.default_rng(rng)
        flat = rng.choice(n * n, size=m, replace=False)
        return cls(n, flat // n, flat % n, **kwargs)

    def _to_real(self, values):
        return torch.view_as_real(values) if self.is_complex else values

    def _to_field(self, w):
        return torch.view_as_complex(w.contiguous()) if self.is_complex else w

    def measure(self, U, d):
        entries = (U[:, self.rows, :] * d[:, None, :] * U[:, self.cols, :].conj()).sum(-1)
        return self._to_real(entries)

    def adjoint_apply(self, w, V):
        weights = self._to_field(w).to(V.dtype)[..., None]  # (B, m, 1)
        out = torch.zeros_like(V)
        out.index_add_(1, self.rows, weights * V[:, self.cols, :])
        out.index_add_(1, self.cols, weights.conj() * V[:, self.rows, :])
        return out / 2
