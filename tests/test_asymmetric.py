"""Asymmetric sensing: the embedded operator, UV and UDV gradients, singular values, published behaviour."""

import numpy as np
import pytest
import torch

from ptycho_app import problems
from ptycho_app.analysis import factor_svd
from ptycho_app.io.results import read_result
from ptycho_app.lifting.asymmetric import AsymmetricSensing
from ptycho_app.lifting.losses import make_loss
from ptycho_app.solvers import SolverOptions, get_method, iterate

N1, N2 = 7, 5


def small_operator(m=30):
    return AsymmetricSensing.random(N1, N2, m, seed=1)


def factors(r=3, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(batch, N1 + N2, r, dtype=torch.float64, generator=generator)
    d = torch.rand(batch, r, dtype=torch.float64, generator=generator) + 0.5
    return W, d


def test_measure_and_adjoint_match_the_dense_embedding():
    operator = small_operator()
    W, d = factors()
    S = operator.embedded_matrices()
    dense = (W * d[:, None, :]) @ W.mT  # W D W^*: (B, n1 + n2, n1 + n2)
    expected = torch.einsum("mij,bij->bm", S, dense)
    np.testing.assert_allclose(operator.measure(W, d), expected, rtol=1e-12, atol=1e-12)
    # and against the definition <A_i, U D V^*> / sqrt(m) on the raw Gaussian matrices
    raw = torch.randn(30, N1, N2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    X = (W[:, :N1] * d[:, None, :]) @ W[:, N1:].mT
    np.testing.assert_allclose(operator.measure(W, d), torch.einsum("mij,bij->bm", raw, X) / np.sqrt(30),
                               rtol=1e-12, atol=1e-12)
    w = torch.randn(2, 30, dtype=torch.float64)
    np.testing.assert_allclose(operator.adjoint_apply(w, W), torch.einsum("bm,mij->bij", w, S) @ W,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["uv", "udv"])
def test_gradients_match_autograd(name):
    """The driver's gradients (method on the operator's G W) are those of 1/2 ||A(U D V^*) - b||^2."""
    operator = small_operator()
    W, d = factors()
    if name == "uv":
        d = torch.ones_like(d)
    b = torch.randn(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    method = get_method(name).bind(operator)
    _, _, GW = operator.evaluate(W, d, b, make_loss("intensity").bind(b))
    grad_W, grad_d = method.gradients(W, d, GW)

    U = W[:, :N1].clone().requires_grad_(True)
    V = W[:, N1:].clone().requires_grad_(True)
    dd = d.clone().requires_grad_(True)
    raw = torch.randn(30, N1, N2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) / np.sqrt(30)
    X = (U * dd[:, None, :]) @ V.mT
    loss = 0.5 * (torch.einsum("mij,bij->bm", raw, X) - b).square().sum()
    loss.backward()
    np.testing.assert_allclose(grad_W[:, :N1], U.grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_W[:, N1:], V.grad, rtol=1e-10, atol=1e-12)
    if name == "udv":
        np.testing.assert_allclose(grad_d, dd.grad, rtol=1e-10, atol=1e-12)
    else:
        assert grad_d is None


def test_udv_projection_keeps_each_block_in_its_ball():
    method = get_method("udv").bind(small_operator())
    W, d = factors()
    d[0, 0] = -1.0
    P, dp = method.project(W * 10, d, 0.5)
    for block in (P[:, :N1], P[:, N1:]):
        np.testing.assert_allclose(block.flatten(1).norm(dim=1), 0.5 / np.sqrt(2), rtol=1e-12)
    assert float(dp[0, 0]) == 0.0 and bool((dp >= 0).all())


def test_singular_values_from_factors_match_numpy():
    W, d = factors(r=9)  # r > n2: fewer singular values than columns
    d[0, 3] = 0.0
    values, left, right = factor_svd(W, d, N1)
    assert values.shape == (2, N2)
    for k in range(2):
        X = ((W[k, :N1] * d[k]) @ W[k, N1:].T).numpy()
        np.testing.assert_allclose(values[k], np.linalg.svd(X, compute_uv=False), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose((left[k] * values[k]) @ right[k].T, X, atol=1e-10)


def test_methods_refuse_the_wrong_kind_of_problem():
    operator, b, _ = problems.asymmetric_problem(6, 4, (1.0,), m=40)
    with pytest.raises(ValueError, match="method bm does not fit an asymmetric"):
        next(iterate(operator, b, SolverOptions(method="bm", rank=2, max_iters=1)))
    sensing, b2, _ = problems.sensing_problem(n=6, eigenvalues=(1.0,), m=40)
    with pytest.raises(ValueError, match="method udv does not fit a symmetric"):
        next(iterate(sensing, b2, SolverOptions(method="udv", rank=2, max_iters=1)))


def test_published_behaviour_udv_exact_uv_approximate():
    """n1 = 20, n2 = 15, rank 2 (singular values 1, 2), m = 5 (n1 + n2) r, full-width factors, paper preset."""
    n1, n2 = 20, 15
    operator, b, truth = problems.asymmetric_problem(n1, n2, (1.0, 2.0), m=5 * (n1 + n2) * 2, seed=0)
    options = SolverOptions.preset("paper", method=("uv", "udv"), rank=n2, seed=(0, 0), max_iters=3000,
                                   yield_every=100)
    worst_imbalance = 0.0  # max over the run of ||U^T U - V^T V||_F / ||X*||_F (physical units)
    for state in iterate(operator, b.expand(2, -1), options):
        U, V = state.U[0, :n1], state.U[0, n1:]
        imbalance = float(torch.linalg.norm(U.T @ U - V.T @ V)) * float(state.scale[0]) / np.linalg.norm(truth)
        worst_imbalance = max(worst_imbalance, imbalance)
    weights = state.physical_weights()
    values = factor_svd(state.U, weights, n1)[0].numpy()
    for k in range(2):
        X = ((state.U[k, :n1] * weights[k]) @ state.U[k, n1:].T).numpy()
        assert np.linalg.norm(X - truth) / np.linalg.norm(truth) < 1e-2
        np.testing.assert_allclose(values[k, :2], [2.0, 1.0], rtol=1e-2)
    assert values[1, 2] / values[1, 0] < 1e-10  # UDV: exactly rank 2
    assert values[0, 2] / values[0, 0] > 1e-6  # UV: a tail
    assert worst_imbalance < 1e-2  # UV's implicit balancing


def test_sense_asymmetric_writes_singular_values(tmp_path):
    from ptycho_app.report import compare_results, describe_result
    from ptycho_app.sense import run_sense
    from ptycho_app.session import RunOptions

    paths = run_sense(problem="asymmetric", shape=(6, 4), truth_rank=1, run=RunOptions(preset="paper",
                      precision="double"), out_dir=tmp_path, progress=False, max_iters=400)
    assert [p.name for p in paths] == ["asymmetric-6x4-r1-m50.uv.h5", "asymmetric-6x4-r1-m50.udv.h5"]
    result = read_result(paths[1])
    assert result.eigenvalues is None and result.singular_values.shape == (4,)
    assert result.blocks == (6, 4) and result.reference_matrix.shape == (6, 4)
    np.testing.assert_allclose(result.singular_values[0], np.linalg.svd(result.reference_matrix)[1][0], rtol=1e-2)
    assert "singular values: sigma_1 = " in describe_result(result)
    rows = compare_results(paths, tmp_path)["rows"]
    assert all(row["relative_error"] < 1e-2 for row in rows)


def test_sense_asymmetric_bad_input_is_one_line(tmp_path, capsys):
    from ptycho_app.cli import main

    assert main(["sense", "--problem", "asymmetric", "--shape", "6", "0", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ptycho-app sense: error: --shape must be two positive integers N1 N2, got [6, 0]"]
    assert main(["sense", "--problem", "asymmetric", "--method", "udu", "--out", str(tmp_path / "o")]) == 2
    assert "method udu does not fit an asymmetric (U V^*) problem; use uv or udv" in capsys.readouterr().err
