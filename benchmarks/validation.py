"""Numbers behind the published-behaviour tests: eigenvalue tails, errors, time per iteration.

Run: .venv/bin/python benchmarks/validation.py   (writes benchmarks/results/validation.{json,md})
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_app.analysis import factor_eigh, numerical_rank, object_from_factors, relative_error
from ptycho_app.lifting import LiftedFP
from ptycho_app.physics import band_limit, fp_intensities
from ptycho_app.problems import completion_problem
from ptycho_app.simulation import default_acquisition, reference_object
from ptycho_app.solvers import SolverOptions, solve

RESULTS = Path(__file__).parent / "results"


def completion():
    n = 100
    operator, b, truth = completion_problem(n=n, eigenvalues=(1.0, 2.0, 3.0), m=900, seed=0)
    rows = []
    for method in ("udu", "bm"):
        options = SolverOptions(method=method, rank=n, xi=1e-3, max_iters=6000, yield_every=1000)
        state = solve(operator, b, options)
        weights = state.physical_weights()
        values = factor_eigh(state.U, weights)[0][0].numpy()
        X = (state.U[0] * weights[0]) @ state.U[0].T
        rows.append(dict(problem="completion n=100 r*=3 m=900 (float64, r=100)", method=method,
                         step=options.step, step_d=options.step_d, radius=options.radius,
                         iterations=state.iteration, relative_residual=float(state.relative_residual[0]),
                         relative_error=float(np.linalg.norm(X.numpy() - truth) / np.linalg.norm(truth)),
                         top=values[:3].tolist(), tail=float(values[3] / values[0]),
                         numerical_rank_1e12=numerical_rank(values, 1e-12),
                         ms_per_iteration=1e3 * state.elapsed / state.iteration))
    return rows


def fp(frame_size, upsample, leds, precision, iterations):
    acquisition = default_acquisition(frame_size=frame_size, upsample=upsample, leds_per_side=leds)
    N = acquisition.grid_size
    obj = reference_object(N)
    truth = band_limit(obj, acquisition)
    dtype = torch.complex64 if precision == "single" else torch.complex128
    operator = LiftedFP(acquisition, dtype=dtype)
    b = torch.as_tensor(fp_intensities(obj, acquisition)).to(dtype.to_real())[None]
    rows = []
    for method in ("udu", "bm"):
        options = SolverOptions(method=method, rank=4, max_iters=iterations, yield_every=500)
        state = solve(operator, b, options)
        U, weights = state.U.to(torch.complex128), state.physical_weights().to(torch.float64)
        values = factor_eigh(U, weights)[0][0].numpy()
        rec = object_from_factors(U, weights, N)[0].numpy()
        rows.append(dict(problem=f"FP {N}x{N} from {frame_size}x{frame_size}, {leds}x{leds} LEDs ({dtype})",
                         method=method, step=options.step, step_d=options.step_d, radius=options.radius,
                         iterations=state.iteration, relative_residual=float(state.relative_residual[0]),
                         relative_error=relative_error(rec, truth), top=values[:1].tolist(),
                         tail=float(values[1] / values[0]), numerical_rank_1e12=numerical_rank(values, 1e-12),
                         ms_per_iteration=1e3 * state.elapsed / state.iteration))
    return rows


def main():
    torch.manual_seed(0)
    started = time.time()
    rows = completion() + fp(16, 2, 5, "single", 6000) + fp(16, 4, 7, "single", 4000)
    machine = dict(platform=platform.platform(), processor=platform.processor(),
                   cpu_threads=torch.get_num_threads(), torch=torch.__version__,
                   device="cpu", seconds=time.time() - started)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "validation.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=2))
    header = ("| problem | method | iterations | rel. residual | rel. error | lambda_(k+1)/lambda_1 "
              "| rank (1e-12) | ms/iteration |")
    lines = [f"Machine: {machine}", "", header, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['method']} | {r['iterations']} | {r['relative_residual']:.2e} | "
                     f"{r['relative_error']:.2e} | {r['tail']:.2e} | {r['numerical_rank_1e12']} | "
                     f"{r['ms_per_iteration']:.2f} |")
    (RESULTS / "validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
