"""The solver's options (losses, spectral preconditioner, momentum, starts, presets) against
independent truths: an alternating-projection step written in NumPy, the papers' updates written by
hand, dense eigendecompositions, one-by-one and rescaled solves."""

import numpy as np
import pytest
import torch

from ptycho_app.lifting import LiftedFP, MatrixCompletion
from ptycho_app.lifting.losses import EPS_RELATIVE, make_loss
from ptycho_app.physics import fp_intensities, object_to_spectrum
from ptycho_app.simulation import default_acquisition, reference_object
from ptycho_app.solvers import SolverOptions, iterate, problem_scale, solve
from ptycho_app.solvers.normalization import spectral_preconditioner, step_curvatures

from .test_operators import tiny_acquisition

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- helpers: the tiny FP problem and an independent NumPy FP model -----------------------------

@pytest.fixture(scope="module")
def tiny():
    """The tiny acquisition (n = 256, 9 frames of 8x8, aberrated pupil), its double-precision
    operator, three objects and their noise-free intensities (3, 9, 8, 8)."""
    acq = tiny_acquisition()
    obj = reference_object(16)
    objects = [obj, 0.5 * np.conj(obj), reference_object(16, amplitude_image="astronaut", phase_image="camera")]
    b = torch.as_tensor(np.stack([fp_intensities(o, acq) for o in objects]))
    return acq, LiftedFP(acq, dtype=torch.complex128), objects, b


def np_forward(x, acq):
    """psi_l = ifft2(ifftshift(P * window_l(S))) (M/N)^2 for every frame l: (L, M, M)."""
    M, N = acq.frame_size, acq.grid_size
    S = x.reshape(N, N)
    P = acq.pupil_function()
    fields = []
    for row, col in acq.window_centers - M // 2:
        fields.append(np.fft.ifft2(np.fft.ifftshift(P * S[row:row + M, col:col + M])) * (M / N) ** 2)
    return np.stack(fields)


def np_adjoint(fields, acq):
    """sum_l B_l^H y_l: (M/N)^2 conj(P) fftshift(fft2(y_l)) / M^2 added into window l: (n,)."""
    M, N = acq.frame_size, acq.grid_size
    P = acq.pupil_function()
    out = np.zeros((N, N), dtype=np.complex128)
    for (row, col), y in zip(acq.window_centers - M // 2, fields, strict=True):
        out[row:row + M, col:col + M] += (M / N) ** 2 * np.conj(P) * np.fft.fftshift(np.fft.fft2(y)) / M**2
    return out.ravel()


def np_jacobi(acq):
    """m = sum_l B_l^H B_l (diagonal): sum of (M/N)^4 |P|^2 / M^2 over the windows: (n,)."""
    M, N = acq.frame_size, acq.grid_size
    m = np.zeros((N, N))
    for row, col in acq.window_centers - M // 2:
        m[row:row + M, col:col + M] += (M / N) ** 4 * np.abs(acq.pupil_function()) ** 2 / M**2
    return m.ravel()


def last_state(operator, b, options, init=None):
    states = list(iterate(operator, b, options, init=init))
    return states[-1]


# ---- 5. one step with amplitude loss + spectral preconditioner is alternating projection --------

def test_amplitude_spectral_step_is_one_parallel_alternating_projection(tiny):
    """Amplitude loss, spectral preconditioner (alpha 0), BM rank 1, step 1, no momentum: one
    iteration from an explicit start equals one parallel AP step computed in NumPy (normalized
    units): psi_l = B_l x, psi'_l = sqrt(b_l) psi_l / |psi_l|, x_new = x + sum_l B_l^H (psi'_l -
    psi_l) / m with m = sum_l B_l^H B_l (x kept off the aperture), to 1e-6 relative (to rounding
    once the loss's eps is put into the modulus); the U curvature is then 1."""
    acq, operator, objects, b_all = tiny
    b = b_all[:1]
    tau, _ = problem_scale(operator, b)
    b_normalized = b / tau.reshape(-1, 1, 1, 1)
    # a start near the solution (30% complex perturbation of the true spectrum), non-zero off the aperture
    x_true = object_to_spectrum(torch.as_tensor(objects[0])).reshape(-1).numpy()
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(x_true.shape) + 1j * rng.standard_normal(x_true.shape)
    x0 = (x_true * (1 + 0.3 * noise) + 0.05 * np.abs(x_true).mean() * noise) / np.sqrt(float(tau))

    options = SolverOptions.preset("fast", method="bm", rank=1, loss="amplitude", precondition="spectral",
                                   precondition_alpha=0.0, momentum="none", step=1.0, max_iters=1,
                                   yield_every=1)
    U0 = torch.as_tensor(x0).reshape(1, -1, 1)
    d0 = torch.ones(1, 1, dtype=torch.float64)
    state = last_state(operator, b, options, init=(U0, d0))
    assert state.iteration == 1
    torch.testing.assert_close(state.scale, tau, rtol=1e-12, atol=0)

    # the AP step, in NumPy
    psi = np_forward(x0, acq)
    sqrt_b = np.sqrt(b_normalized[0].numpy())
    m = np_jacobi(acq)
    inside = m > 0

    def ap_step(psi_projected):
        x_new = x0.copy()
        x_new[inside] += np_adjoint(psi_projected - psi, acq)[inside] / m[inside]
        return x_new

    x_ap = ap_step(sqrt_b * psi / np.abs(psi))
    x_solver = state.U[0, :, 0].numpy()
    error = np.linalg.norm(x_solver - x_ap) / np.linalg.norm(x_ap)
    step_error = np.linalg.norm(x_solver - x_ap) / np.linalg.norm(x_ap - x0)
    assert error < 1e-6, f"solver vs AP: relative difference {error:.3e} (of the step: {step_error:.3e})"
    # what is left is the loss's eps (1e-6 x mean b, felt in the dark-field frames): with the modulus
    # replaced by sqrt(|psi|^2 + eps) the agreement is to rounding
    eps = EPS_RELATIVE * float(b_normalized.mean())
    x_ap_eps = ap_step(sqrt_b * psi / np.sqrt(np.abs(psi) ** 2 + eps))
    eps_error = np.linalg.norm(x_solver - x_ap_eps) / np.linalg.norm(x_ap_eps - x0)
    assert eps_error < 1e-10, f"solver vs AP with eps: relative difference of the steps {eps_error:.3e}"
    np.testing.assert_array_equal(x_solver[~inside], x0[~inside])  # off the aperture: untouched

    loss = make_loss("amplitude").bind(b_normalized)
    curvature_u, _ = step_curvatures(operator, b_normalized, loss, options.radius,
                                     spectral_preconditioner(operator, 0.0))
    assert abs(float(curvature_u[0]) - 1.0) < 1e-6, float(curvature_u[0])


# ---- 6. the paper preset is the papers' update ------------------------------------------------

@pytest.mark.parametrize("method", ["bm", "udu"])
def test_paper_preset_is_the_papers_update_by_hand(tiny, method):
    """Three iterations of the 'paper' preset equal a hand loop: U0 = xi randn / ||randn||_F (seed),
    d0 = 1, tau and curvature from problem_scale, (r, GU) from operator.residual_and_product on
    b / tau, then BM: U <- U - eta 2 G U; UDU: U <- P_ball(U - eta 2 G U diag(d)), d <- max(d -
    eta_d diag(U^* G U), 0), eta = step / curvature, eta_d = step_d / curvature; the losses are
    1/2 ||r||^2 tau^2.  A start of norm xi = 0.3 so that d moves visibly within three steps."""
    acq, operator, objects, b_all = tiny
    b = b_all[:1]
    xi, rank, seed, radius = 0.3, 2, 5, 0.5
    options = SolverOptions.preset("paper", method=method, rank=rank, xi=xi, seed=seed, radius=radius,
                                   max_iters=3, yield_every=1)
    assert (options.loss, options.precondition, options.momentum, options.init) == \
        ("intensity", "none", "none", "random")
    states = list(iterate(operator, b, options))
    assert [s.iteration for s in states] == [1, 2, 3]

    tau, curvature = problem_scale(operator, b)
    b_normalized = b / tau.reshape(-1, 1, 1, 1)
    draw = torch.randn(operator.n, rank, dtype=torch.complex128, generator=torch.Generator().manual_seed(seed))
    U = (xi * draw / torch.linalg.vector_norm(draw))[None]
    d = torch.ones(1, rank, dtype=torch.float64)
    step = {"bm": 0.25, "udu": 0.05}[method]
    eta, eta_d = step / curvature, 0.3 / curvature
    losses = []
    for k in range(3):
        residual, GU = operator.residual_and_product(U, d, b_normalized)
        losses.append((0.5 * residual.square().sum() * tau**2).reshape(()))
        if method == "bm":
            U = U - eta * 2 * GU
        else:
            grad_U = 2 * GU * d[:, None, :]
            grad_d = (U.conj() * GU).sum(dim=1).real
            U = U - eta * grad_U
            U = U * torch.clamp(radius / torch.linalg.vector_norm(U), max=1.0)
            d = torch.clamp(d - eta_d * grad_d, min=0.0)
        state = states[k]
        torch.testing.assert_close(state.U, U, rtol=1e-10, atol=1e-10 * float(U.abs().max()))
        torch.testing.assert_close(state.d, d, rtol=1e-10, atol=0)
        torch.testing.assert_close(state.losses[:k + 1, 0], torch.stack(losses), rtol=1e-10, atol=0)
    # the final loss, at the third iterate, by hand as well
    residual, _ = operator.residual_and_product(U, d, b_normalized)
    torch.testing.assert_close(states[-1].losses[-1, 0], (0.5 * residual.square().sum() * tau**2).reshape(()),
                               rtol=1e-10, atol=0)
    if method == "udu":
        assert float((d - 1).abs().max()) > 1e-4  # d did move: the check of its update has teeth


# ---- 7. batching and scale invariance with the fast preset ------------------------------------

FAST = dict(rank=2, max_iters=30, yield_every=10)


def test_fast_preset_batched_mixed_methods_equal_one_by_one(tiny):
    """Fast preset (amplitude, spectral, Nesterov, frame start), method = (bm, udu, bm): each
    problem's U, d and losses equal those of the same problem solved alone (to 1e-9)."""
    acq, operator, objects, b = tiny
    methods, seeds = ("bm", "udu", "bm"), (1, 2, 3)
    options = SolverOptions.preset("fast", method=methods, seed=seeds, **FAST)
    assert options.steps(3) == (1.0, 0.25, 1.0)
    batched = solve(operator, b, options)
    for k, method in enumerate(methods):
        alone = solve(operator, b[k:k + 1], SolverOptions.preset("fast", method=method, seed=(seeds[k],), **FAST))
        scale = float(alone.U.abs().max())
        torch.testing.assert_close(batched.U[k], alone.U[0], rtol=1e-9, atol=1e-9 * scale)
        torch.testing.assert_close(batched.d[k], alone.d[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.losses[:, k], alone.losses[:, 0], rtol=1e-9, atol=0)
    # the runs went somewhere: the losses fell by more than 10x (BM: ~1e-9 x, UDU ~0.04 x)
    assert bool((batched.losses[-1] < 0.1 * batched.losses[0]).all()), batched.losses[[0, -1]]


@pytest.mark.parametrize("method", ["bm", "udu"])
def test_fast_preset_is_scale_invariant(tiny, method):
    """b -> 1e4 b: the fast preset's normalized iterates (state.U, state.d) are unchanged (to 1e-8),
    the scale tau grows by 1e4 and the amplitude loss (scale power 1) by 1e4."""
    acq, operator, objects, b = tiny
    options = SolverOptions.preset("fast", method=method, **FAST)
    base = solve(operator, b[:2], options)
    scaled = solve(operator, 1e4 * b[:2], options)
    torch.testing.assert_close(scaled.U, base.U, rtol=1e-8, atol=1e-8 * float(base.U.abs().max()))
    torch.testing.assert_close(scaled.d, base.d, rtol=1e-8, atol=0)
    torch.testing.assert_close(scaled.scale, 1e4 * base.scale, rtol=1e-10, atol=0)
    torch.testing.assert_close(scaled.losses, 1e4 * base.losses, rtol=1e-8, atol=0)


# ---- 8. starts ---------------------------------------------------------------------------------

def _cos(a, b):
    return float(abs((a.conj() * b).sum()) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))


def test_spectral_start_is_the_top_eigenvector_fitted_by_least_squares(tiny):
    """init='spectral' (max_iters=0): the first column is parallel (|cos| > 1 - 1e-6) to the top
    eigenvector of the dense A^*(b / tau) (torch.linalg.eigh); BM scales it so that s v v^* fits
    b / tau by least squares (s = <A(v v^*), b> / ||A(v v^*)||^2, dense apply), UDU puts it on the
    ball (norm radius, d0 = 1); the random columns beyond the first are zero off the support."""
    acq, operator, objects, b = tiny
    b = b[:2]
    radius = 0.5
    options = SolverOptions.preset("paper", method=("bm", "udu"), init="spectral", rank=3, radius=radius,
                                   max_iters=0, seed=(7, 8))
    state = solve(operator, b, options)
    support = torch.as_tensor(operator.support())
    for k in range(2):
        b_normalized = b[k:k + 1] / state.scale[k]
        dense = operator.adjoint_dense(b_normalized)[0]
        eigenvalues, vectors = torch.linalg.eigh(dense)
        assert eigenvalues[-2] < 0.9 * eigenvalues[-1]  # a gap: the eigenvector is well defined
        top = vectors[:, -1]
        first = state.U[k, :, 0]
        assert _cos(first, top) > 1 - 1e-6, _cos(first, top)
        if k == 0:  # BM: least-squares scale
            unit = top[None, :, None]
            q = operator.apply_dense(unit @ unit.mH)
            s = float((q * b_normalized).sum() / q.square().sum())
            np.testing.assert_allclose(float(torch.linalg.vector_norm(first)) ** 2, s, rtol=1e-6)
        else:  # UDU: on the ball (the small random columns shave a hair off), d0 = 1
            np.testing.assert_allclose(float(torch.linalg.vector_norm(first)), radius, rtol=1e-5)
            assert float(torch.linalg.vector_norm(state.U[k])) <= radius * (1 + 1e-12)
        assert torch.equal(state.d[k], torch.ones(3, dtype=torch.float64))
        rest = state.U[k, :, 1:]
        assert bool((rest[~support] == 0).all()) and bool((rest[support] != 0).all())
        assert bool((first[~support] == 0).all())


def test_frame_start_is_the_on_axis_frame_through_the_pupil(tiny):
    """init='frame': the first column is parallel (|cos| > 1 - 1e-12) to LiftedFP.frame_start(b)
    masked to the support, which is itself B_0^H sqrt(b_0) for the on-axis frame (NumPy); UDU's
    first column has norm radius and d0 = 1; the random columns are zero off the support."""
    acq, operator, objects, b = tiny
    b = b[:2]
    radius = 0.5
    options = SolverOptions.preset("fast", method=("udu", "bm"), rank=2, radius=radius, max_iters=0, seed=(1, 2))
    assert options.init == "frame"
    state = solve(operator, b, options)
    support = torch.as_tensor(operator.support())
    j = int(np.argmin(np.hypot(*acq.direction_sines.T)))
    assert operator.on_axis_frame() == j == 4  # the centre of the 3x3 grid
    frame = operator.frame_start(b)
    for k in range(2):
        fields = np.zeros((acq.n_frames, acq.frame_size, acq.frame_size), dtype=np.complex128)
        fields[j] = np.sqrt(b[k, j].numpy())
        np.testing.assert_allclose(frame[k].numpy(), np_adjoint(fields, acq), rtol=1e-10,
                                   atol=1e-12 * float(frame[k].abs().max()))
        expected = frame[k] * support
        first = state.U[k, :, 0]
        assert _cos(first, expected) > 1 - 1e-12, _cos(first, expected)
        assert bool((state.U[k][~support] == 0).all())
        assert bool((state.U[k, :, 1][support] != 0).all())
        assert torch.equal(state.d[k], torch.ones(2, dtype=torch.float64))
    np.testing.assert_allclose(float(torch.linalg.vector_norm(state.U[0, :, 0])), radius, rtol=1e-5)


# ---- 9. clear errors ---------------------------------------------------------------------------

def _completion_problem():
    operator = MatrixCompletion.random(8, 40, rng=0, dtype=torch.float64)
    x = torch.randn(1, 8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return operator, operator.measure(x, torch.ones(1, 1, dtype=torch.float64))


@pytest.mark.parametrize("option,value,match", [
    ("precondition", "spectral", "precondition"),
    ("init", "frame", "init"),
])
def test_fp_only_options_on_matrix_completion_raise(option, value, match):
    """The spectral preconditioner and the frame start need FP: on matrix completion the solve
    raises ValueError naming the option (and the way out)."""
    operator, b = _completion_problem()
    options = SolverOptions.preset("paper", max_iters=1, rank=1, **{option: value})
    with pytest.raises(ValueError, match=match) as caught:
        solve(operator, b, options)
    assert "FP" in str(caught.value)


@pytest.mark.parametrize("loss", ["amplitude", "poisson"])
def test_non_negative_losses_reject_negative_measurements(tiny, loss):
    """Amplitude and Poisson losses on data with a negative value raise ValueError naming the loss;
    the intensity loss accepts it."""
    acq, operator, objects, b = tiny
    bad = b[:1].clone()
    bad[0, 0, 0, 0] = -1e-3
    with pytest.raises(ValueError, match=f"the {loss} loss needs non-negative"):
        solve(operator, bad, SolverOptions.preset("fast", loss=loss, max_iters=1, rank=1))
    solve(operator, bad, SolverOptions.preset("fast", loss="intensity", max_iters=1, rank=1))


@pytest.mark.parametrize("bad", [dict(loss="l1"), dict(momentum="heavy-ball"), dict(init="zeros"),
                                 dict(precondition="jacobi"), dict(step_schedule="cosine"),
                                 dict(precondition_alpha=-0.1), dict(precondition_alpha=1.5),
                                 dict(precondition_alpha=float("nan"))])
def test_unknown_option_values_are_rejected_with_the_option_named(bad):
    """Unknown loss/momentum/init/precondition/schedule names and precondition_alpha outside [0, 1]
    raise ValueError naming the option, directly and through a preset; alpha 0 and 1 are fine."""
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        SolverOptions(**bad)
    with pytest.raises(ValueError, match=name):
        SolverOptions.preset("fast", **bad)
    for alpha in (0.0, 1.0):
        assert SolverOptions(precondition_alpha=alpha).precondition_alpha == alpha
    with pytest.raises(ValueError, match="preset"):
        SolverOptions.preset("fastest")


# ---- 10. momentum and the adaptive schedule ----------------------------------------------------

@pytest.fixture(scope="module")
def small_problem():
    """32x32 object, 25 frames of 16x16: slow enough for plain AP that momentum shows."""
    acq = default_acquisition(frame_size=16, upsample=2, leds_per_side=5)
    b = torch.as_tensor(fp_intensities(reference_object(acq.grid_size), acq))[None]
    return LiftedFP(acq, dtype=torch.complex128), b


def test_nesterov_reaches_a_lower_loss(small_problem):
    """Fast preset, BM, rank 1, 60 iterations: with Nesterov momentum the loss ends at least 100x
    below plain steps (measured: ~2e-6 of it)."""
    operator, b = small_problem
    common = dict(method="bm", rank=1, max_iters=60, yield_every=60)
    plain = solve(operator, b, SolverOptions.preset("fast", momentum="none", **common))
    nesterov = solve(operator, b, SolverOptions.preset("fast", momentum="nesterov", **common))
    final_plain, final_nesterov = float(plain.loss[0]), float(nesterov.loss[0])
    assert final_nesterov < 1e-2 * final_plain, \
        f"nesterov {final_nesterov:.3e} vs plain {final_plain:.3e} (start {float(plain.losses[0, 0]):.3e})"


def test_restart_backoff_is_nesterov_with_shrinking_steps_by_hand(tiny):
    """BM, amplitude loss, Nesterov, a step (1.9) large enough to overshoot, restart_backoff 0.7: 25
    iterations equal a hand loop (to 1e-10): loss and G U from operator.evaluate on b / tau, the
    problem off the start plateau once its relative residual is below 0.5; at a restart (the loss
    rose, off the plateau) the step factor becomes max(0.7 factor, 0.5) and beta = 0, else FISTA's
    beta; U <- x + beta (x - x_prev), x = U - factor eta 2 G U.  The start is the solver's own (tested
    above).  Teeth: the run restarts, and without the backoff its iterates differ."""
    acq, operator, objects, b_all = tiny
    b = b_all[:1]
    common = dict(method="bm", rank=1, precondition="none", step=1.9, yield_every=1)
    options = SolverOptions.preset("fast", restart_backoff=0.7, max_iters=25, **common)
    states = list(iterate(operator, b, options))
    U = next(iter(iterate(operator, b, SolverOptions.preset("fast", max_iters=0, **common)))).U
    d = torch.ones(1, 1, dtype=torch.float64)

    tau, intensity_curvature = problem_scale(operator, b)
    b_normalized = b / tau.reshape(-1, 1, 1, 1)
    loss = make_loss("amplitude").bind(b_normalized)
    curvature, _ = step_curvatures(operator, b_normalized, loss, options.radius, None, intensity_curvature)
    eta = 1.9 / float(curvature[0])
    U_prev, t, factor, off_plateau, losses, restarts = U, 1.0, 1.0, False, [], 0
    for k in range(25):
        value, residual_sq, GU = operator.evaluate(U, d, b_normalized, loss, residual=True)
        losses.append(float(value[0]))
        off_plateau |= float(residual_sq[0].sqrt() / b_normalized.norm()) < 0.5
        restart = k > 0 and losses[k] > losses[k - 1]
        if restart and off_plateau:
            factor, restarts = max(0.7 * factor, 0.5), restarts + 1
        x = U - factor * eta * 2 * GU
        if off_plateau and not restart:
            t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
            beta, t = (t - 1) / t_next, t_next
        else:
            beta, t = 0.0, 1.0
        U, U_prev = x + beta * (x - U_prev), x
        state = states[k]
        torch.testing.assert_close(state.U, U, rtol=1e-10, atol=1e-10 * float(U.abs().max()))
        torch.testing.assert_close(state.losses[:k + 1, 0], torch.tensor(losses, dtype=torch.float64) * float(tau[0]),
                                   rtol=1e-10, atol=0)
    assert restarts >= 2 and factor < 1, (restarts, factor)
    plain = solve(operator, b, SolverOptions.preset("fast", restart_backoff=1.0, max_iters=25, **common))
    assert float((plain.U - states[-1].U).abs().max()) > 1e-3 * float(U.abs().max())


def test_restart_backoff_must_be_in_zero_one():
    for bad in (0.0, 1.5, float("nan"), -0.5):
        with pytest.raises(ValueError, match="restart_backoff must be in"):
            SolverOptions.preset("fast", restart_backoff=bad)


def test_adaptive_schedule_stays_sane(tiny):
    """step_schedule='adaptive' (fast preset, BM and UDU): every loss stays finite and never rises
    above 1.5x the start's; the run ends far below its start."""
    acq, operator, objects, b = tiny
    options = SolverOptions.preset("fast", method=("bm", "udu"), step_schedule="adaptive", rank=2,
                                   max_iters=40, yield_every=40)
    state = solve(operator, b[:2], options)
    losses = state.losses
    assert bool(torch.isfinite(losses).all())
    assert bool((losses.max(dim=0).values <= 1.5 * losses[0]).all()), losses.max(dim=0).values / losses[0]
    assert bool((losses[-1] < 1e-2 * losses[0]).all()), losses[[0, -1]]


def test_frame_start_with_a_dark_on_axis_frame_is_a_clear_error():
    """A dead on-axis LED would give a NaN start; the frame start says so and names the alternative."""
    operator = LiftedFP(tiny_acquisition(), dtype=torch.complex64)
    b = torch.rand(1, *operator.measurement_shape, generator=torch.Generator().manual_seed(3))
    b[:, operator.on_axis_frame()] = 0
    with pytest.raises(ValueError, match="on-axis frame .* is dark: use init 'spectral'"):
        solve(operator, b, SolverOptions.preset("fast", rank=1, max_iters=1))
