"""The defaults on noise-free FP-256: error at ranks 1 and 4, BM vs UDU lambda_2 / lambda_1 at rank 4.

The issue's bars: with the default settings, BM and UDU at ranks 1 and 4 reach 1% error within 300
iterations and 0.3% within 1000; UDU keeps lambda_2 / lambda_1 < 1e-6 at rank 4 and BM's stays > 1e-4
(the comparison the app exists for survives the speed-up).  This runs
``SolverOptions.preset("fast", method=..., rank=..., seed=...)`` unchanged (500 iterations, as
``reconstruct`` does) for 3 seeds, and also reads lambda_2 / lambda_1 and the error at iterations 300
and 1000 (a longer run than the default), because on exact rank-one data BM's surplus eigenvalues
keep shrinking as its fit converges (about like 1 / iteration), while UDU's sit at the float32
floor from iteration 50 on.  Writes ``benchmarks/results/contrast.{json,md}``.

Run (after ``make setup``; about 3 minutes on one core)::

    .venv/bin/python benchmarks/contrast.py
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import study  # noqa: E402  (FP-256 problem, error and eigenvalue helpers)

from ptycho_app.solvers.factorized import iterate  # noqa: E402
from ptycho_app.solvers.options import SolverOptions  # noqa: E402

SEEDS = (0, 1, 2)
CHECKPOINTS = (100, 300, 500, 1000)
RANKS = (1, 4)


def measure(problem, method, seed, rank=4):
    """lambda_2 / lambda_1 (rank > 1) and error at each checkpoint of one run (the defaults, run on to 1000)."""
    defaults = SolverOptions.preset("fast", method=method, rank=rank, seed=seed)
    options = SolverOptions.preset("fast", method=method, rank=rank, seed=seed, max_iters=max(CHECKPOINTS),
                                   yield_every=defaults.yield_every)
    rows = []
    for state in iterate(problem.operator, problem.b, options):
        if state.iteration in CHECKPOINTS:
            weights = state.physical_weights()
            obj = study.object_from_factors(state.U.to(torch.complex128), weights.to(torch.float64),
                                            problem.grid)[0].numpy()
            ratio, tail, _ = study.eigen_summary(state.U, weights)
            rows.append({"method": method, "rank": rank, "seed": seed, "iteration": state.iteration,
                         "is_default_end": state.iteration == defaults.max_iters,
                         "error": study.relative_error(obj, problem.truth), "lambda2_over_lambda1": ratio,
                         "tail_share": tail})
    return rows


def main():
    torch.set_num_threads(1)
    problem = study.Problem.get(256, "none", 0)
    rows = []
    for rank in RANKS:
        for seed in SEEDS:
            for method in ("bm", "udu"):
                rows += measure(problem, method, seed, rank)
                print(json.dumps(rows[-1]), flush=True)
    default_iters = SolverOptions.preset("fast").max_iters
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": 1,
               "default_iterations": default_iters}
    results = ROOT / "benchmarks" / "results"
    (results / "contrast.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = ["# The defaults (`fast` preset) on noise-free FP-256: error at ranks 1 and 4, lambda_2 / lambda_1 at "
             "rank 4", "",
             f"{machine['platform']}, torch {machine['torch']}. The defaults stop at iteration {default_iters} "
             "(marked **bold**); 1000 is a longer run. Per seed: error against the band-limited truth, "
             "lambda_2 / lambda_1 (rank 4).", "",
             "| method | rank | iteration | " + " | ".join(f"seed {s}: error, λ2/λ1" for s in SEEDS) + " |",
             "|---|---|---|" + "---|" * len(SEEDS)]
    for rank in RANKS:
        for method in ("bm", "udu"):
            for it in CHECKPOINTS:
                cells = []
                for seed in SEEDS:
                    row = next(r for r in rows if r["method"] == method and r["rank"] == rank and r["seed"] == seed
                               and r["iteration"] == it)
                    ratio = row["lambda2_over_lambda1"]
                    cells.append(f"{row['error']:.2e}" + ("" if ratio is None else f", {ratio:.2e}"))
                label = f"**{it}**" if it == default_iters else str(it)
                lines.append(f"| {method} | {rank} | {label} | " + " | ".join(cells) + " |")
    (results / "contrast.md").write_text("\n".join(lines) + "\n")
    print("wrote benchmarks/results/contrast.json and .md")


if __name__ == "__main__":
    main()
