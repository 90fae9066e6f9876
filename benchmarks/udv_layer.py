"""UDV vs UV layer under SVD pruning: the numbers for issue 13's closing note.

The issue's bar: after pruning to the numerical rank, the UDV network keeps its test error within 5% of
the unpruned one with at most half the units, while the UV network pruned to the same size loses more.
This runs ``ptycho-app udv-demo``'s function with its default settings (rank-4 ReLU teacher, 40 inputs,
64 hidden, 32 units, 5000 SGD steps with momentum, UDV radius 2) for seeds 0, 1 and 2, prunes both first
layers to the UDV layer's numerical rank (largest gap of its singular values) and records both full
curves (test error vs units kept).  Writes ``benchmarks/results/udv_layer.{json,md}`` and, per seed, the
demo's PNG and JSON under ``benchmarks/results/udv_layer/``.

Run (about 30 s on one core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/udv_layer.py
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ptycho_app.nn_demo import run_udv_demo  # noqa: E402

SEEDS = (0, 1, 2)
RESULTS = ROOT / "benchmarks" / "results"


def main():
    torch.set_num_threads(1)
    runs = []
    for seed in SEEDS:
        r = run_udv_demo(RESULTS / "udv_layer" / f"seed{seed}", seed=seed, progress=False, verbose=False)
        kept = r["udv"]["numerical_rank"]
        udv_loss = r["udv"]["pruned_errors"][kept - 1] / r["udv"]["error"] - 1
        uv_loss = r["uv"]["pruned_errors"][kept - 1] / r["uv"]["error"] - 1
        runs.append(dict(seed=seed, units=r["settings"]["units"], kept=kept,
                         uv_numerical_rank=r["uv"]["numerical_rank"],
                         udv_error=r["udv"]["error"], udv_pruned_error=r["udv"]["pruned_errors"][kept - 1],
                         udv_increase=udv_loss, uv_error=r["uv"]["error"],
                         uv_pruned_error=r["uv"]["pruned_errors"][kept - 1], uv_increase=uv_loss,
                         udv_sigma_ratio=r["udv"]["singular_values"][kept] / r["udv"]["singular_values"][kept - 1],
                         uv_sigma_ratio=r["uv"]["singular_values"][kept] / r["uv"]["singular_values"][kept - 1],
                         bar_met=bool(udv_loss <= 0.05 and kept <= r["settings"]["units"] / 2 and uv_loss > udv_loss),
                         udv_curve=r["udv"]["pruned_errors"], uv_curve=r["uv"]["pruned_errors"],
                         udv_singular_values=r["udv"]["singular_values"],
                         uv_singular_values=r["uv"]["singular_values"],
                         train_seconds=r["udv"]["train_seconds"] + r["uv"]["train_seconds"],
                         figure=str(Path(r["figure"]).relative_to(ROOT))))
        print(f"seed {seed}: kept {kept}/{r['settings']['units']}: UDV {r['udv']['error']:.4g} -> "
              f"{runs[-1]['udv_pruned_error']:.4g} ({udv_loss:+.1%}), UV {r['uv']['error']:.4g} -> "
              f"{runs[-1]['uv_pruned_error']:.4g} ({uv_loss:+.1%})")
    settings = r["settings"]
    record = dict(settings={k: v for k, v in settings.items() if k != "seed"}, seeds=list(SEEDS), runs=runs,
                  machine=dict(python=platform.python_version(), torch=torch.__version__,
                               processor=platform.processor() or platform.machine()))
    (RESULTS / "udv_layer.json").write_text(json.dumps(record, indent=1))
    (RESULTS / "udv_layer.md").write_text(markdown(record))


def markdown(record):
    s = record["settings"]
    lines = [
        "# UDV vs UV layer under SVD pruning",
        "",
        f"`ptycho-app udv-demo` defaults: teacher `y = a^T relu(B C^T x + c)` with a rank-{s['teacher_rank']} "
        f"hidden weight, {s['in_features']} inputs, {s['hidden']} hidden, {s['n_train']} training / "
        f"{s['n_test']} test samples; students `Linear(relu(first(x)))`, `first` a UDV (radius {s['radius']}, "
        f"projected after each step) or UV layer of {s['units']} units; {s['steps']} SGD steps "
        f"(lr {s['lr']}, momentum {s['momentum']}, batch {s['batch']}); test error = MSE / variance.  Both first "
        "layers pruned (truncated SVD) to the UDV layer's numerical rank (largest singular-value gap).",
        "",
        "| seed | units kept | UDV error | UDV pruned | change | UV error | UV pruned | change | "
        "sigma_{k+1}/sigma_k UDV | UV | bar met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        lines.append(f"| {r['seed']} | {r['kept']} / {r['units']} | {r['udv_error']:.4g} | {r['udv_pruned_error']:.4g} "
                     f"| {r['udv_increase']:+.1%} | {r['uv_error']:.4g} | {r['uv_pruned_error']:.4g} | "
                     f"{r['uv_increase']:+.1%} | {r['udv_sigma_ratio']:.1e} | {r['uv_sigma_ratio']:.1e} | "
                     f"{'yes' if r['bar_met'] else 'no'} |")
    lines += ["", "Test error vs units kept (both curves, k = 1..8 and k = units):", "",
              "| seed | layer | " + " | ".join(f"k={k}" for k in range(1, 9)) + f" | k={s['units']} |",
              "|---|---|" + "---|" * 9]
    for r in record["runs"]:
        for name in ("udv", "uv"):
            curve = r[f"{name}_curve"]
            lines.append(f"| {r['seed']} | {name.upper()} | " + " | ".join(f"{e:.4g}" for e in curve[:8])
                         + f" | {curve[-1]:.4g} |")
    lines += ["", "Figures: " + ", ".join(f"`{r['figure']}`" for r in record["runs"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
