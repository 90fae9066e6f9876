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


def largest_eigenvalue(operator: LiftedOperator, w: torch.Tensor, iterations: int = 40,
                       whitening: torch.Tensor | None = None, return_vector: bool = False):
    """Largest (algebraic) eigenvalue of ``A^*(w)`` (or of ``S A^*(w) S``) by power iteration.

    Parameters
    ----------
    operator : LiftedOperator
    w : (B, *measurement_shape) real
    iterations : int
    whitening : (n,) real, optional
        ``S``, a diagonal: the eigenvalue of ``S A^*(w) S`` (``S = M^{-1/2}`` for a preconditioner ``M``).
    return_vector : bool
        Also return the eigenvectors.

    Returns
    -------
    eigenvalue : (B,) real
        Estimates of ``lambda_max``; when the dominant eigenvalue is negative, a second
        power iteration on the shifted matrix recovers the largest one.
    vector : (B, n, 1), only with ``return_vector``
        The unit eigenvectors.
    """
    batch = w.shape[0]
    generator = torch.Generator().manual_seed(12345)
    start = torch.randn(operator.n, 1, generator=generator, dtype=torch.float64)
    start = start.to(dtype=operator.dtype, device=operator.device)
    start = start.expand(batch, operator.n, 1).clone()

    if whitening is None:
        def apply(v):
            return operator.adjoint_apply(w, v)
    else:
        S = whitening.to(device=start.device).reshape(1, -1, 1)

        def apply(v):
            return S * operator.adjoint_apply(w, S * v)

    def power(shift):
        v = start / torch.linalg.vector_norm(start, dim=(1, 2), keepdim=True)
        for _ in range(iterations):
            v = apply(v) + shift[:, None, None] * v
            v = v / torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True).clamp_min(1e-30)
        rayleigh = (v.conj() * apply(v)).sum(dim=(1, 2)).real
        return rayleigh, v

    zero = torch.zeros(batch, dtype=w.dtype, device=w.device)
    eigenvalue, vector = power(zero)
    negative = eigenvalue < 0
    if bool(negative.any()):
        shifted, shifted_vector = power(torch.where(negative, -eigenvalue, zero))
        eigenvalue = torch.where(negative, shifted, eigenvalue)
        vector = torch.where(negative[:, None, None], shifted_vector, vector)
    return (eigenvalue, vector) if return_vector else eigenvalue


def problem_scale(operator: LiftedOperator, b: torch.Tensor, return_vector: bool = False):
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
    vector : (B, n, 1), only with ``return_vector``
        The top eigenvector of ``A^*(b)`` (the spectral start).

    Raises
    ------
    ValueError
        If a problem's measurements carry no signal (``lambda_max(A^*(b)) <= 0``).
    """
    eigenvalue, vector = largest_eigenvalue(operator, b, return_vector=True)
    if bool((eigenvalue <= 0).any()) or not bool(torch.isfinite(eigenvalue).all()):
        bad = torch.nonzero(~(eigenvalue > 0)).flatten().tolist()
        raise ValueError(f"measurements of problem(s) {bad} carry no signal (A^*(b) has no "
                         "positive eigenvalue): check the data")
    tau = b.flatten(1).pow(2).sum(1) / eigenvalue
    return (tau, eigenvalue / tau, vector) if return_vector else (tau, eigenvalue / tau)


def spectral_preconditioner(operator: LiftedOperator, alpha: float = 0.0) -> torch.Tensor:
    """(n,) real: the inverse Jacobi diagonal ``1 / ((1 - alpha) m + alpha max m)`` on the measured
    support (0 off it), ``m = diag A^*(1)`` (FP: ``sum_l |P_l(k)|^2``)."""
    m = operator.jacobi_diagonal()
    inside = m > 0
    blended = (1 - alpha) * m + alpha * m.max()
    return torch.where(inside, 1 / blended.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def step_curvatures(operator: LiftedOperator, b_normalized: torch.Tensor, loss, radius: float,
                    preconditioner=None, intensity_curvature=None):
    """The curvatures that normalized steps of ``U`` and ``d`` are divided by, for a loss and preconditioner.

    ``U``:

    - intensity loss: ``lambda_max(S A^*(b) S)`` (``S = M^{-1/2}``, the identity without preconditioner;
      then it is ``intensity_curvature``, already known from :func:`problem_scale`);
    - amplitude and Poisson losses: ``c lambda_max(S A^*(1) S)`` with the loss's ``c`` (1 and 4): with the
      spectral preconditioner (alpha = 0) this is ``c`` exactly.

    ``d`` (UDU; never preconditioned): the intensity loss keeps the ``U`` curvature without
    preconditioner (the papers' preset's steps); for the amplitude and Poisson losses the curvature of
    ``f`` in ``d_j`` is about ``c u_j^* A^*(1) u_j / (4 d_j)``, which at a solution of trace 1 with
    ``||u_j|| = radius`` and ``d_j = 1 / radius^2`` is ``c lambda_max(A^*(1)) radius^4 / 4``.

    Returns
    -------
    curvature_u, curvature_d : (B,) real
    """
    flat = loss.flat_curvature
    if flat is None:
        unwhitened = intensity_curvature
        if unwhitened is None:
            unwhitened = largest_eigenvalue(operator, b_normalized)
        if preconditioner is None:
            return unwhitened, unwhitened
        return largest_eigenvalue(operator, b_normalized, whitening=preconditioner.sqrt()), unwhitened
    if operator.has_frames:  # A^*(1) is the diagonal m: its largest eigenvalues need no power iteration
        m = operator.jacobi_diagonal().expand(b_normalized.shape[0], -1)
        unwhitened = m.max(dim=1).values * flat
        whitened = None if preconditioner is None else (m * preconditioner).max(dim=1).values * flat
    else:
        ones = torch.ones_like(b_normalized)
        unwhitened = largest_eigenvalue(operator, ones) * flat
        whitened = None if preconditioner is None else (
            largest_eigenvalue(operator, ones, whitening=preconditioner.sqrt()) * flat)
    curvature_d = unwhitened * radius**4 / 4
    return (unwhitened if whitened is None else whitened), curvature_d
