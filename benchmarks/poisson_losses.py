"""The defaults with each loss on Poisson-noisy FP-256: the final error of the best loss next to the intensity loss's.

The issue's bar: with Poisson noise (1000 photons per bright-field pixel), state the best loss's final
error next to the intensity loss's.  The study (``benchmarks/study.py``, docs/study.md) measured this
before the fast preset's restart backoff; this runs the ``fast`` preset as it is now (backoff
included), changing only ``loss``, for BM and UDU at ranks 1 and 4, 1000 iterations, seeds 0-2 (the
seed sets the solver's start and the Poisson draw, as in the study).  Error: against the band-limited
truth, up to a global phase.  Writes ``benchmarks/results/poisson_losses.{json,md}``.

Run (after ``make setup``; about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/poisson_losses.py
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import study  # noqa: E402  (FP-256 Poisson problem and error helpers)

from ptycho_app.solvers.factorized import solve  # noqa: E402
from ptycho_app.solvers.options import SolverOptions  # noqa: E402

SEEDS = (0, 1, 2)
LOSSES = ("intensity", "amplitude", "poisson")
ITERATIONS = 1000


def final_error(problem, method, rank, loss, seed) -> float:
    options = SolverOptions.preset("fast", method=method, rank=rank, loss=loss, seed=seed, max_iters=ITERATIONS,
                                   yield_every=ITERATIONS)
    state = solve(problem.operator, problem.b, options)
    obj = study.object_from_factors(state.U.to(torch.complex128), state.physical_weights().to(torch.float64),
                                    problem.grid)[0].numpy()
    return study.relative_error(obj, problem.truth)


def main():
    rows = []
    for method in ("bm", "udu"):
        for rank in (1, 4):
            errors = {loss: [] for loss in LOSSES}
            for seed in SEEDS:
                problem = study.Problem.get(256, "poisson", seed)
                for loss in LOSSES:
                    errors[loss].append(final_error(problem, method, rank, loss, seed))
            row = {"method": method, "rank": rank, "errors": errors,
                   "mean": {loss: statistics.mean(v) for loss, v in errors.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "iterations": ITERATIONS, "seeds": list(SEEDS), "photons": study.PHOTONS}
    results = ROOT / "benchmarks" / "results"
    (results / "poisson_losses.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = ["# Poisson-noisy FP-256, the `fast` preset (restart backoff included) with each loss", "",
             f"{machine['platform']}, torch {machine['torch']}. {study.PHOTONS:g} photons per bright-field pixel; "
             f"final error after {ITERATIONS} iterations against the band-limited truth, mean over seeds "
             f"{', '.join(map(str, SEEDS))} (best in **bold**).", "",
             "| method | rank | " + " | ".join(f"{loss} loss" for loss in LOSSES) + " |",
             "|---|---|" + "---|" * len(LOSSES)]
    for row in rows:
        best = min(row["mean"], key=row["mean"].get)
        cells = [f"**{row['mean'][loss]:.4f}**" if loss == best else f"{row['mean'][loss]:.4f}" for loss in LOSSES]
        lines.append(f"| {row['method'].upper()} | {row['rank']} | " + " | ".join(cells) + " |")
    (results / "poisson_losses.md").write_text("\n".join(lines) + "\n")
    print("wrote benchmarks/results/poisson_losses.json and .md")


if __name__ == "__main__":
    main()
