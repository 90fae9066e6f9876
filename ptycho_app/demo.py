"""The built-in default job: simulate a small FP acquisition, reconstruct it with BM and UDU,
report metrics and write a comparison figure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .analysis import (
    amplitude_psnr,
    amplitude_ssim,
    factor_eigh,
    numerical_rank,
    object_from_factors,
    relative_error,
)
from .io import atomic_path
from .lifting import LiftedFP
from .physics import band_limit, fp_intensities
from .plotting import comparison_figure
from .session import RunOptions, batch_options, problem_history, rank_one_residual, run_to_end
from .simulation import default_acquisition, reference_object


def summarize(state, grid_size, truth=None, tol=1e-6, k=0, residual_rank1=None):
    """Object, eigenvalues and metrics of problem ``k`` of a final state (``residual_rank1``: (B,), the
    relative residual of each problem's rank-one ``X`` whose object is shown, from
    :func:`ptycho_app.session.rank_one_residual`).

    Returns
    -------
    dict
        ``object`` (N, N) complex64, ``eigenvalues`` (r,), ``losses`` (T,), and scalar metrics.
    """
    iterations, losses = problem_history(state, k)
    U = state.U[k:k + 1].to(torch.complex128)
    weights = state.physical_weights()[k:k + 1].to(torch.float64)
    values = factor_eigh(U, weights)[0][0].cpu().numpy()
    obj = object_from_factors(U, weights, grid_size)[0].cpu().numpy()
    summary = {
        "object": obj.astype(np.complex64),
        "eigenvalues": values,
        "losses": losses,
        "iterations": iterations,
        "seconds": state.elapsed,
        "seconds_per_iteration": state.elapsed / max(state.iteration, 1),
        "relative_residual": float(state.relative_residual[k]),
        "relative_residual_rank1": None if residual_rank1 is None else float(residual_rank1[k]),
        "lambda2_over_lambda1": float(values[1] / values[0]) if len(values) > 1 else 0.0,
        "numerical_rank": numerical_rank(values, tol),
    }
    if truth is not None:
        summary.update(relative_error=relative_error(obj, truth), psnr=amplitude_psnr(obj, truth),
                       ssim=amplitude_ssim(obj, truth))
    return summary


METRIC_COLUMNS = ("relative_error", "psnr", "ssim", "lambda2_over_lambda1", "numerical_rank",
                  "relative_residual", "relative_residual_rank1", "iterations", "seconds_per_iteration")


def format_table(summaries):
    """Metrics of several solvers as an aligned text table."""
    header = f"{'metric':<25}" + "".join(f"{label:>14}" for label in summaries)
    lines = [header, "-" * len(header)]
    for column in METRIC_COLUMNS:
        cells = []
        for summary in summaries.values():
            value = summary.get(column)
            if value is None:
                cells.append(f"{'-':>14}")
            elif isinstance(value, (int, np.integer)):
                cells.append(f"{value:>14d}")
            else:
                cells.append(f"{value:>14.3e}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:>14.4f}")
        lines.append(f"{column:<25}" + "".join(cells))
    return "\n".join(lines)


def run_demo(out_dir="demo-output", run: RunOptions | None = None, progress=True, **options):
    """Simulate the default acquisition (64 x 64 object, 7 x 7 LEDs, 16 x 16 frames, noise-free),
    reconstruct it with ``run``'s methods (default BM and UDU, side by side in one batched solve,
    the ``fast`` preset), print metrics and write ``comparison.png`` and ``metrics.json``.

    ``options`` are :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's (``rank``,
    ``max_iters``, ``seed``, ...; None: the preset's).

    Returns
    -------
    dict
        ``label -> summary`` (see :func:`summarize`).
    """
    run = run or RunOptions()
    out_dir = Path(out_dir)
    acquisition = default_acquisition()
    N = acquisition.grid_size
    obj = reference_object(N)
    truth = band_limit(obj, acquisition)
    torch_device, dtype = run.torch_device, run.dtype()
    intensities = torch.as_tensor(fp_intensities(obj, acquisition)).to(torch_device, dtype.to_real())
    operator = LiftedFP(acquisition, device=torch_device, dtype=dtype)
    methods = run.methods()
    seed = options.pop("seed", None) or 0
    solver_options = batch_options(methods, run.preset, (seed,), **options)
    print(f"Simulated {acquisition.n_frames} frames of {acquisition.frame_size}x{acquisition.frame_size} "
          f"({acquisition.bright_field.sum()} bright-field) of a {N}x{N} object; solving with the "
          f"{run.preset} preset on {torch_device} in {dtype}.")
    started = time.perf_counter()
    b = intensities[None].expand(len(methods), -1, -1, -1)
    state, interrupted = run_to_end(operator, b, solver_options, progress=progress,
                                    label="+".join(m.upper() for m in methods))
    if state is None or interrupted:
        raise KeyboardInterrupt
    wall = time.perf_counter() - started
    shown_residual = rank_one_residual(operator, b, state)  # of the object shown, next to the fitted X's
    summaries = {}
    for k, method in enumerate(methods):
        summaries[method.upper()] = summarize(state, N, truth, k=k, residual_rank1=shown_residual)
        summaries[method.upper()]["loss_name"] = solver_options.loss
        summaries[method.upper()]["wall_seconds"] = wall
    print(format_table(summaries))
    figure = out_dir / "comparison.png"
    comparison_figure(figure, truth, summaries,
                      title=f"FP {N}x{N}, {acquisition.n_frames} LEDs, rank {solver_options.rank}, "
                            f"{solver_options.max_iters} iterations, {run.preset} preset")
    metrics = {label: {k: v for k, v in s.items() if k not in ("object", "losses", "loss_name")}
               for label, s in summaries.items()}
    for entry in metrics.values():
        entry["eigenvalues"] = [float(v) for v in entry["eigenvalues"]]
        entry["options"] = {"preset": run.preset, **{k: v for k, v in solver_options.to_dict().items()
                                                     if k not in ("method", "seed", "yield_every")}}
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=float))
    print(f"Wrote {figure} and {out_dir / 'metrics.json'}")
    return summaries
