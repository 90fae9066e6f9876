"""Matrix sensing with symmetric (Hermitian) Gaussian measurement matrices.

``A(X)_i = <A_i, X> / sqrt(m)`` with ``A_i = (G_i + G_i^*) / 2`` and ``G_i`` standard Gaussian
(real, or circular complex).  The ``1 / sqrt(m)`` keeps ``A`` close to an isometry, so step sizes
do not depend on ``m``.  Matrices are stored densely: memory ``O(m n^2)``, meant for the
papers' validation problems (``n`` up to a few hundred).
"""

from __future__ import annotations

import math

import torch

from .base import LiftedOperator


class GaussianSensing(LiftedOperator):
    """Symmetric Gaussian matrix sensing.

    Parameters
    ----------
    matrices : (m, n, n) real or complex tensor
        Measurement matrices ``A_i`` (made Hermitian here).
    device : str or torch.device
    """

    def __init__(self, matrices: torch.Tensor, device="cpu"):
        matrices = torch.as_tensor(matrices)
        m, n, n2 = matrices.shape
        if n != n2:
            raise ValueError(f"measurement matrices must be square, got {tuple(matrices.shape)}")
        self.n = n
        self.measurement_shape = (m,)
        self.is_complex = matrices.is_complex()
        self.dtype = matrices.dtype
        self.device = torch.device(device)
        hermitian = (matrices + matrices.transpose(-1, -2).conj()) / 2
        self.matrices = (hermitian / math.sqrt(m)).to(self.device)

    @classmethod
    def random(cls, n, m, is_complex=False, dtype=None, seed=0, device="cpu"):
        """``m`` random symmetric Gaussian matrices of size ``n``.

        Parameters
        ----------
        n, m : int
        is_complex : bool
        dtype : torch.dtype, optional
            Default float64 (real) or complex128 (complex).
        seed : int
        device : str or torch.device
        """
        dtype = dtype or (torch.complex128 if is_complex else torch.float64)
        generator = torch.Generator().manual_seed(seed)
        matrices = torch.randn(m, n, n, dtype=dtype, generator=generator)
        return cls(matrices, device=device)

    def measure(self, U, d):
        AU = torch.einsum("mij,bjr->bmir", self.matrices, U)
        return (U.conj()[:, None] * AU * d[:, None, None, :]).sum((-1, -2)).real

    def adjoint_apply(self, w, V):
        W = torch.einsum("bm,mij->bij", w.to(self.dtype), self.matrices)
        return W @ V
