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
    assert states[-1].losses.shape == (25, 2)
    # the loss decreases overall from the small random start
    assert bool((states[-1].losses[-1] < states[-1].losses[0]).all())


def test_relative_tolerance_stops_early(fp_problem):
    operator, b = fp_problem
    state = solve(operator, b, SolverOptions(rank=2, max_iters=5000, yield_every=10, rel_tol=1e-3))
    assert state.done and state.iteration < 5000
    change = (state.losses[-2] - state.losses[-1]).abs() / state.losses[-2]
    assert bool((change < 1e-3).all())


def test_non_finite_loss_raises_and_keeps_last_finite_state(fp_problem):
    operator, b = fp_problem
    options = SolverOptions(method="bm", rank=2, step=50.0, max_iters=200, yield_every=5)
    with pytest.raises(SolverDivergedError, match="lower the step") as caught:
        solve(operator, b, options)
    last = caught.value.state
    assert torch.isfinite(last.U).all() and torch.isfinite(last.losses).all()
    assert last.iteration % 5 == 0


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


@pytest.mark.parametrize("bad", [dict(method="adam"), dict(rank=0), dict(step=-1.0), dict(xi=0.0),
                                 dict(radius=0.0), dict(yield_every=0), dict(step_d=0.0)])
def test_invalid_options_are_rejected(bad):
    with pytest.raises(ValueError):
        SolverOptions(**bad)


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
