"""Gunasekar et al. (2017): BM from a small start reaches the minimum nuclear-norm solution.

Runs ``ptycho-app sense --problem sensing --n 50 --truth-rank 2 --measurements 300 --reference nuclear``
(real, noise-free, the ``paper`` preset, factor rank n = 50) through :func:`ptycho_app.sense.run_sense`
with ``--xi 1e-3`` and ``--xi 1e-1``, and records ``||X - X_nuc||_F / ||X_nuc||_F`` for BM and UDU
(the issue's target: BM from xi = 1e-3 within 5 %, and closer than from xi = 1e-1), each method's
error to the truth and its final relative residual.  At m = 300 (3x the 99 degrees of freedom of a
rank-2 50 x 50 matrix) X_nuc is the truth itself, so a second, more under-determined row
(``--measurements 100``, where X_nuc differs from the truth) shows BM tracking X_nuc rather than the truth.
Writes ``benchmarks/results/nuclear.{json,md}``.

Run (after ``make setup`` with the validate extra; about 6 minutes on one core)::

    .venv/bin/python benchmarks/nuclear.py
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from ptycho_app.io.results import read_result  # noqa: E402
from ptycho_app.report import physical_matrix  # noqa: E402
from ptycho_app.sense import run_sense  # noqa: E402
from ptycho_app.session import RunOptions  # noqa: E402

N, RANK = 50, 2
CASES = ((300, 1e-3), (300, 1e-1), (100, 1e-3), (100, 1e-1))
ITERS = 10000
#: What the measured table shows (seed 0; re-check after a change of the solvers).
NOTE = ('At m = 300 (3x the 99 degrees of freedom of rank 2) X_nuc is the truth (SCS: 3.5e-9 from it), so the'
        " check is BM's distance to the truth: 1.3e-3 from xi = 1e-3 (within 5 %), 6.4e-2 from xi = 1e-1 (a c"
        'onverged fit, residual 1e-11, with a larger nuclear norm 3.159). At m = 100 X_nuc (nuclear norm 2.52'
        '0) differs from the truth and BM, though it fits the data exactly with a nuclear norm (2.667) below '
        "the truth's, lands 0.41 (xi = 1e-3) and 0.37 (xi = 1e-1) from X_nuc: the claim is not seen there at "
        'these starts. UDU at m = 100 has not converged in 10000 iterations (residual 3.6e-3).')


def measure(m, xi):
    """One ``sense --reference nuclear`` run: per method, distances to X_nuc and to the truth."""
    with tempfile.TemporaryDirectory() as out:
        paths = run_sense("sensing", n=N, truth_rank=RANK, measurements=m, run=RunOptions(preset="paper",
                          precision="double"), out_dir=out, progress=False, reference="nuclear", xi=xi,
                          max_iters=ITERS)
        rows = []
        for path in paths:
            r = read_result(path)
            X, truth = physical_matrix(r), r.reference_matrix
            rows.append({"m": m, "xi": xi, "method": r.method, "iterations": int(r.attrs["iterations"]),
                         "nuclear_reference_error": float(r.attrs["nuclear_reference_error"]),
                         "error_to_truth": float(np.linalg.norm(X - truth) / np.linalg.norm(truth)),
                         "relative_residual": float(r.attrs["relative_residual"]),
                         "nuclear_norm": float(np.abs(np.linalg.eigvalsh((X + X.T) / 2)).sum()),
                         "reference_nuclear_norm": float(r.attrs["nuclear_reference_norm"]),
                         "truth_nuclear_norm": float(np.abs(np.linalg.eigvalsh(truth)).sum()),
                         "reference_status": str(r.attrs["nuclear_reference_status"]),
                         "reference_solver": str(r.attrs["nuclear_reference_solver"])})
        return rows


def main():
    rows = []
    for m, xi in CASES:
        rows += measure(m, xi)
        for row in rows[-2:]:
            print(row, flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    info = {"n": N, "truth_rank": RANK, "iterations": ITERS, "preset": "paper", "factor_rank": N, "seed": 0,
            "python": platform.python_version(), "rows": rows}
    (out / "nuclear.json").write_text(json.dumps(info, indent=2) + "\n")
    lines = ["# BM vs the minimum nuclear-norm solution (Gunasekar et al. 2017)", "",
             f"n = {N}, truth rank {RANK} (eigenvalues 1, 2), real Gaussian sensing, noise-free, `paper` preset, "
             f"factor rank {N}, {ITERS} iterations, seed 0. X_nuc: cvxpy, min trace(X) s.t. A(X) = b, X PSD "
             f"({rows[0]['reference_solver']}).", "",
             "| m | xi | method | ‖X − X_nuc‖/‖X_nuc‖ | ‖X − X_true‖/‖X_true‖ | ‖X‖_* | ‖X_nuc‖_* | ‖X_true‖_* "
             "| rel. residual |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['m']} | {r['xi']:g} | {r['method'].upper()} | {r['nuclear_reference_error']:.3e} | "
              f"{r['error_to_truth']:.3e} | {r['nuclear_norm']:.5f} | {r['reference_nuclear_norm']:.5f} | "
              f"{r['truth_nuclear_norm']:.5f} | {r['relative_residual']:.2e} |" for r in rows]
    lines += ["", NOTE]
    (out / "nuclear.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
