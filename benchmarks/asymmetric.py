"""Asymmetric sensing: UDV exactly low rank, UV approximately; UV's error against the start size xi.

n1 = 40, n2 = 30, rank 2 (singular values 1, 2), m = 5 (n1 + n2) r = 700 Gaussian measurements
(fewer than the 1200 entries), full-width factors r = 30, paper preset (plain gradient descent from
``xi * randn``; UDV with ``||U||_F, ||V||_F <= radius / sqrt(2)``, ``D >= 0``).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/asymmetric.py   (writes benchmarks/results/asymmetric.{json,md})
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_app.analysis import factor_svd
from ptycho_app.problems import asymmetric_problem
from ptycho_app.solvers import SolverOptions, iterate

RESULTS = Path(__file__).parent / "results"
N1, N2, RANK = 40, 30, 2
M = 5 * (N1 + N2) * RANK


def finish(state, truth, k):
    """Relative error, sigma_3 / sigma_1 and sigma_1, sigma_2 of problem ``k``."""
    weights = state.physical_weights()
    values = factor_svd(state.U, weights, N1)[0][k].numpy()
    X = ((state.U[k, :N1] * weights[k]) @ state.U[k, N1:].T).numpy()
    return dict(relative_error=float(np.linalg.norm(X - truth) / np.linalg.norm(truth)),
                sigma3_over_sigma1=float(values[2] / values[0]), top=values[:2].tolist(),
                numerical_rank_1e10=int((values > 1e-10 * values[0]).sum()),
                relative_residual=float(state.relative_residual[k]), iterations=int(state.iteration))


def run(operator, b, truth, methods, xi, iterations):
    """Solve with ``methods`` side by side; also the max over the run of each problem's imbalance
    ``||U^T U - V^T V||_F / ||X*||_F`` (physical units)."""
    batch = len(methods)
    options = SolverOptions.preset("paper", method=methods if batch > 1 else methods[0], rank=N2, xi=xi,
                                   seed=(0,) * batch, max_iters=iterations, yield_every=50)
    worst = np.zeros(batch)
    start = time.perf_counter()
    for state in iterate(operator, b.expand(batch, -1), options):
        for k in range(batch):
            U, V = state.U[k, :N1], state.U[k, N1:]
            imbalance = float(torch.linalg.norm(U.T @ U - V.T @ V)) * float(state.scale[k]) / np.linalg.norm(truth)
            worst[k] = max(worst[k], imbalance)
    seconds = time.perf_counter() - start
    return [dict(method=m, xi=xi, max_imbalance=float(worst[k]), seconds=seconds, **finish(state, truth, k))
            for k, m in enumerate(methods)]


def main():
    torch.set_num_threads(1)
    operator, b, truth = asymmetric_problem(N1, N2, (1.0, 2.0), M, seed=0)
    side_by_side = run(operator, b, truth, ("uv", "udv"), 1e-3, 6000)
    sweep = [run(operator, b, truth, ("uv",), xi, 20000)[0] for xi in (1e-1, 1e-2, 1e-3)]
    report = {"problem": f"asymmetric sensing n1={N1} n2={N2} rank {RANK} (singular values 1, 2), m={M}, r={N2}, "
                         "float64, paper preset", "side_by_side": side_by_side, "uv_xi_sweep": sweep,
              "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "asymmetric.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Asymmetric sensing: {report['problem']}", "",
             "UV and UDV side by side (xi = 1e-3, 6000 iterations):", "",
             "| method | relative error | sigma_3 / sigma_1 | numerical rank (1e-10) | relative residual | "
             "max ||U^T U - V^T V||_F / ||X*||_F |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['relative_error']:.2e} | {r['sigma3_over_sigma1']:.2e} | "
              f"{r['numerical_rank_1e10']} | {r['relative_residual']:.2e} | {r['max_imbalance']:.2e} |"
              for r in side_by_side]
    lines += ["", "UV's error after convergence against the start size xi (20000 iterations):", "",
              "| xi | relative error | sigma_3 / sigma_1 | max ||U^T U - V^T V||_F / ||X*||_F | seconds |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['xi']:g} | {r['relative_error']:.2e} | {r['sigma3_over_sigma1']:.2e} | "
              f"{r['max_imbalance']:.2e} | {r['seconds']:.1f} |" for r in sweep]
    lines += ["", f"Written by benchmarks/asymmetric.py ({report['platform']}, torch {report['torch']}, "
              f"{report['threads']} thread)."]
    (RESULTS / "asymmetric.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
