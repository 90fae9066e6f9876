"""The blood smear (../shared, real measured data) with the default (fast) preset, rank 1 and rank 4.

For each rank: BM and UDU each solved alone (``ptycho-app reconstruct --method bm`` / ``udu``, so
the seconds are one method's; ``--method both`` would solve the pair in one batch at about twice
the cost per iteration), ``--iters`` iterations on the whole 128 x 128 red-channel field (512 x 512
object).  ``--extra`` passes more ``reconstruct`` flags (for example ``--pupil recover``).  Reports
the relative residual ``||A(X) - b|| / ||b||``, the eigenvalues, and when the loss settles: the first
iteration after which its relative change stays below 1e-4 per iteration, with the solver seconds
spent up to there (the run's solver time times that fraction).  Writes
``benchmarks/results/bloodsmear.{json,md}`` and ``docs/images/bloodsmear_fast_rank{1,4}.png``.

Run (after ``make setup``; needs ../shared)::

    .venv/bin/python benchmarks/bloodsmear.py [--iters 900] [--ranks 1 4] [--extra "--pupil recover"] [--tag pupil]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "fpm_bloodsmear_uconn"
SETTLED = 1e-4


def settle_iteration(loss: np.ndarray) -> int | None:
    """First k after which |loss[j+1] - loss[j]| / loss[j] < SETTLED for every j >= k (None: never)."""
    change = np.abs(np.diff(loss)) / np.abs(loss[:-1])
    above = np.nonzero(change >= SETTLED)[0]
    if len(above) == 0:
        return 0
    return int(above[-1] + 1) if above[-1] + 1 < len(change) else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=900)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--extra", default="", help="more reconstruct flags, one string")
    parser.add_argument("--tag", default="", help="suffix of the result and figure names")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"blood-smear data not found at {SHARED}")
    import torch

    from ptycho_app.cli import main as cli
    from ptycho_app.io.results import read_result

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        measurement = tmp / "red.h5"
        assert cli(["import", str(SHARED / "bloodsmear_red.mat"), "--illumination",
                    str(SHARED / "illumination_bloodsmear_red.csv"), "--frame-type", "intensity", "--na", "0.1",
                    "--magnification", "2", "--pixel-size", "1.845e-6", "--upsample", "4",
                    "--out", str(measurement)]) == 0
        for rank in args.ranks:
            out = tmp / f"rank{rank}"
            for method in ("bm", "udu"):
                assert cli(["reconstruct", str(measurement), "--preset", args.preset, "--method", method, "--rank",
                            str(rank), "--iters", str(args.iters), "--out", str(out), *args.extra.split()]) == 0
            paths = [out / "red.bm.h5", out / "red.udu.h5"]
            assert cli(["compare", *map(str, paths), "--out", str(out)]) == 0
            tag = f"_{args.tag}" if args.tag else ""
            figure = ROOT / "docs" / "images" / f"bloodsmear_{args.preset}{tag}_rank{rank}.png"
            shutil.copyfile(out / "red.comparison.png", figure)
            for path in paths:
                result = read_result(path)
                settled = settle_iteration(result.loss)
                seconds = float(result.attrs["seconds"])
                values = result.eigenvalues / result.eigenvalues[0]
                change = np.abs(np.diff(result.loss)) / np.abs(result.loss[:-1])
                tail = change[-50:]
                rows.append({"rank": rank, "method": result.method, "iterations": result.iterations,
                             "last50_mean_change": float(tail.mean()), "last50_max_change": float(tail.max()),
                             "loss_change_last100": float(result.loss[-101] / result.loss[-1] - 1)
                             if len(result.loss) > 100 else None,
                             "relative_residual": float(result.attrs["relative_residual"]),
                             "eigenvalues_relative": [float(v) for v in values],
                             "settled_at": settled,
                             "seconds_to_settle": None if settled is None else seconds * settled / result.iterations,
                             "seconds": seconds, "seconds_per_iteration": seconds / result.iterations,
                             "figure": str(figure.relative_to(ROOT))})
                print(json.dumps(rows[-1]), flush=True)
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "preset": args.preset, "iterations": args.iters, "extra": args.extra}
    name = "bloodsmear" + (f"-{args.tag}" if args.tag else "")
    results = ROOT / "benchmarks" / "results"
    (results / f"{name}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = [f"# Blood smear (red, 128 x 128 frames, 512 x 512 object), {args.preset} preset {args.extra}", "",
             f"{machine['platform']}, torch {machine['torch']}, {machine['threads']} threads. BM and UDU each solved "
             "alone: the seconds are one method's.", "",
             "| rank | method | relative residual | eigenvalues / lambda_1 | loss settles at (< 1e-4 / it.) | "
             "solver s to settle | relative change / it. over the last 50 (mean, max) | s / iteration |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        values = ", ".join(f"{v:.2g}" for v in r["eigenvalues_relative"])
        settle = "not within the run" if r["settled_at"] is None else f"iteration {r['settled_at']}"
        secs = "-" if r["seconds_to_settle"] is None else f"{r['seconds_to_settle']:.1f}"
        change = f"{r['last50_mean_change']:.1e}, {r['last50_max_change']:.1e}"
        lines.append(f"| {r['rank']} | {r['method']} | {r['relative_residual']:.3f} | {values} | {settle} | {secs} | "
                     f"{change} | {r['seconds_per_iteration']:.3f} |")
    (results / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote benchmarks/results/{name}.json and .md")


if __name__ == "__main__":
    main()
