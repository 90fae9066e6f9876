"""The built-in default job: simulate a small FP acquisition, reconstruct it with BM and UDU,
report metrics and write a comparison figure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .analysis import (
    amplitude_psnr,
    amplitude_ssim,
    factor_eigh,
    numerical_rank,
    object_from_factors,
    relative_error,
)
from .device import resolve_device, resolve_dtype
from .io import atomic_path
from .lifting import LiftedFP
from .physics import band_limit, fp_intensities
from .plotting import comparison_figure
from .simulation import default_acquisition, reference_object
from .solvers import SolverOptions, iterate


def run_with_progress(operator, b, options, label="", progress=True):
    """Run :func:`~ptycho_app.solvers.iterate` to the end behind a tqdm bar.

    Returns
    -------
    SolverState
        The final state.
    """
    state = None
    with tqdm(total=options.max_iters, desc=label, unit="it", disable=not progress,
              dynamic_ncols=True) as bar:
        for state in iterate(operator, b, options):
            bar.update(state.iteration - bar.n)
            bar.set_postfix(loss=f"{state.loss.max().item():.3e}",
                            rel_res=f"{state.relative_residual.max().item():.2e}")
    return state


def summarize(state, grid_size, truth=None, tol=1e-6):
    """Object, eigenvalues and metrics of problem 0 of a final state.

    Returns
    -------
    dict
        ``object`` (N, N) complex64, ``eigenvalues`` (r,), ``losses`` (T,), and scalar metrics.
    """
    U = state.U.to(torch.complex128)
    weights = state.physical_weights().to(torch.float64)
    values = factor_eigh(U, weights)[0][0].cpu().numpy()
    obj = object_from_factors(U, weights, grid_size)[0].cpu().numpy()
    summary = {
        "object": obj.astype(np.complex64),
        "eigenvalues": values,
        "losses": state.losses[:, 0].cpu().numpy(),
        "iterations": state.iteration,
        "seconds": state.elapsed,
        "seconds_per_iteration": state.elapsed / max(state.iteration, 1),
        "relative_residual": float(state.relative_residual[0]),
        "lambda2_over_lambda1": float(values[1] / values[0]) if len(values) > 1 else 0.0,
        "numerical_rank": numerical_rank(values, tol),
    }
    if truth is not None:
        summary.update(relative_error=relative_error(obj, truth), psnr=amplitude_psnr(obj, truth),
                       ssim=amplitude_ssim(obj, truth))
    return summary


METRIC_COLUMNS = ("relative_error", "psnr", "ssim", "lambda2_over_lambda1", "numerical_rank",
                  "relative_residual", "iterations", "seconds_per_iteration")


def format_table(summaries):
    """Metrics of several solvers as an aligned text table."""
    header = f"{'metric':<22}" + "".join(f"{label:>14}" for label in summaries)
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
        lines.append(f"{column:<22}" + "".join(cells))
    return "\n".join(lines)


def run_demo(out_dir="demo-output", iterations=4000, rank=4, device="auto", precision="single",
             seed=0, progress=True):
    """Simulate the default acquisition (64 x 64 object, 7 x 7 LEDs, 16 x 16 frames, noise-free),
    reconstruct with BM and UDU, print metrics and write ``comparison.png`` and ``metrics.json``.

    Returns
    -------
    dict
        ``label -> summary`` (see :func:`summarize`).
    """
    out_dir = Path(out_dir)
    acquisition = default_acquisition()
    N = acquisition.grid_size
    obj = reference_object(N)
    truth = band_limit(obj, acquisition)
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision)
    intensities = torch.as_tensor(fp_intensities(obj, acquisition)).to(torch_device, dtype.to_real())
    operator = LiftedFP(acquisition, device=torch_device, dtype=dtype)
    print(f"Simulated {acquisition.n_frames} frames of {acquisition.frame_size}x{acquisition.frame_size} "
          f"({acquisition.bright_field.sum()} bright-field) of a {N}x{N} object; solving on "
          f"{torch_device} in {dtype}.")
    summaries = {}
    for method in ("bm", "udu"):
        options = SolverOptions(method=method, rank=rank, max_iters=iterations,
                                yield_every=max(1, iterations // 100), seed=seed)
        started = time.perf_counter()
        state = run_with_progress(operator, intensities[None], options, label=method.upper(),
                                  progress=progress)
        summaries[method.upper()] = summarize(state, N, truth)
        summaries[method.upper()]["wall_seconds"] = time.perf_counter() - started
    print(format_table(summaries))
    figure = out_dir / "comparison.png"
    comparison_figure(figure, truth, summaries,
                      title=f"FP {N}x{N}, {acquisition.n_frames} LEDs, rank {rank}, {iterations} iterations")
    metrics = {label: {k: v for k, v in s.items() if k not in ("object", "losses")}
               for label, s in summaries.items()}
    for entry in metrics.values():
        entry["eigenvalues"] = [float(v) for v in entry["eigenvalues"]]
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=float))
    print(f"Wrote {figure} and {out_dir / 'metrics.json'}")
    return summaries
