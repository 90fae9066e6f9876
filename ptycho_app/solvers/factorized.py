"""The driver: one loop that runs any factorization method (:mod:`.methods`) on any lifted operator.

Per iteration, at the current point ``(U, d)`` (``X = U diag(d) U^*``):

1. the operator's fused pass gives the loss, ``||A(X) - b||^2`` and ``G U`` (``G = A^*(w)``,
   ``w`` the loss's weights, :mod:`ptycho_app.lifting.losses`);
2. the method turns ``G U`` into gradients in ``U`` and ``d``;
3. the driver preconditions the ``U`` gradient (spectral: ``M^{-1}`` on the left, the same scaling of
   every column, so ``U -> U Q`` symmetry is kept; ScaledGD: ``(W^*W + lambda I)^{-1}`` on the right),
   steps, and the method projects;
4. with Nesterov momentum the next point is the projected extrapolation
   ``P(x_{k+1} + beta_k (x_{k+1} - x_k))``; a problem restarts (``beta = 0``) when its loss rises,
   and with ``restart_backoff`` < 1 its steps are multiplied by it (down to half): a restart says the
   accelerated step overshot, and on real data a step that keeps overshooting turns momentum into
   cycles of a few iterations between restarts.

The papers' algorithms are the case intensity loss, no preconditioner, no momentum, random start
(``SolverOptions.preset("paper")``):

- BM: ``U <- U - eta * 2 G U``;
- UDU: ``U <- P_ball(U - eta * 2 G U diag(d))``, ``d <- max(d - eta_d * diag(U^* G U), 0)``, both
  gradients at the same point (Hou, Sra, Yurtsever 2025).

All problems of a batch move together; each has its own normalization (``tau``, curvature), start,
momentum and stopping, so a batched solve equals the same problems solved one by one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..calibration.steps import calibration_step
from ..lifting import LiftedOperator
from ..lifting.losses import make_loss
from .methods import frobenius_norm, get_method  # noqa: F401 (frobenius_norm re-exported)
from .normalization import problem_scale, spectral_preconditioner, step_curvatures
from .options import SolverOptions
from .starts import random_factors, starting_factors

#: ``rel_tol`` is only checked, and momentum only switched on, once the relative residual is below
#: this: the small random start sits on a plateau (the saddle at X = 0) where the loss barely moves.
CONVERGENCE_MIN_PROGRESS = 0.5

#: Adaptive step schedule: every ``STALL_WINDOW`` iterations past the plateau, a problem whose loss
#: fell by less than ``STALL_DECREASE`` (relative) halves its step, down to ``MIN_STEP_FACTOR``.
STALL_WINDOW = 10
STALL_DECREASE = 1e-3
MIN_STEP_FACTOR = 2.0**-10
#: With ``restart_backoff`` < 1, a restart multiplies the problem's steps by it, down to this fraction
#: of the initial steps.
MIN_RESTART_FACTOR = 0.5


#: A relative residual ``||A(X) - b|| / ||b||`` above this is divergence (it is 1 at X = 0).
DIVERGED_RESIDUAL = 1e3
#: A random start ``xi`` above this (normalized units: the solution's trace is about 1) is the likely
#: cause of a divergence.
LARGE_XI = 1.0


class SolverDivergedError(RuntimeError):
    """The loss became non-finite, the residual exploded, or ``X`` collapsed to zero; ``state``
    holds the last good state yielded (None if it failed before the first yield)."""

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
        The loss (``options.loss``: intensity ``1/2 ||A(X_k) - b||^2``, amplitude or Poisson) of the
        points ``X_0 ... X_iteration`` where it was evaluated (with momentum: the extrapolated
        points, which are the states yielded), physical units.
    relative_residual : (B,) real
        ``||A(X) - b|| / ||b||`` of the current iterate.
    elapsed : float
        Seconds spent in the solver so far (time the consumer takes between yields excluded).
    done : bool
        True on the last state the generator yields.
    iterations : (B,) int64
        Iterations each problem ran: a problem that met ``rel_tol`` stops there (keeping its
        state) while the rest of the batch goes on.
    calibration : list of Calibration, or None
        One :class:`~ptycho_app.calibration.Calibration` per problem of the batch (pupil, brightness,
        LED geometry recovered so far); None when nothing is recovered.
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
    calibration: list | None = None

    @property
    def loss(self) -> torch.Tensor:
        """(B,) real: loss of the current iterate."""
        return self.losses[-1]

    def physical_weights(self) -> torch.Tensor:
        """(B, r) real: ``scale * d``, so that ``X = U diag(scale * d) U^*``."""
        return self.d * self.scale[:, None]


#: The authors' random start (the name the solvers package exported before the starts module).
initial_factors = random_factors


def check_options(operator: LiftedOperator, options: SolverOptions):
    """Raise ValueError for options the operator cannot serve (before any work starts)."""
    for name in dict.fromkeys((options.method,) if isinstance(options.method, str) else options.method):
        get_method(name).bind(operator)  # uv / udv need an asymmetric operator, bm / udu a symmetric one
    if not operator.has_frames:
        if options.precondition == "spectral":
            raise ValueError(f"the spectral preconditioner needs an FP operator; {type(operator).__name__} has "
                             "none (use precondition 'none')")
        if options.init == "frame":
            raise ValueError(f"the 'frame' start needs an FP operator; {type(operator).__name__} has no frames "
                             "(use init 'random' or 'spectral')")


def solver_failure(U, d, loss, relative, options: SolverOptions, method_names, blocks=None
                   ) -> tuple[str, str] | None:
    """What went wrong at a yield, as ``(what, advice)``, or None when every problem is sound.

    A problem fails when its loss or factors are not finite, its relative residual exceeds
    :data:`DIVERGED_RESIDUAL`, or ``X = U diag(d) U^*`` is exactly zero (a step so large that the
    projection clips every ``d`` to 0, or ``U`` to 0).  The advice names the likely cause: a large
    ``xi``, else the steps.
    """
    diverged = ~(torch.isfinite(loss) & torch.isfinite(U).flatten(1).all(dim=1)) | ~(relative <= DIVERGED_RESIDUAL)
    energy = d.clamp_min(0) * U.abs().square().sum(dim=1)  # (B, r): trace of X = U D U^* per column
    if blocks is not None:  # asymmetric X = U D V^* (rows of U then V): zero when U's or V's part is
        n1 = blocks[0]
        energy = (d.clamp_min(0) * U[:, :n1].abs().square().sum(dim=1).sqrt()
                  * U[:, n1:].abs().square().sum(dim=1).sqrt())
    collapsed = ~diverged & (energy.sum(dim=1) == 0)
    if not bool((diverged | collapsed).any()):
        return None
    bad = diverged if bool(diverged.any()) else collapsed
    problems = torch.nonzero(bad).flatten().tolist()
    what = (f"problem(s) {problems} diverged (loss or residual non-finite or above {DIVERGED_RESIDUAL:g} "
            "times ||b||)" if bad is diverged else f"X of problem(s) {problems} collapsed to zero (all eigenvalues 0)")
    steps = options.steps(len(method_names))
    udu = [k for k in problems if "step_d" in get_method(method_names[k]).records]  # UDU, UDV
    xi_used = options.init == "random" or options.rank > 1  # guided starts: xi sizes the extra columns
    if bad is diverged and xi_used and options.xi > LARGE_XI:
        return what, f"lower xi (--xi, now {options.xi:g}; the solution's trace is about 1 in these units)"
    advice = f"lower the step (--step, now {steps[problems[0]]:g})"
    if udu and options.step_d is not None:
        advice = (f"lower the D step (--step-d, now {options.step_d:g}) or the U step (--step, now "
                  f"{steps[udu[0]]:g})")
    return what, advice


def iterate(operator: LiftedOperator, b: torch.Tensor, options: SolverOptions, init=None, mask=None):
    """Run the options' method and yield the state every ``options.yield_every`` iterations.

    Parameters
    ----------
    operator : LiftedOperator
        The lifted measurements (FP, completion, sensing).
    b : (B, *measurement_shape) real
        Measurements of each problem of the batch.
    options : SolverOptions
    init : tuple of tensors, optional
        ``(U0 (B, n, r), d0 (B, r))`` in normalized units (for example a previous state's
        ``U, d``), instead of the start ``options.init``; with a third entry ``fresh (B,) bool``,
        the problems marked fresh take the start ``options.init`` instead (a resumed batch in which
        some inputs have no earlier result).
    mask : (B, *measurement_shape) bool, optional
        Which measurements the loss uses (True); False ones (saturated pixels) get zero value and
        weight (:meth:`~ptycho_app.lifting.losses.Loss.bind`). None: all.

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
    check_options(operator, options)
    device, dtype = operator.device, operator.dtype
    b = torch.as_tensor(b).to(device=device, dtype=operator.real_dtype)
    if b.shape[1:] != tuple(operator.measurement_shape):
        raise ValueError(f"measurements have shape {tuple(b.shape[1:])}, the operator expects "
                         f"{tuple(operator.measurement_shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("measurements contain NaN or Inf")
    if options.loss != "intensity" and bool((b < 0).any()):
        raise ValueError(f"the {options.loss} loss needs non-negative measurements (intensities); "
                         "use the intensity loss for signed data")
    batch = b.shape[0]
    used = None
    if mask is None:
        tau, intensity_curvature, top_vector = problem_scale(operator, b, return_vector=True)
    else:  # the scale from the measurements used; the unused ones' share of X's trace assumed as large
        used = torch.as_tensor(mask).to(device=b.device, dtype=b.dtype)
        tau, intensity_curvature, top_vector = problem_scale(operator, b * used, return_vector=True)
        fraction = used.flatten(1).mean(dim=1).clamp_min(torch.finfo(b.dtype).tiny)
        tau, intensity_curvature = tau / fraction, intensity_curvature * fraction
    b_normalized = b / tau.reshape(-1, *[1] * (b.dim() - 1))
    loss = make_loss(options.loss).bind(b_normalized, mask=used)
    calibration = calibration_step(operator, options)  # pupil recovery / LED calibration (None: off)
    if calibration is not None:  # resets the operator's pupils to the model's
        calibration.start(b_normalized, loss)
    preconditioner = None
    if options.precondition == "spectral":
        preconditioner = spectral_preconditioner(operator, options.precondition_alpha)
    curvature_u, curvature_d = step_curvatures(operator, b_normalized, loss, options.radius, preconditioner,
                                               intensity_curvature)
    method_names = options.methods(batch)
    steps = torch.tensor(options.steps(batch), dtype=curvature_u.dtype, device=device)
    step_u = (steps / curvature_u)[:, None, None]
    step_d = ((options.step_d or options.step or 0.0) / curvature_d)[:, None]  # BM problems: unused
    norm_b = (b_normalized if loss.keep is None else b_normalized * loss.keep).flatten(1).norm(dim=1)  # used ones
    loss_unit = tau**loss.scale_power  # normalized loss -> physical units

    if init is None:
        U, d = starting_factors(operator, b_normalized, options, method_names, top_vector)
    else:
        U = init[0].to(device=device, dtype=dtype).clone()
        d = init[1].to(device=device, dtype=operator.real_dtype).clone()
        if U.shape != (batch, operator.n, U.shape[-1]) or d.shape != (batch, U.shape[-1]):
            raise ValueError(f"init factors have shapes {tuple(U.shape)}, {tuple(d.shape)}; "
                             f"expected (B={batch}, n={operator.n}, r) and (B, r)")
        if len(init) > 2 and bool(init[2].any()):
            fresh = init[2].to(device=device)
            start_U, start_d = starting_factors(operator, b_normalized, options, method_names, top_vector)
            U = torch.where(fresh[:, None, None], start_U, U)
            d = torch.where(fresh[:, None], start_d, d)
    # problems grouped by method: each group moves by its method's rule (one group: no copies)
    groups = []
    for name in dict.fromkeys(method_names):
        rows = [k for k, m in enumerate(method_names) if m == name]
        where = slice(None) if len(rows) == batch else torch.tensor(rows, device=device)
        groups.append((get_method(name).bind(operator), where))
    radius = options.radius
    nesterov = options.momentum == "nesterov"
    adaptive = options.step_schedule == "adaptive"
    left = None if preconditioner is None else preconditioner.to(dtype=operator.real_dtype)[None, :, None]
    # the U update U - step M^{-1} grad_U as one pass: U + descent * grad_U, descent = -step M^{-1}
    # (B, n or 1, 1), the spectral preconditioner M^{-1} acting on rows commutes with ScaledGD's on columns
    descent = (-step_u if left is None else -step_u * left).to(dtype)

    max_iters, every = options.max_iters, options.yield_every
    losses = torch.empty(max_iters + 1, batch, dtype=operator.real_dtype, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)  # problems still iterating
    all_active = True
    stopped_at = torch.full((batch,), max_iters, dtype=torch.int64, device=device)
    # momentum: the previous step's result x_k (U_prev, d_prev) and FISTA's t per problem
    U_prev, d_prev = U, d
    t = torch.ones(batch, dtype=operator.real_dtype, device=device)
    step_factor = torch.ones(batch, dtype=operator.real_dtype, device=device)  # adaptive schedule
    backoff = options.restart_backoff if nesterov else 1.0
    restart_factor = torch.ones(batch, dtype=operator.real_dtype, device=device)  # restart backoff
    step_u_now, step_d_now = descent, step_d  # the steps times both factors (recomputed when they change)
    # a problem leaves the start's plateau once its relative residual is below CONVERGENCE_MIN_PROGRESS;
    # momentum and the adaptive schedule start there. Until all have left it, the residual is computed
    # every iteration (and read on the host); afterwards only at yields (one pass less per iteration).
    off_plateau = torch.zeros(batch, dtype=torch.bool, device=device)
    watching_plateau = nesterov or adaptive
    relative = torch.ones(batch, dtype=operator.real_dtype, device=device)
    any_off_plateau = not watching_plateau  # (read on the host while watching)

    def snapshot(k, relative, elapsed, done):
        iterations = torch.where(active, torch.full_like(stopped_at, k), stopped_at)
        return SolverState(k, U.clone(), d.clone(), tau, losses[:k + 1] * loss_unit,
                           relative.clone(), elapsed, done, iterations,
                           None if calibration is None else calibration.calibration())

    def project(U_new, d_new):
        if len(groups) == 1:
            return groups[0][0].project(U_new, d_new, radius)
        U_out, d_out = U_new.clone(), d_new.clone()
        for method, rows in groups:
            U_out[rows], d_out[rows] = method.project(U_new[rows], d_new[rows], radius)
        return U_out, d_out

    last_good = None
    busy = 0.0  # seconds spent in the solver, not in the consumer between yields
    resumed = time.perf_counter()
    for k in range(max_iters + 1):
        # loss and G U of the current point: its loss, then (unless done) the step
        final = k == max_iters
        yielding = (k > 0 and k % every == 0) or final
        value, residual_sq, GU = operator.evaluate(U, d, b_normalized, loss, residual=yielding or watching_plateau)
        losses[k] = value
        if residual_sq is not None:
            relative = residual_sq.clamp_min(0).sqrt() / norm_b
            off_plateau |= relative < CONVERGENCE_MIN_PROGRESS
            if watching_plateau:
                any_off_plateau = bool(off_plateau.any())
                watching_plateau = not bool(off_plateau.all())
        if yielding:
            failure = solver_failure(U, d, losses[k], relative, options, method_names,
                                     getattr(operator, "blocks", None))
            if failure is not None:
                since = last_good.iteration if last_good is not None else 0
                raise SolverDivergedError(f"{failure[0]} between iterations {since} and {k}: {failure[1]}",
                                          last_good)
            if options.rel_tol > 0 and k > 0:
                start = max(k - every, 0)
                mean_change = (losses[start] - losses[k]).abs() / (losses[start].abs().clamp_min(1e-300) * (k - start))
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
        # pupil / brightness step from this pass, alternating with the factors' (gauge: see below)
        gauge = None if calibration is None else calibration.update(k, None if all_active else active)
        # gradients by method
        if len(groups) == 1:
            grad_U, grad_d = groups[0][0].gradients(U, d, GU)
        else:
            grad_U, grad_d = torch.empty_like(GU), torch.zeros_like(d)
            for method, rows in groups:
                g_U, g_d = method.gradients(U[rows], d[rows], GU[rows])
                grad_U[rows] = g_U
                if g_d is not None:
                    grad_d[rows] = g_d
        if options.scaled_lambda > 0:
            W = U * d.clamp_min(0).sqrt()[:, None, :].to(U.dtype)
            gram = W.mH @ W
            eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=device)
            factor, _ = torch.linalg.cholesky_ex(gram + options.scaled_lambda * eye)  # no device sync
            grad_U = torch.cholesky_solve(grad_U.mH, factor).mH
        factors_changed = False
        if adaptive and k >= STALL_WINDOW and k % STALL_WINDOW == 0:
            stalled = (losses[k - STALL_WINDOW] - losses[k]) < STALL_DECREASE * losses[k - STALL_WINDOW].abs()
            stalled &= off_plateau
            step_factor = torch.where(stalled, (step_factor / 2).clamp_min(MIN_STEP_FACTOR), step_factor)
            factors_changed = True
        # Nesterov restarts a problem (beta = 0) when its loss rose; with a backoff its steps shrink too
        rose = losses[k] > losses[k - 1] if nesterov and any_off_plateau and k > 0 else None
        if rose is not None and backoff < 1:
            restarted = rose & off_plateau
            if device.type != "cpu" or bool(restarted.any()):  # (reading it on the host is free on the CPU)
                shrunk = (restart_factor * backoff).clamp_min(MIN_RESTART_FACTOR)
                restart_factor = torch.where(restarted, shrunk, restart_factor)
                factors_changed = True
        if factors_changed:
            factor = step_factor * restart_factor
            step_u_now, step_d_now = descent * factor[:, None, None].to(dtype), step_d * factor[:, None]
        U_next = torch.addcmul(U, step_u_now, grad_U)
        d_next = d if grad_d is None else d - step_d_now * grad_d
        U_next, d_next = project(U_next, d_next)
        if nesterov:
            x_U, x_d = U_next, d_next
            if any_off_plateau:  # (while every problem is on the start's plateau, beta = 0: x_{k+1} itself)
                moving = off_plateau if rose is None else off_plateau & ~rose
                t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
                beta = torch.where(moving, (t - 1) / t_next, torch.zeros_like(t))
                t = torch.where(moving, t_next, torch.ones_like(t))
                # x + beta (x - x_prev) = lerp(x_prev, x, 1 + beta): one pass instead of three
                U_next = torch.lerp(U_prev, x_U, (1 + beta)[:, None, None].to(U.dtype))
                d_next = torch.lerp(d_prev, x_d, (1 + beta)[:, None])
                U_next, d_next = project(U_next, d_next)
                if watching_plateau:  # the problems still on it take x_{k+1} itself, as when solved alone
                    U_next = torch.where(off_plateau[:, None, None], U_next, x_U)
                    d_next = torch.where(off_plateau[:, None], d_next, x_d)
            if all_active:
                U_prev, d_prev = x_U, x_d
            else:
                U_prev = torch.where(active[:, None, None], x_U, U_prev)
                d_prev = torch.where(active[:, None], x_d, d_prev)
        if all_active:
            U, d = U_next, d_next
        else:  # converged problems keep their state, as if solved alone
            U = torch.where(active[:, None, None], U_next, U)
            d = torch.where(active[:, None], d_next, d)
        if gauge is not None:  # the pupil's tilt / scale gauges fixed: the object takes them (same loss)
            U, U_prev = U * gauge, U_prev * gauge


def solve(operator: LiftedOperator, b: torch.Tensor, options: SolverOptions, init=None) -> SolverState:
    """Run :func:`iterate` to the end and return the final state."""
    state = None
    for state in iterate(operator, b, options, init=init):  # noqa: B007 (the last one is kept)
        pass
    return state
