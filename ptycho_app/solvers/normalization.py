"""Scale normalization that makes one step size fit every problem.

For ``f(X) = 1/2 ||A(X) - b||^2`` at a rank-one solution ``X* = x x^*`` the curvature of
``f(U U^*)`` along ``x`` is ``4 ||b||^2 / tr(X*)``, and ``lambda = lambda_max(A^*(b))`` satisfies
``lambda >= ||b||^2 / tr(X*)``, with near-equality when the top eigenvector of ``A^*(b)`` is
aligned with ``x`` (the premise of spectral initialization).  So

- ``tau = ||b||^2 / lambda`` estimates ``tr(X*)`` from the measurements alone, and the solver
  works on ``b / tau``, whose solution has trace about 1 (this fixes the meaning of ``xi`` and
  ``radius``);
- the normalized data have curvature ``4 lambda / tau``, so the step is divided by
  ``lambda / tau``.

Both are invariant to scaling the data (photon counts) and the operator (grid size, pupil
normalization).  ``lambda`` comes from a matrix-free power iteration with ``A^*(b) v``.
"""

from __future__ import annotations

import torch

from ..lifting import LiftedOperator


def largest_eigenvalue(operator: LiftedOperator, w: torch.Tensor, iterations: int = 40) -> torch.Tensor:
    """Largest (algebraic) eigenvalue of ``A^*(w)`` by power iteration.

    Parameters
    ----------
    operator : LiftedOperator
    w : (B, *measurement_shape) real
    iterations : int

    Returns
    -------
    (B,) real
        Estimates of ``lambda_max(A^*(w))``; when the dominant eigenvalue is negative, a second
        power iteration on the shifted matrix recovers the largest one.
    """
    batch = w.shape[0]
    generator = torch.Generator().manual_seed(12345)
    start = torch.randn(operator.n, 1, generator=generator, dtype=torch.float64)
    start = start.to(dtype=operator.dtype, device=operator.device)
    start = start.expand(batch, operator.n, 1).clone()

    def power(shift):
        v = start / torch.linalg.vector_norm(start, dim=(1, 2), keepdim=True)
        for _ in range(iterations):
            v = operator.adjoint_apply(w, v) + shift[:, None, None] * v
            v = v / torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True).clamp_min(1e-30)
        rayleigh = (v.conj() * operator.adjoint_apply(w, v)).sum(dim=(1, 2)).real
        return rayleigh

    zero = torch.zeros(batch, dtype=w.dtype, device=w.device)
    eigenvalue = power(zero)
    negative = eigenvalue < 0
    if bool(negative.any()):
        shifted = power(torch.where(negative, -eigenvalue, zero))
        eigenvalue = torch.where(negative, shifted, eigenvalue)
    return eigenvalue


def problem_scale(operator: LiftedOperator, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace estimate and normalized curvature of a batch of problems.

    Parameters
    ----------
    operator : LiftedOperator
    b : (B, *measurement_shape) real

    Returns
    -------
    tau : (B,) real
        ``||b||^2 / lambda_max(A^*(b))``, the estimate of ``tr(X*)``.
    curvature : (B,) real
        ``lambda_max(A^*(b / tau)) = lambda_max(A^*(b)) / tau``; steps are divided by it.

    Raises
    ------
    ValueError
        If a problem's measurements carry no signal (``lambda_max(A^*(b)) <= 0``).
    """
    eigenvalue = largest_eigenvalue(operator, b)
    if bool((eigenvalue <= 0).any()) or not bool(torch.isfinite(eigenvalue).all()):
        bad = torch.nonzero(~(eigenvalue > 0)).flatten().tolist()
        raise ValueError(f"measurements of problem(s) {bad} carry no signal (A^*(b) has no "
                         "positive eigenvalue): check the data")
    tau = b.flatten(1).pow(2).sum(1) / eigenvalue
    return tau, eigenvalue / tau
