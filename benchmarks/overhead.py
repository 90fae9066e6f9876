"""Seconds per FP-256 iteration of this checkout against an earlier commit, in one run.

The issue's bar: the solver seam (losses, methods, preconditioner, momentum) may cost at most 15% per
iteration at ranks 1 and 8.  This script checks out ``--baseline`` (default: 7a2da57, the last commit
before the seam) into a temporary git worktree and times, in alternating subprocesses (so drift of
a shared machine hits both alike):

- the baseline's solver (intensity loss, plain gradient descent: its only algorithm),
- this checkout's ``paper`` preset (the same algorithm),
- this checkout's ``fast`` preset (amplitude loss, spectral preconditioner, Nesterov, frame start),

for BM and UDU at ranks 1 and 8.  Each run is the median over ``--repeats`` runs of ``--iterations``
iterations, after a warm-up run, of the solver's own clock (``state.elapsed``: the set-up power
iterations are excluded).  A round times the three once each, one after the other, so a ratio within
a round compares runs made under the same machine load: each ratio reported is the median over
``--rounds`` rounds of the round's ratio (an outlier run moves it less than a ratio of minima; the
milliseconds shown are each configuration's fastest round).  Writes ``benchmarks/results/overhead-<device>.{json,md}``.

Run::

    .venv/bin/python benchmarks/overhead.py [--baseline REV] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: Runs in a subprocess with the repository to time on sys.path (works with old and new APIs).
TIMER = r"""
import json, statistics, sys
root, config = sys.argv[1], json.loads(sys.argv[2])
sys.path[:0] = [root, root + "/benchmarks"]
import torch
from fp256 import fp_problem
from ptycho_app.lifting import LiftedFP
from ptycho_app.solvers import SolverOptions, iterate
acquisition, _, b = fp_problem(256, device=config["device"])
operator = LiftedFP(acquisition, device=config["device"])
skip = config.get("skip", 0)  # iterations run before the timed ones (a multiple of "iterations")
options = dict(method=config["method"], rank=config["rank"], max_iters=skip + config["iterations"],
               yield_every=config["iterations"])
preset = config.get("preset")
options = SolverOptions.preset(preset, **options) if preset else SolverOptions(**options)
times = []
for repeat in range(config["repeats"] + 1):
    started = 0.0
    for state in iterate(operator, b, options):
        if state.iteration == skip:
            started = state.elapsed
    if config["device"] == "cuda":
        torch.cuda.synchronize()
    if repeat:
        times.append((state.elapsed - started) / config["iterations"])
print(json.dumps(statistics.median(times)))
"""


def time_one(root, config) -> float:
    out = subprocess.run([sys.executable, "-c", TIMER, str(root), json.dumps(config)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="7a2da57")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (ratios: the median over rounds)")
    parser.add_argument("--skip", type=int, default=0,
                        help="iterations run before the timed ones, a multiple of --iterations (0: time the first "
                             "ones, which include the fast preset's per-iteration check for the end of the start's "
                             "plateau; 100: steady state); results go to overhead-<device>-from<skip>.*")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=["bm", "udu"], choices=["bm", "udu"])
    parser.add_argument("--out", default=None, help="result stem under benchmarks/results (default: "
                        "overhead-<device>[-from<skip>]; a subset of ranks or methods should name its own)")
    args = parser.parse_args(argv)
    if args.skip % args.iterations:
        parser.error("--skip must be a multiple of --iterations (the solver yields every --iterations)")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            rows = []
            for rank in args.ranks:
                for method in args.methods:
                    common = {"method": method, "rank": rank, "iterations": args.iterations,
                              "repeats": args.repeats, "device": args.device, "skip": args.skip}
                    runs = {"baseline": [], "paper": [], "fast": []}
                    for _ in range(args.rounds):
                        runs["baseline"].append(time_one(baseline, common))
                        runs["paper"].append(time_one(ROOT, {**common, "preset": "paper"}))
                        runs["fast"].append(time_one(ROOT, {**common, "preset": "fast"}))
                    row = {"method": method, "rank": rank, **{k: min(v) for k, v in runs.items()},
                           "runs": runs}
                    for name in ("paper", "fast"):
                        ratios = [a / b for a, b in zip(runs[name], runs["baseline"], strict=True)]
                        row[f"{name}_ratio"] = statistics.median(ratios)
                    rows.append(row)
                    print(f"{method} rank {rank}: baseline {row['baseline'] * 1e3:.1f} ms, paper "
                          f"{row['paper'] * 1e3:.1f} ms ({row['paper_ratio']:.2f}x), fast {row['fast'] * 1e3:.1f} ms "
                          f"({row['fast_ratio']:.2f}x)", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                           capture_output=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "baseline": args.baseline, "device": args.device,
               "iterations": args.iterations, "repeats": args.repeats, "rounds": args.rounds, "skip": args.skip}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (args.out or f"overhead-{args.device}" + (f"-from{args.skip}" if args.skip else ""))
    stem.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = [f"# Seconds per FP-256 iteration: this checkout vs {args.baseline} ({args.device})", "",
             f"Ratios: median over {args.rounds} alternating rounds of the round's ratio; ms: the fastest round; "
             f"each figure the median of {args.repeats} runs of "
             f"{args.iterations} iterations (solver clock)"
             + (f", timed after {args.skip} untimed iterations" if args.skip else ", from the start") + "."
             f" {machine['platform']}, torch {machine['torch']}, "
             f"{machine['threads']} threads.", "",
             "| method | rank | baseline ms | paper ms | paper / baseline | fast ms | fast / baseline |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['rank']} | {r['baseline'] * 1e3:.1f} | {r['paper'] * 1e3:.1f} | "
              f"{r['paper_ratio']:.2f} | {r['fast'] * 1e3:.1f} | {r['fast_ratio']:.2f} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
