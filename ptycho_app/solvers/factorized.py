"""BM and UDU gradient descent on ``min_X 1/2 ||A(X) - b||^2``, written once for any lifted operator.

- BM: ``X = U U^*``; ``U <- U - eta * 2 G U``.
- UDU: ``X = U diag(d) U^*``; ``U <- P_ball(U - eta * 2 G U diag(d))`` and
  ``d <- max(d - eta_d * diag(U^* G U), 0)``, both gradients taken at the same point
  (Hou, Sra, Yurtsever 2025).

``G = A^*(A(X) - b)``.  Start: ``U0 = xi * randn / ||randn||_F`` and ``d0 = 1``.  All problems of
a batch move together; each has its own normalization (``tau``, curvature) and random start, so a
batched solve equals the same problems solved one by one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from ..lifting import LiftedOperator
from .normalization import problem_scale
from .options import SolverOptions


class SolverDivergedError(RuntimeError):
    """The loss became non-finite; ``state`` holds the last finite state."""

    def __init__(self, message, state):
        super().__init__(message)
        self.state = state


@dataclass
class SolverState:
    """What the solver knows after ``iteration`` iterations.

    The factors are those of the normalized problem; the physical matrix is
    ``X = U diag(scale * d) U^*`` (see :meth:`physical_weights`).

    Attributes
    ----------
    iteration : int
        Iterations done.
    U : (B, n, r) complex or real
        Factor (normalized units; UDU keeps ``||U||_F <= radius``).
    d : (B, r) real
        Diagonal (all ones for BM).
    scale : (B,) real
        ``tau``: the trace estimate the data were divided by.
    losses : (iteration, B) real
        ``1/2 ||A(X_k) - b||^2`` of every iterate ``X_k``, physical units.
    relative_residual : (B,) real
        ``||A(X) - b|| / ||b||`` of the last iterate measured.
    elapsed : float
        Seconds spent iterating so far.
    done : bool
        True on the last state the generator yields.
    """

    iteration: int
    U: torch.Tensor
    d: torch.Tensor
    scale: torch.Tensor
    losses: torch.Tensor
    relative_residual: torch.Tensor
    elapsed: float
    done: bool = False

    @property
    def loss(self) -> torch.Tensor:
        """(B,) real: loss of the last measured iterate."""
        return self.losses[-1]

    def physical_weights(self) -> torch.Tensor:
        """(B, r) real: ``scale * d``, so that ``X = U diag(scale * d) U^*``."""
        return self.d * self.scale[:, None]


def initial_factors(n, rank, batch, xi, seed, dtype, device):
    """The authors' start, one reproducible draw per problem.

    Parameters
    ----------
    n, rank, batch : int
    xi : float
        ``||U0||_F``.
    seed : int or sequence of int
        Problem ``k`` uses ``seed + k`` or ``seed[k]``.
    dtype : torch.dtype
    device : torch.device

    Returns
    -------
    U0 : (B, n, r) dtype
        ``xi * randn / ||randn||_F`` (circular complex Gaussian for complex dtypes).
    d0 : (B, r) real
        Ones.
    """
    seeds = [seed + k for k in range(batch)] if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    wide = torch.complex128 if dtype.is_complex else torch.float64
    draws = [torch.randn(n, rank, dtype=wide, generator=torch.Generator().manual_seed(int(s)))
             for s in seeds]
    U0 = torch.stack(draws)
    U0 = xi * U0 / torch.linalg.vector_norm(U0, dim=(1, 2), keepdim=True)
    real = torch.empty((), dtype=dtype).real.dtype
    return U0.to(dtype=dtype, device=device), torch.ones(batch, rank, dtype=real, device=device)


def iterate(operator: LiftedOperator, b: torch.Tensor, options: SolverOptions, init=None):
    """Run BM or UDU and yield the state every ``options.yield_every`` iterations.

    Parameters
    ----------
    operator : LiftedOperator
        The lifted measurements (FP, completion, sensing).
    b : (B, *measurement_shape) real
        Measurements of each problem of the batch.
    options : SolverOptions
    init : tuple of tensors, optional
        ``(U0 (B, n, r), d0 (B, r))`` in normalized units (for example a previous state's
        ``U, d``), instead of the random start.

    Yields
    ------
    SolverState
        Every ``yield_every`` iterations and once more, with ``done=True``, at the end.

    Raises
    ------
    SolverDivergedError
        If the loss becomes non-finite (the error carries the last finite state).
    """
    device, dtype = operator.device, operator.dtype
    b = torch.as_tensor(b).to(device=device, dtype=operator.real_dtype)
    if b.shape[1:] != tuple(operator.measurement_shape):
        raise ValueError(f"measurements have shape {tuple(b.shape[1:])}, the operator expects "
                         f"{tuple(operator.measurement_shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("measurements contain NaN or Inf")
    batch = b.shape[0]
    tau, curvature = problem_scale(operator, b)
    b_normalized = b / tau.reshape(-1, *[1] * (b.dim() - 1))
    step_u = (options.step / curvature)[:, None, None]
    step_d = ((options.step_d or options.step) / curvature)[:, None]  # BM: unused
    norm_b = b_normalized.flatten(1).norm(dim=1)

    if init is None:
        U, d = initial_factors(operator.n, options.rank, batch, options.xi, options.seed, dtype, device)
    else:
        U = init[0].to(device=device, dtype=dtype).clone()
        d = init[1].to(device=device, dtype=operator.real_dtype).clone()
        if U.shape != (batch, operator.n, U.shape[-1]) or d.shape != (batch, U.shape[-1]):
            raise ValueError(f"init factors have shapes {tuple(U.shape)}, {tuple(d.shape)}; "
                             f"expected (B={batch}, n={operator.n}, r) and (B, r)")
    udu = options.method == "udu"
    losses = torch.empty(options.max_iters, batch, dtype=operator.real_dtype, device=device)
    relative = torch.full((batch,), float("nan"), dtype=operator.real_dtype, device=device)

    def snapshot(k, elapsed, done=False):
        return SolverState(k, U.clone(), d.clone(), tau, losses[:k].clone() * tau**2,
                           relative.clone(), elapsed, done)

    last_good = snapshot(0, 0.0)
    started = time.perf_counter()
    for k in range(options.max_iters):
        residual, GU = operator.residual_and_product(U, d, b_normalized)
        residual_norm = residual.flatten(1).norm(dim=1)
        losses[k] = 0.5 * residual_norm**2
        relative = residual_norm / norm_b
        if udu:
            grad_d = (U.conj() * GU).sum(dim=1).real
            U = U - step_u * 2 * GU * d[:, None, :]
            norm_u = torch.linalg.vector_norm(U, dim=(1, 2), keepdim=True)
            U = U * (options.radius / norm_u).clamp(max=1)
            d = (d - step_d * grad_d).clamp_(min=0)
        else:
            U = U - step_u * 2 * GU

        done_iters = k + 1
        last = done_iters == options.max_iters
        if done_iters % options.yield_every == 0 or last:
            elapsed = time.perf_counter() - started
            if not bool(torch.isfinite(losses[k]).all() and torch.isfinite(U).all()):
                raise SolverDivergedError(
                    f"loss became non-finite between iterations {last_good.iteration} and "
                    f"{done_iters}: lower the step (now {options.step})", last_good)
            converged = False
            if options.rel_tol > 0 and k >= 1:
                change = (losses[k - 1] - losses[k]).abs() / losses[k - 1].clamp_min(1e-300)
                converged = bool((change < options.rel_tol).all())
            state = snapshot(done_iters, elapsed, done=last or converged)
            last_good = state
            yield state
            if converged:
                return
    if options.max_iters == 0:
        yield replace(last_good, done=True)


def solve(operator: LiftedOperator, b: torch.Tensor, options: SolverOptions, init=None) -> SolverState:
    """Run :func:`iterate` to the end and return the final state."""
    state = None
    for state in iterate(operator, b, options, init=init):
        pass
    return state
