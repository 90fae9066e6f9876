"""The lifted measurement interface that the solvers are written against.

A lifted operator ``A`` maps a Hermitian PSD matrix ``X`` (``n x n``) linearly to real
measurements, ``A(X) = [<A_i, X>]_i``.  The solvers never form ``X``: they hand over factors
``X = U diag(d) U^*`` and ask for

- ``measure(U, d)``: ``A(X)``, and
- ``adjoint_apply(w, V)``: ``A^*(w) V`` with ``A^*(w) = sum_i w_i A_i`` (Hermitian),

or both at once through ``evaluate(U, d, b, loss)``, which returns the loss (any of
:mod:`ptycho_app.lifting.losses`), ``||A(X) - b||^2`` and ``G U`` with ``G = A^*(w)``, ``w`` the
loss's weights: the gradient of the loss with respect to ``X``.  Operators that can share work
between the two (FP reuses ``B U``) override it.  ``residual_and_product`` is the plain
least-squares case, kept for tests and small problems.

Operators may also provide the spectral (Jacobi) preconditioner, ``jacobi_diagonal``, and the
measured support, ``support``; FP does.

Batching: every tensor has a leading batch axis ``B`` (problems); the operator itself is shared
by the batch.
"""

from __future__ import annotations

import torch


def residual_norm_sq(q, b, value, loss, wanted, block=None):
    """``||q - b||^2`` per problem over the measurements the loss uses (its mask, sliced by the frame
    ``block``): twice the value for the intensity loss, computed when ``wanted``, else None."""
    if loss.weight_is_residual:
        return 2 * value
    if not wanted:
        return None
    difference = q - b
    keep = loss._keep(block)
    if keep is not None:
        difference = difference * keep
    return torch.linalg.vector_norm(difference.flatten(1), dim=1).square()


class LiftedOperator:
    """Base class of lifted measurement operators.

    Attributes
    ----------
    n : int
        Size of the lifted matrix ``X`` (``n x n``).
    measurement_shape : tuple of int
        Shape of one problem's measurements (``m`` values in all).
    is_complex : bool
        Whether ``X`` (and the factors) are complex Hermitian rather than real symmetric.
    dtype : torch.dtype
        Dtype of the factors.
    device : torch.device
        Where the operator's tensors live.
    has_frames : bool
        FP operators: the spectral preconditioner and the frame start are available.
    """

    n: int
    measurement_shape: tuple
    is_complex: bool
    dtype: torch.dtype
    device: torch.device
    #: Whether the operator has FP frames: ``jacobi_diagonal`` (the spectral preconditioner),
    #: ``support`` and ``frame_start``.
    has_frames = False

    @property
    def real_dtype(self) -> torch.dtype:
        """Dtype of the measurements."""
        return torch.empty((), dtype=self.dtype).real.dtype

    def measure(self, U: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``A(U diag(d) U^*)``.

        Parameters
        ----------
        U : (B, n, r) complex or real
            Factor columns.
        d : (B, r) real
            Diagonal weights.

        Returns
        -------
        (B, *measurement_shape) real
        """
        raise NotImplementedError

    def adjoint_apply(self, w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``A^*(w) V``.

        Parameters
        ----------
        w : (B, *measurement_shape) real
            Measurement-space weights.
        V : (B, n, k)
            Vectors to multiply.

        Returns
        -------
        (B, n, k)
        """
        raise NotImplementedError

    def residual_and_product(self, U, d, b):
        """Residual ``A(X) - b`` and ``G U`` with ``G = A^*(A(X) - b)``, ``X = U diag(d) U^*``.

        Parameters
        ----------
        U : (B, n, r)
        d : (B, r) real
        b : (B, *measurement_shape) real

        Returns
        -------
        residual : (B, *measurement_shape) real
        GU : (B, n, r)
        """
        residual = self.measure(U, d) - b
        return residual, self.adjoint_apply(residual, U)

    def evaluate(self, U, d, b, loss, residual=True):
        """Loss, squared residual and ``G U`` (``G = A^*(w)``, ``w`` the loss's weights) at ``X = U diag(d) U^*``.

        Parameters
        ----------
        U : (B, n, r)
        d : (B, r) real
        b : (B, *measurement_shape) real
        loss : Loss
            Bound to ``b`` (see :meth:`~ptycho_app.lifting.losses.Loss.bind`).
        residual : bool
            Also compute ``||A(X) - b||^2`` (free for the intensity loss; one more pass otherwise).

        Returns
        -------
        value : (B,) real
            The loss.
        residual_sq : (B,) real or None
            ``||A(X) - b||^2`` (for the relative residual, whatever the loss); None unless asked for
            or free.
        GU : (B, n, r)
        """
        q = self.measure(U, d)
        value, weight = loss.value_and_weight(q, b)
        residual_sq = residual_norm_sq(q, b, value, loss, residual)
        return value, residual_sq, self.adjoint_apply(weight, U)

    def jacobi_diagonal(self) -> torch.Tensor:
        """(n,) real: the diagonal of ``A^*(1)``, when ``A^*(1)`` is diagonal (FP: ``sum_l |P_l(k)|^2``).

        Raises
        ------
        ValueError
            For operators without such a diagonal (matrix completion, Gaussian sensing).
        """
        raise ValueError(f"the spectral preconditioner needs an FP operator; {type(self).__name__} has none "
                         "(use precondition 'none')")

    def support(self) -> torch.Tensor | None:
        """(n,) bool: where ``X`` is measured at all (FP: the synthetic aperture), or None (everywhere)."""
        return None

    def frame_start(self, b: torch.Tensor) -> torch.Tensor:
        """(B, n) a starting vector from the measurements (FP: the on-axis frame's field).

        Raises
        ------
        ValueError
            For operators without frames.
        """
        raise ValueError(f"the 'frame' start needs an FP operator; {type(self).__name__} has no frames "
                         "(use init 'random' or 'spectral')")

    # ---- dense helpers, for tests and small problems ----------------------------------------
    def apply_dense(self, X: torch.Tensor) -> torch.Tensor:
        """``A(X)`` for an explicit Hermitian ``X`` (B, n, n), through its eigendecomposition."""
        eigenvalues, vectors = torch.linalg.eigh(X)
        return self.measure(vectors, eigenvalues)

    def adjoint_dense(self, w: torch.Tensor) -> torch.Tensor:
        """``A^*(w)`` as an explicit (B, n, n) matrix."""
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        return self.adjoint_apply(w, eye.expand(w.shape[0], self.n, self.n))
