"""Solver mechanics: batching, scale invariance, stopping, divergence, options."""

import numpy as np
import pytest
import torch

from ptycho_app.lifting import LiftedFP, MatrixCompletion
from ptycho_app.physics import fp_intensities
from ptycho_app.simulation import reference_object
from ptycho_app.solvers import (
    SolverDivergedError,
    SolverOptions,
    initial_factors,
    iterate,
    largest_eigenvalue,
    solve,
)


@pytest.fixture(scope="module")
def fp_problem(small_acquisition):
    """Two different objects under the same acquisition, double precision."""
    N = small_acquisition.grid_size
    objects = [reference_object(N), np.conj(reference_object(N)) * 0.5]
    b = torch.as_tensor(np.stack([fp_intensities(o, small_acquisition) for o in objects]))
    return LiftedFP(small_acquisition, dtype=torch.complex128), b


@pytest.mark.parametrize("method", ["bm", "udu"])
def test_batched_solve_equals_one_by_one(fp_problem, method):
    operator, b = fp_problem
    options = SolverOptions(method=method, rank=3, max_iters=60, yield_every=20, seed=(4, 9))
    batched = solve(operator, b, options)
    for k in range(2):
        single = solve(operator, b[k:k + 1], SolverOptions(
            method=method, rank=3, max_iters=60, yield_every=20, seed=(options.seed[k],)))
        torch.testing.assert_close(batched.U[k], single.U[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.d[k], single.d[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.losses[:, k], single.losses[:, 0], rtol=1e-9, atol=0)


@pytest.mark.parametrize("method", ["bm", "udu"])
def test_normalization_makes_iterates_scale_free(fp_problem, method):
    """Scaling the data by c scales X by c and the loss by c^2; the normalized iterates do not
    change (the step needs no retuning between photon counts)."""
    operator, b = fp_problem
    options = SolverOptions(method=method, rank=2, max_iters=40, yield_every=40)
    base = solve(operator, b, options)
    scaled = solve(operator, 1e4 * b, options)
    torch.testing.assert_close(scaled.U, base.U, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(scaled.physical_weights(), 1e4 * base.physical_weights(), rtol=1e-8, atol=0)
    torch.testing.assert_close(scaled.losses, 1e8 * base.losses, rtol=1e-8, atol=0)


def test_largest_eigenvalue_matches_dense_eigh():
    op = MatrixCompletion.random(30, 300, rng=2, dtype=torch.float64)
    w = torch.randn(3, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dense = torch.linalg.eigvalsh(op.adjoint_dense(w))[:, -1]
    estimate = largest_eigenvalue(op, w, iterations=2000)
    torch.testing.assert_close(estimate, dense, rtol=1e-6, atol=0)


def test_initial_factors_follow_the_authors_start():
    U0, d0 = initial_factors(50, 4, 3, xi=1e-3, seed=7, dtype=torch.complex64, device="cpu")
    assert U0.shape == (3, 50, 4) and U0.dtype == torch.complex64
    np.testing.assert_allclose(torch.linalg.vector_norm(U0, dim=(1, 2)).numpy(), 1e-3, rtol=1e-6)
    assert torch.equal(d0, torch.ones(3, 4))
    # problem k uses seed + k: the second problem's start equals a lone start with seed 8
    alone, _ = initial_factors(50, 4, 1, xi=1e-3, seed=8, dtype=torch.complex64, device="cpu")
    assert torch.equal(U0[1], alone[0])


def test_generator_yields_every_k_and_flags_the_end(fp_problem):
    operator, b = fp_problem
    states = list(iterate(operator, b, SolverOptions(rank=2, max_iters=25, yield_every=10)))
    assert [s.iteration for s in states] == [10, 20, 25]
    assert [s.done for s in states] == [False, False, True]
    assert states[-1].losses.shape == (26, 2)  # X_0 ... X_25
    # the loss decreases overall from the small random start
    assert bool((states[-1].losses[-1] < states[-1].losses[0]).all())


def test_relative_tolerance_stops_early_but_not_on_the_starting_plateau(fp_problem):
    operator, b = fp_problem
    options = SolverOptions(rank=2, max_iters=3000, yield_every=10, rel_tol=3e-3)
    state = solve(operator, b, options)
    assert state.done and state.iteration < 3000
    # the small start sits on a plateau where the loss barely moves: no stop there
    assert bool((state.relative_residual < 0.5).all())
    stop = state.iterations
    for k in range(2):
        losses = state.losses[: stop[k] + 1, k]
        mean_change = (losses[-11] - losses[-1]) / (losses[-11] * 10)
        assert mean_change < 3e-3


def test_batched_solve_equals_one_by_one_with_early_stopping(fp_problem):
    """Problems that meet rel_tol at different iterations stop (and keep their state) separately."""
    operator, b = fp_problem
    options = dict(method="bm", rank=2, max_iters=3000, yield_every=10, rel_tol=3e-3)
    batched = solve(operator, b, SolverOptions(seed=(4, 9), **options))
    assert batched.iterations[0] != batched.iterations[1]
    for k in range(2):
        single = solve(operator, b[k:k + 1], SolverOptions(seed=((4, 9)[k],), **options))
        assert single.iteration == int(batched.iterations[k])
        torch.testing.assert_close(batched.U[k], single.U[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.relative_residual[k], single.relative_residual[0])


def test_non_finite_loss_raises_and_keeps_last_finite_state(fp_problem):
    """A step far past the stability limit diverges; the error carries the last state yielded
    before the loss became non-finite, and that state is finite."""
    operator, b = fp_problem
    options = SolverOptions(method="bm", rank=2, step=3.0, max_iters=400, yield_every=2)
    yielded = []
    with pytest.raises(SolverDivergedError, match="lower the step") as caught:
        for state in iterate(operator, b, options):
            yielded.append(state)
    assert len(yielded) >= 1, "diverged before the first yield: the test needs a gentler step"
    last = caught.value.state
    assert last.iteration == yielded[-1].iteration > 0
    torch.testing.assert_close(last.U, yielded[-1].U)
    assert torch.isfinite(last.U).all() and torch.isfinite(last.losses).all()


def test_udu_respects_its_constraints(fp_problem):
    operator, b = fp_problem
    options = SolverOptions(method="udu", rank=3, radius=0.5, max_iters=200, yield_every=50)
    for state in iterate(operator, b, options):
        norms = torch.linalg.vector_norm(state.U, dim=(1, 2))
        assert bool((norms <= 0.5 * (1 + 1e-12)).all())
        assert bool((state.d >= 0).all())


def test_measurements_must_match_operator(fp_problem):
    operator, b = fp_problem
    with pytest.raises(ValueError, match="operator expects"):
        solve(operator, b[:, :3], SolverOptions(max_iters=1))
    bad = b.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        solve(operator, bad, SolverOptions(max_iters=1))
    with pytest.raises(ValueError, match="no signal"):
        solve(operator, torch.zeros_like(b), SolverOptions(max_iters=1))


@pytest.mark.parametrize("bad", [dict(method="adam"), dict(rank=0), dict(rank="3"), dict(rank=2.5),
                                 dict(step=-1.0), dict(step=float("nan")), dict(xi=0.0),
                                 dict(radius=0.0), dict(yield_every=0), dict(step_d=0.0),
                                 dict(max_iters=10.5), dict(max_iters=True), dict(seed="a"),
                                 dict(seed=[1, 2.5]), dict(rel_tol=-1.0)])
def test_invalid_options_are_rejected_with_the_option_named(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        SolverOptions(**bad)


def test_numpy_integers_are_accepted_as_options():
    options = SolverOptions(rank=np.int64(3), max_iters=np.int32(5), seed=np.int64(2))
    assert (options.rank, options.max_iters, options.seed) == (3, 5, 2)
    assert type(options.rank) is int and type(options.seed) is int


def test_zero_iterations_yield_the_start(fp_problem):
    operator, b = fp_problem
    state = solve(operator, b, SolverOptions(rank=2, max_iters=0))
    assert state.done and state.iteration == 0 and state.losses.shape == (1, 2)
    assert bool((state.relative_residual > 0.99).all())


def test_options_round_trip_through_dict():
    options = SolverOptions(method="bm", rank=7, step=0.2, seed=(1, 2))
    assert SolverOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ValueError, match="unknown"):
        SolverOptions.from_dict({"rnk": 3})


def test_device_and_precision_selection():
    from ptycho_app.device import resolve_device, resolve_dtype

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    assert resolve_dtype("single") == torch.complex64
    assert resolve_dtype("double") == torch.complex128
    assert resolve_dtype("double", is_complex=False) == torch.float64


@pytest.mark.parametrize("precision", ["single", "double"])
def test_precision_is_preserved_through_the_solve(small_acquisition, small_object, precision):
    from ptycho_app.device import resolve_dtype

    dtype = resolve_dtype(precision)
    operator = LiftedFP(small_acquisition, dtype=dtype)
    b = torch.as_tensor(fp_intensities(small_object, small_acquisition))[None]
    state = solve(operator, b, SolverOptions(rank=2, max_iters=20, yield_every=10))
    assert state.U.dtype == dtype
    assert state.d.dtype == dtype.to_real() and state.losses.dtype == dtype.to_real()


def _tiny_fp_problem():
    from ptycho_app.physics import Acquisition, led_grid

    acq = Acquisition(wavelength=532e-9, na=0.08, magnification=4.0, camera_pixel=6.5e-6,
                      frame_size=8, upsample=2, led_positions=led_grid(3, 4e-3), led_distance=80e-3)
    operator = LiftedFP(acq, dtype=torch.complex128)
    b = torch.as_tensor(fp_intensities(reference_object(16), acq))[None]
    return operator, b


@pytest.mark.parametrize("method", ["bm", "udu"])
def test_one_iteration_is_the_documented_gradient_step(method):
    """One solver iteration equals a step computed independently: normalization from a dense
    eigendecomposition of A^*(b), gradients from torch.autograd, then the ball projection and the
    clip at 0 (UDU), from an overfitting start so that both are active."""
    operator, b = _tiny_fp_problem()
    options = SolverOptions(method=method, rank=4, max_iters=1, yield_every=1, radius=0.5,
                            step=0.05 if method == "udu" else 0.25, step_d=0.3)
    generator = torch.Generator().manual_seed(0)
    U0 = torch.randn(1, operator.n, 4, dtype=torch.complex128, generator=generator)
    # columns 1 and 3 repeat the heavy, overshooting columns 0 and 2 with tiny weights, so their
    # D gradient is positive and the clip at 0 is exercised
    U0[..., 1], U0[..., 3] = U0[..., 0], U0[..., 2]
    U0 = 0.5 * U0 / U0.norm()
    d0 = torch.tensor([[4000.0, 1e-20, 2500.0, 1e-20]], dtype=torch.float64) if method == "udu" \
        else torch.ones(1, 4, dtype=torch.float64)
    state = solve(operator, b, options, init=(U0, d0))

    lam = torch.linalg.eigvalsh(operator.adjoint_dense(b))[0, -1]
    tau = b.pow(2).sum() / lam
    curvature = lam / tau
    b_normalized = b / tau
    U = U0.clone().requires_grad_(True)
    d = d0.clone().requires_grad_(True)
    loss = 0.5 * (operator.measure(U, d) - b_normalized).pow(2).sum()
    loss.backward()
    torch.testing.assert_close(state.losses[0, 0], loss.detach() * tau**2, rtol=1e-10, atol=0)
    torch.testing.assert_close(state.scale[0], tau, rtol=1e-8, atol=0)
    U1 = U0 - options.step / curvature * U.grad
    if method == "bm":
        expected_U, expected_d = U1, d0
    else:
        assert U1.norm() > options.radius  # the projection is active
        expected_U = U1 * options.radius / U1.norm()
        expected_d = (d0 - options.step_d / curvature * d.grad).clamp(min=0)
        assert (expected_d == 0).sum() == 2 and (expected_d > 0).sum() == 2  # the clip is active
    torch.testing.assert_close(state.U, expected_U, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(state.d, expected_d, rtol=1e-7, atol=0)


def test_elapsed_counts_solver_time_only(fp_problem, monkeypatch):
    """A fake clock that only moves while the consumer works: the solver reports none of it."""
    from ptycho_app.solvers import factorized

    clock = {"now": 0.0}
    monkeypatch.setattr(factorized.time, "perf_counter", lambda: clock["now"])
    operator, b = fp_problem
    states = []
    for state in iterate(operator, b, SolverOptions(rank=2, max_iters=30, yield_every=10)):
        states.append(state)
        clock["now"] += 100.0  # a slow consumer (a GUI redraw, say)
    assert [s.elapsed for s in states] == [0.0, 0.0, 0.0]


def test_bm_and_udu_side_by_side_in_one_batch_equal_separate_solves(fp_problem):
    """method=("bm", "udu"): each problem takes its own method and default step, as if solved alone."""
    operator, b = fp_problem
    mixed_options = SolverOptions(method=("bm", "udu", "udu", "bm"), rank=3, max_iters=150, seed=(1, 2, 3, 4))
    assert mixed_options.step is None and mixed_options.steps(4) == (0.25, 0.05, 0.05, 0.25)
    both = torch.cat([b, b])
    mixed = solve(operator, both, mixed_options)
    for k, method in enumerate(mixed_options.method):
        alone = solve(operator, both[k:k + 1], SolverOptions(method=method, rank=3, max_iters=150, seed=(k + 1,)))
        assert torch.allclose(mixed.U[k], alone.U[0], rtol=1e-9, atol=1e-12)
        assert torch.allclose(mixed.d[k], alone.d[0], rtol=1e-9, atol=1e-12)
        assert torch.allclose(mixed.losses[:, k], alone.losses[:, 0], rtol=1e-9)
    assert torch.equal(mixed.d[[0, 3]], torch.ones(2, 3, dtype=mixed.d.dtype))  # BM keeps d = 1
    with pytest.raises(ValueError, match="method must be one of"):
        SolverOptions(method=("bm", "admm"))
