"""Looking at results: ``compare`` (figures and metrics tables) and ``info`` (what a file holds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .analysis import amplitude_psnr, amplitude_ssim, numerical_rank, relative_error
from .io import atomic_path
from .io.errors import InputFileError
from .io.measurement import open_hdf5, read_measurement
from .io.results import Result, read_result

#: Relative eigenvalue threshold of the numerical rank in reports.
RANK_TOLERANCE = 1e-6

METRIC_COLUMNS = ("relative_error", "psnr", "ssim", "lambda2_over_lambda1", "numerical_rank", "relative_residual",
                  "iterations", "seconds", "seconds_per_iteration")


def physical_matrix(result: Result) -> np.ndarray:
    """``X = U diag(scale * d) U^*`` (small matrix problems only)."""
    weights = result.d * float(result.attrs.get("scale", 1.0))
    return (result.U * weights) @ result.U.conj().T


def result_metrics(result: Result) -> dict:
    """Metrics of one result; errors only when the result holds a reference."""
    values = np.asarray(result.eigenvalues, dtype=np.float64)
    run = int(result.attrs.get("run_iterations", result.iterations))
    metrics = {
        "input": str(result.attrs.get("input_file", "")), "method": result.method,
        "rank": int(result.attrs.get("rank", len(values))),
        "relative_error": None, "psnr": None, "ssim": None,
        "lambda2_over_lambda1": float(values[1] / values[0]) if len(values) > 1 and values[0] > 0 else 0.0,
        "numerical_rank": numerical_rank(values, RANK_TOLERANCE),
        "final_loss": float(result.loss[-1]),
        "relative_residual": float(result.attrs.get("relative_residual", float("nan"))),
        "iterations": result.iterations,
        "seconds": float(result.attrs.get("seconds", float("nan"))),
        "seconds_per_iteration": float(result.attrs.get("seconds", float("nan"))) / max(run, 1),
        "interrupted": bool(result.attrs.get("interrupted", False)),
        "options": options_summary(result.attrs),
    }
    if result.object is not None and result.reference is not None:
        metrics.update(relative_error=relative_error(result.object, result.reference),
                       psnr=amplitude_psnr(result.object, result.reference),
                       ssim=amplitude_ssim(result.object, result.reference))
    elif result.reference_matrix is not None:
        metrics["relative_error"] = float(np.linalg.norm(physical_matrix(result) - result.reference_matrix)
                                          / np.linalg.norm(result.reference_matrix))
    return metrics


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Metrics rows as a Markdown table (one row per result)."""
    columns = ("input", "method") + METRIC_COLUMNS + ("interrupted",)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(c)) for c in columns) + " |" for row in rows]
    lines += ["", "| input | method | options |", "|---|---|---|"]
    lines += [f"| {row.get('input')} | {row.get('method')} | {row.get('options') or '-'} |" for row in rows]
    return "\n".join(lines) + "\n"


def compare_results(paths, out_dir) -> dict:
    """Figures and metrics for result files.

    One PNG per input (``<stem>.comparison.png``): amplitude and phase of each solver side by
    side (with the band-limited ground truth when known), eigenvalue spectra on a log scale and
    loss curves.  ``metrics.json`` and ``metrics.md`` hold one row per result.

    Returns
    -------
    dict
        ``figures`` (list of Path), ``json``, ``markdown`` (Path), ``rows`` (list of dict).
    """
    from .plotting import comparison_figure, spectra_figure

    out_dir = Path(out_dir)
    results = [read_result(path) for path in paths]
    by_input: dict[str, list[Result]] = {}
    for result in results:
        by_input.setdefault(str(result.attrs.get("input_file", result.path.name)), []).append(result)
    figures = []
    for input_name, group in by_input.items():
        stem = Path(input_name).stem
        figure = out_dir / f"{stem}.comparison.png"
        curves = {r.method.upper() if len({x.method for x in group}) == len(group) else r.path.name:
                  {"object": r.object, "eigenvalues": r.eigenvalues, "losses": r.loss,
                   "loss_name": str(r.attrs.get("loss", "intensity"))} for r in group}
        with_objects = [r for r in group if r.object is not None]
        if len(with_objects) == len(group):
            reference = next((r.reference for r in group if r.reference is not None), None)
            comparison_figure(figure, reference, curves, title=f"{input_name}: {', '.join(curves)}")
        else:
            spectra_figure(figure, curves, title=f"{input_name}: {', '.join(curves)}")
        figures.append(figure)
    rows = [result_metrics(r) for r in results]
    json_path, md_path = out_dir / "metrics.json", out_dir / "metrics.md"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(rows, indent=2))
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown_table(rows))
    return {"figures": figures, "json": json_path, "markdown": md_path, "rows": rows}


def describe_file(path) -> str:
    """What a measurement or result file holds, in words and numbers."""
    path = Path(path)
    with open_hdf5(path) as f:
        is_result = "factors/U" in f
        is_measurement = "ptychogram" in f
    if is_result:
        return describe_result(read_result(path))
    if is_measurement:
        return describe_measurement(path)
    raise InputFileError(path, "neither a measurement file (no 'ptychogram') nor a result file (no 'factors/U')")


def describe_measurement(path) -> str:
    m = read_measurement(path)
    a = m.acquisition
    frames = m.frames
    bright = a.bright_field
    sines = np.hypot(a.direction_sines[:, 0], a.direction_sines[:, 1])
    lines = [
        f"{path}: FP measurement (PtyLab FPM layout)",
        f"  frames:        {a.n_frames} x {a.frame_size} x {a.frame_size} {m.frame_type}, "
        f"values {frames.min():.4g} to {frames.max():.4g}",
        f"  bright field:  {int(bright.sum())} frames (mean {frames[bright].mean() if bright.any() else 0:.4g}); "
        f"dark field: {int((~bright).sum())} frames (mean {frames[~bright].mean() if (~bright).any() else 0:.4g})",
        f"  optics:        wavelength {a.wavelength * 1e9:.1f} nm, NA {a.na:g}, magnification {a.magnification:g}, "
        f"camera pixel {a.camera_pixel * 1e6:.3g} um ({a.pixel_size_lr * 1e6:.4g} um at the sample)",
        "  illumination:  " + (f"LEDs {a.led_distance * 1e3:.4g} mm below the sample, " if a.led_positions is not None
                                else "explicit direction sines, ")
        + f"illumination NA up to {sines.max():.3f}; synthetic NA about {sines.max() + a.na:.3f}",
        f"  object grid:   {a.grid_size} x {a.grid_size} (upsample {a.upsample}), pixel {a.pixel_size_hr * 1e6:.4g} um",
        f"  pupil:         {'complex aberration given' if a.pupil is not None else 'ideal'}, "
        f"defocus {a.defocus * 1e6:g} um",
        f"  ground truth:  {'yes' if m.ground_truth is not None else 'no'}",
    ]
    lines += [f"  note:          {note}" for note in m.notes]
    return "\n".join(lines)


#: Options shown by ``info`` and ``compare``, in this order (those a result does not record are skipped).
SHOWN_OPTIONS = ("preset", "rank", "loss", "precondition", "precondition_alpha", "momentum", "init", "step", "step_d",
                 "step_schedule", "scaled_lambda", "xi", "radius", "seed")


def options_summary(attrs: dict) -> str:
    """The solver options a result records, as ``name value`` pairs (files before 0.2 record fewer)."""
    return ", ".join(f"{name} {format_value(attrs[name])}" for name in SHOWN_OPTIONS
                     if attrs.get(name) is not None)


def describe_result(result: Result) -> str:
    a = result.attrs
    values = result.eigenvalues
    relative = values / values[0] if values[0] > 0 else values
    metrics = result_metrics(result)
    lines = [
        f"{result.path}: {result.method.upper()} result ({a.get('problem', 'fp')}) from "
        f"{a.get('input_file', '?')} (sha256 {str(a.get('input_sha256', '?'))[:12]}...)",
        f"  method:        {options_summary(a)}, {a.get('device')} {a.get('precision')}",
        f"  iterations:    {result.iterations}" + (" (interrupted: resumable with --resume)"
                                                    if a.get("interrupted") else ""),
        f"  loss:          {result.loss[0]:.4e} -> {result.loss[-1]:.4e} (relative residual "
        f"{float(a.get('relative_residual', float('nan'))):.3e})",
        f"  eigenvalues:   lambda_1 = {values[0]:.4e}; lambda_k / lambda_1 = "
        + ", ".join(f"{v:.2e}" for v in relative[1:]),
        f"  numerical rank {metrics['numerical_rank']} (tolerance {RANK_TOLERANCE:g})",
    ]
    if result.object is not None:
        lines.append(f"  object:        {result.object.shape[0]} x {result.object.shape[1]} complex, "
                     f"pixel {float(a.get('pixel_size', 0)) * 1e6:.4g} um")
    if metrics["relative_error"] is not None:
        lines.append(f"  vs truth:      relative error {metrics['relative_error']:.3e}"
                     + (f", PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}" if metrics["psnr"] else ""))
    return "\n".join(lines)
