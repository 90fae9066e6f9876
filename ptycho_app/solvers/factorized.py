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
from dataclasses import dataclass

import torch

from ..lifting import LiftedOperator
from .normalization import problem_scale
from .options import SolverOptions

#: ``rel_tol`` is only checked once the relative residual is below this: the small random start
#: sits on a plateau (the saddle at X = 0) where the loss barely moves for a while.
CONVERGENCE_MIN_PROGRESS = 0.5


class SolverDivergedError(RuntimeError):
    """The loss became non-finite; ``state`` holds the last finite state yielded (None if the
    loss was non-finite before the first yield)."""

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
        Iterations (updates) done; ``U``, ``d`` are the iterate ``X_iteration``.
    U : (B, n, r) complex or real
        Factor (normalized units; UDU keeps ``||U||_F <= radius``).
    d : (B, r) real
        Diagonal (all ones for BM).
    scale : (B,) real
        ``tau``: the trace estimate the data were divided by.
    losses : (iteration + 1, B) real
        ``1/2 ||A(X_k) - b||^2`` of the iterates ``X_0 ... X_iteration``, physical units.
    relative_residual : (B,) real
        ``||A(X) - b|| / ||b||`` of the current iterate.
    elapsed : float
        Seconds spent in the solver so far (time the consumer takes between yields excluded).
    done : bool
        True on the last state the generator yields.
    iterations : (B,) int64
        Iterations each problem ran: a problem that met ``rel_tol`` stops there (keeping its
        state) while the rest of the batch goes on.
    """

    iteration: int
    U: torch.Tensor
    d: torch.Tensor
    scale: torch.Tensor
    losses: torch.Tensor
    relative_residual: torch.Tensor
    elapsed: float
    done: bool = False
    iterations: torch.Tensor | None = None

    @property
    def loss(self) -> torch.Tensor:
        """(B,) real: loss of the current iterate."""
        return self.losses[-1]

    def physical_weights(self) -> torch.Tensor:
        """(B, r) real: ``scale * d``, so that ``X = U diag(scale * d) U^*``."""
        return self.d * self.scale[:, None]


def frobenius_norm(U: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1) ``||U_k||_F`` (``linalg.vector_norm`` over two axes of a complex tensor is ~40x slower on CPU)."""
    parts = torch.view_as_real(U) if U.is_complex() else U
    return parts.square().sum(dim=tuple(range(1, parts.dim()))).sqrt().reshape(-1, 1, 1)


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
        Every ``yield_every`` iterations and once more, with ``done=True``, at the end. With
        ``rel_tol``, a problem stops (keeps its state) at the first yield where its relative
        residual is below 0.5 and its loss fell by less than ``rel_tol`` per iteration, on average,
        since the previous yield; the run ends when all have stopped. Batched and one-by-one solves
        therefore give the same states.

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
    methods = options.methods(batch)
    steps = torch.tensor(options.steps(batch), dtype=curvature.dtype, device=device)
    step_u = (steps / curvature)[:, None, None]
    step_d = ((options.step_d or options.step or 0.0) / curvature)[:, None]  # BM problems: unused
    norm_b = b_normalized.flatten(1).norm(dim=1)

    if init is None:
        U, d = initial_factors(operator.n, options.rank, batch, options.xi, options.seed, dtype, device)
    else:
        U = init[0].to(device=device, dtype=dtype).clone()
        d = init[1].to(device=device, dtype=operator.real_dtype).clone()
        if U.shape != (batch, operator.n, U.shape[-1]) or d.shape != (batch, U.shape[-1]):
            raise ValueError(f"init factors have shapes {tuple(U.shape)}, {tuple(d.shape)}; "
                             f"expected (B={batch}, n={operator.n}, r) and (B, r)")
    udu_mask = torch.tensor([m == "udu" for m in methods], device=device)  # (B,) per-problem method
    udu = bool(udu_mask.any())
    mixed = udu and not bool(udu_mask.all())
    max_iters, every = options.max_iters, options.yield_every
    losses = torch.empty(max_iters + 1, batch, dtype=operator.real_dtype, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)  # problems still iterating
    all_active = True
    stopped_at = torch.full((batch,), max_iters, dtype=torch.int64, device=device)

    def snapshot(k, relative, elapsed, done):
        iterations = torch.where(active, torch.full_like(stopped_at, k), stopped_at)
        return SolverState(k, U.clone(), d.clone(), tau, losses[:k + 1] * tau**2,
                           relative.clone(), elapsed, done, iterations)

    last_good = None
    busy = 0.0  # seconds spent in the solver, not in the consumer between yields
    resumed = time.perf_counter()
    for k in range(max_iters + 1):
        # Residual and G U of the current iterate X_k: its loss, then (unless done) the step.
        residual, GU = operator.residual_and_product(U, d, b_normalized)
        residual_norm = residual.flatten(1).norm(dim=1)
        losses[k] = 0.5 * residual_norm**2
        final = k == max_iters
        if (k > 0 and k % every == 0) or final:
            relative = residual_norm / norm_b
            bad = ~(torch.isfinite(losses[k]) & torch.isfinite(U).flatten(1).all(dim=1))
            if bool(bad.any()):
                since = last_good.iteration if last_good is not None else 0
                raise SolverDivergedError(
                    f"loss of problem(s) {torch.nonzero(bad).flatten().tolist()} became non-finite "
                    f"between iterations {since} and {k}: lower the step (now {options.steps(batch)[0]})",
                    last_good)
            if options.rel_tol > 0 and k > 0:
                start = max(k - every, 0)
                mean_change = (losses[start] - losses[k]).abs() / (losses[start].clamp_min(1e-300) * (k - start))
                newly = active & (relative < CONVERGENCE_MIN_PROGRESS) & (mean_change < options.rel_tol)
                stopped_at = torch.where(newly, torch.full_like(stopped_at, k), stopped_at)
                active = active & ~newly
                all_active = bool(active.all())
            done = final or not bool(active.any())
            busy += time.perf_counter() - resumed
            last_good = snapshot(k, relative, busy, done)
            yield last_good
            if done:
                return
            resumed = time.perf_counter()
        if udu:  # BM problems of a mixed batch keep d = 1, so U - step 2 G U d is their step too
            grad_d = (U.conj() * GU).sum(dim=1).real
            U_next = U - step_u * 2 * GU * d[:, None, :]
            shrink = (options.radius / frobenius_norm(U_next)).clamp(max=1)
            d_next = (d - step_d * grad_d).clamp_(min=0)
            if mixed:
                shrink = torch.where(udu_mask[:, None, None], shrink, torch.ones_like(shrink))
                d_next = torch.where(udu_mask[:, None], d_next, d)
            U_next = U_next * shrink
        else:
            U_next, d_next = U - step_u * 2 * GU, d
        if all_active:
            U, d = U_next, d_next
        else:  # converged problems keep their state, as if solved alone
            U = torch.where(active[:, None, None], U_next, U)
            d = torch.where(active[:, None], d_next, d)


def solve(operator: LiftedOperator, b: torch.Tensor, options: SolverOptions, init=None) -> SolverState:
    """Run :func:`iterate` to the end and return the final state."""
    state = None
    for state in iterate(operator, b, options, init=init):  # noqa: B007 (the last one is kept)
        pass
    return state
