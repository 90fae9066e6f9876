"""The minimum nuclear-norm reference (cvxpy) and Gunasekar et al.'s claim that BM from a small start reaches it."""

import importlib.util
import sys

import numpy as np
import pytest

from ptycho_app.cli import main
from ptycho_app.io.results import read_result
from ptycho_app.problems import sensing_problem
from ptycho_app.reference import nuclear_norm_reference
from ptycho_app.sense import run_sense
from ptycho_app.session import RunOptions

needs_cvxpy = pytest.mark.skipif(importlib.util.find_spec("cvxpy") is None,
                                 reason="cvxpy is not installed: pip install 'ptycho-app[validate]'")


def nuclear_norm(X):
    return np.abs(np.linalg.eigvalsh((X + X.T) / 2)).sum()


@needs_cvxpy
@pytest.mark.parametrize("psd", [True, False])
def test_reference_fits_the_measurements_with_no_larger_nuclear_norm(psd):
    # m = 18 < 55 unknowns of a symmetric 10 x 10 matrix: under-determined, and below what rank 2 needs.
    operator, b, truth = sensing_problem(10, (1.0, 2.0), 18, seed=3)
    found = nuclear_norm_reference(operator, b, psd=psd)
    assert found.status == "optimal"
    A = operator.matrices.numpy().reshape(18, -1)
    bb = b[0].numpy()
    assert np.linalg.norm(A @ found.X.ravel() - bb) <= 1e-6 * np.linalg.norm(bb)
    assert found.nuclear_norm <= nuclear_norm(truth) + 1e-6
    assert found.nuclear_norm < nuclear_norm(truth) - 1e-2  # here the truth is not the minimizer
    if psd:
        assert np.linalg.eigvalsh(found.X)[0] >= -1e-6


@needs_cvxpy
def test_enough_measurements_recover_the_truth():
    operator, b, truth = sensing_problem(10, (1.0, 2.0), 60, seed=0)
    found = nuclear_norm_reference(operator, b)
    assert np.linalg.norm(found.X - truth) <= 1e-5 * np.linalg.norm(truth)


@needs_cvxpy
def test_bm_from_a_small_start_is_closer_to_the_nuclear_norm_solution(tmp_path):
    errors = {}
    for xi in (1e-3, 3e-1):
        paths = run_sense("sensing", n=10, truth_rank=2, measurements=24, run=RunOptions(
            method="bm", preset="paper", precision="double"), out_dir=tmp_path / f"xi{xi:g}", progress=False,
            reference="nuclear", xi=xi, max_iters=10000, seed=3)
        result = read_result(paths[0])
        errors[xi] = result.attrs["nuclear_reference_error"]
        assert result.attrs["relative_residual"] < 1e-3  # both fit the data: they differ in which solution
        assert (tmp_path / f"xi{xi:g}" / "sensing-n10-r2-m24.nuclear.npy").is_file()
    assert errors[1e-3] < 0.05
    assert errors[1e-3] < errors[3e-1] / 2  # measured: 0.037 and 0.114


def test_reference_on_other_problems_is_one_line_error(capsys, tmp_path):
    code = main(["sense", "--problem", "completion", "--n", "8", "--truth-rank", "1", "--reference", "nuclear",
                 "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--problem sensing" in err


def test_reference_with_noise_is_refused_before_the_solve(capsys, tmp_path):
    code = main(["sense", "--problem", "sensing", "--n", "8", "--truth-rank", "1", "--noise", "0.01",
                 "--reference", "nuclear", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "noise-free" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@needs_cvxpy
def test_cli_reports_each_method_against_the_reference(capsys, tmp_path):
    code = main(["sense", "--problem", "sensing", "--n", "8", "--truth-rank", "1", "--reference", "nuclear",
                 "--iters", "300", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "status optimal" in out and "BM: ||X - X_nuc||_F / ||X_nuc||_F = " in out and "UDU: " in out
    reference = np.load(tmp_path / "sensing-n8-r1-m40.nuclear.npy")
    assert reference.shape == (8, 8)
    for method in ("bm", "udu"):
        attrs = read_result(tmp_path / f"sensing-n8-r1-m40.{method}.h5").attrs
        assert 0 <= attrs["nuclear_reference_error"] < 1


def test_missing_cvxpy_is_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # import cvxpy raises ImportError
    code = main(["sense", "--problem", "sensing", "--n", "8", "--truth-rank", "1", "--reference", "nuclear",
                 "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'ptycho-app[validate]'" in err
    assert not list(tmp_path.glob("*.h5"))  # refused before the solve
