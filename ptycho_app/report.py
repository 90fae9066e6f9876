"""Looking at results: ``compare`` (figures and metrics tables) and ``info`` (what a file holds)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from .analysis import amplitude_psnr, amplitude_ssim, numerical_rank, relative_error
from .calibration.summary import calibration_lines, rms_pupil_phase
from .io import atomic_path
from .io.atomic import OutputFileError
from .io.errors import InputFileError
from .io.measurement import has, open_hdf5, read_measurement
from .io.results import Result, read_result

#: Relative eigenvalue threshold of the numerical rank in reports.
RANK_TOLERANCE = 1e-6

METRIC_COLUMNS = ("relative_error", "psnr", "ssim", "lambda2_over_lambda1", "numerical_rank", "relative_residual",
                  "relative_residual_rank1", "iterations", "seconds", "seconds_per_iteration")
#: Shown after :data:`METRIC_COLUMNS` when a result holds a recovered pupil (RMS aberration phase, radians).
CALIBRATION_COLUMNS = ("pupil_rms_phase",)

#: What the two residuals mean (in ``info``, ``compare`` and the napari widget).
RESIDUAL_NOTE = ("relative_residual: ||A(X) - b|| / ||b|| of the rank-r X fitted; relative_residual_rank1: the same "
                 "for lambda_1 v v^*, the rank-one X of the object shown and written")


def finite_or_none(value):
    """``value`` as a float, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def physical_matrix(result: Result) -> np.ndarray:
    """``X = U diag(scale * d) U^*`` (small matrix problems only; asymmetric: ``U_1 diag(scale * d) U_2^*``)."""
    weights = result.d * float(result.attrs.get("scale", 1.0))
    if result.blocks is not None:
        n1 = result.blocks[0]
        return (result.U[:n1] * weights) @ result.U[n1:].conj().T
    return (result.U * weights) @ result.U.conj().T


def result_metrics(result: Result) -> dict:
    """Metrics of one result; errors only when the result holds a reference."""
    values = np.asarray(result.spectral_values, dtype=np.float64)
    seconds = finite_or_none(result.attrs.get("seconds"))
    metrics = {
        "input": str(result.attrs.get("input_file", "")), "method": result.method,
        "rank": int(result.attrs.get("rank", len(values))),
        "relative_error": None, "psnr": None, "ssim": None,
        "lambda2_over_lambda1": float(values[1] / values[0]) if len(values) > 1 and values[0] > 0 else 0.0,
        "numerical_rank": numerical_rank(values, RANK_TOLERANCE),
        "final_loss": float(result.loss[-1]),
        "relative_residual": finite_or_none(result.attrs.get("relative_residual")),
        "relative_residual_rank1": finite_or_none(result.attrs.get("relative_residual_rank1")),
        "iterations": result.iterations,
        "seconds": seconds,
        # totals over every run of a resumed result (``seconds`` and ``iterations`` both add up)
        "seconds_per_iteration": None if seconds is None else seconds / max(result.iterations, 1),
        "interrupted": bool(result.attrs.get("interrupted", False)),
        "options": options_summary(result.attrs),
        # RMS aberration phase (rad) of the recovered pupil inside its support (None: no pupil recovered)
        "pupil_rms_phase": (rms_pupil_phase(result.calibration.pupil) if result.calibration is not None
                            and result.calibration.pupil is not None else None),
    }
    has_image = result.object is not None and result.reference is not None
    truth = result.reference if has_image else result.reference_matrix
    if truth is not None and not np.any(truth):
        metrics["relative_error_note"] = "truth is all zero: relative errors, PSNR and SSIM are undefined"
    elif has_image:
        metrics.update(relative_error=relative_error(result.object, result.reference),
                       psnr=amplitude_psnr(result.object, result.reference),
                       ssim=amplitude_ssim(result.object, result.reference))
    elif truth is not None:
        metrics["relative_error"] = float(np.linalg.norm(physical_matrix(result) - result.reference_matrix)
                                          / np.linalg.norm(result.reference_matrix))
    for name in ("relative_error", "psnr", "ssim"):
        metrics[name] = finite_or_none(metrics[name])
    return metrics


def metrics_json(rows: list[dict]) -> str:
    """Rows as JSON text; NaN and infinities are refused (they are not JSON), never written."""
    return json.dumps(rows, indent=2, allow_nan=False)


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
    calibrated = CALIBRATION_COLUMNS if any(row.get("pupil_rms_phase") is not None for row in rows) else ()
    columns = ("input", "method") + METRIC_COLUMNS + calibrated + ("interrupted",)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(c)) for c in columns) + " |" for row in rows]
    lines += ["", "| input | method | options |", "|---|---|---|"]
    lines += [f"| {row.get('input')} | {row.get('method')} | {row.get('options') or '-'} |" for row in rows]
    lines += ["", f"{RESIDUAL_NOTE}."]
    lines += [f"{row.get('input')} {row.get('method')}: {row['relative_error_note']}." for row in rows
              if row.get("relative_error_note")]
    return "\n".join(lines) + "\n"


def metrics_paths(out_dir, input_name: str) -> tuple[Path, Path]:
    """``<out>/<input stem>-metrics.json`` and ``.md``: named after the input, like its figure, so
    compares of other inputs in the same folder do not overwrite each other."""
    stem = Path(input_name).stem
    return Path(out_dir) / f"{stem}-metrics.json", Path(out_dir) / f"{stem}-metrics.md"


def residuals_text(result: Result) -> str:
    """``BM X (rank 4) 0.097, shown x x^* 0.734``: both relative residuals of a result, named."""
    rows = result_metrics(result)
    parts = [f"{result.method.upper()} X (rank {rows['rank']}) {format_value(rows['relative_residual'])}"]
    if rows["relative_residual_rank1"] is not None:
        parts.append(f"shown x x^* {format_value(rows['relative_residual_rank1'])}")
    return ", ".join(parts)


def render_figure(input_name: str, group: list[Result]) -> bytes:
    """The comparison PNG of one input's results, as bytes (nothing is written)."""
    import tempfile

    from .plotting import comparison_figure, spectra_figure

    curves = {r.method.upper() if len({x.method for x in group}) == len(group) else r.path.name:
              {"object": r.object, "eigenvalues": r.spectral_values, "singular": r.blocks is not None, "losses": r.loss,
               "loss_name": str(r.attrs.get("loss", "intensity")),
               "pupil": r.calibration.pupil if r.calibration is not None else None} for r in group}
    title = f"{input_name}: {', '.join(curves)}"
    if any(r.attrs.get("relative_residual") is not None for r in group):
        # one line per result, so that the title fits the figure's width
        title += "\nrelative residual ||A(X) - b|| / ||b||:\n" + "\n".join(residuals_text(r) for r in group)
    with tempfile.TemporaryDirectory(prefix="ptycho-compare-") as folder:
        figure = Path(folder) / "figure.png"
        if all(r.object is not None for r in group):
            reference = next((r.reference for r in group if r.reference is not None), None)
            comparison_figure(figure, reference, curves, title=title)
        else:
            spectra_figure(figure, curves, title=title)
        return figure.read_bytes()


def write_all_or_nothing(contents: dict):
    """Write ``path -> bytes`` so that every file is replaced or none is: each goes to its temporary
    file first, and the temporary files are renamed onto their targets only once all are complete
    (a failure removes them and leaves the earlier outputs as they were; only a rename that fails
    after others succeeded, which the checks before writing make unlikely, leaves a mix)."""
    for path in contents:  # what would fail at the renames, found before anything is written
        if Path(path).is_dir():
            raise OutputFileError(path, f"{path}: is a folder; nothing was written")
    with contextlib.ExitStack() as stack:
        for path, data in contents.items():
            Path(stack.enter_context(atomic_path(path, nbytes=len(data)))).write_bytes(data)


def compare_results(paths, out_dir) -> dict:
    """Figures and metrics for result files, all written or none.

    Per input (results are grouped by the input they came from): a PNG ``<stem>.comparison.png``
    (amplitude and phase of each solver side by side, with the band-limited ground truth when
    known, eigenvalue spectra on a log scale and loss curves) and ``<stem>-metrics.json`` /
    ``<stem>-metrics.md`` with one row per result.  Everything is computed before the first file is
    written; if a write fails, the files this call wrote are removed.

    Returns
    -------
    dict
        ``figures``, ``json``, ``markdown`` (lists of Path, one per input), ``rows`` (list of dict).
    """
    out_dir = Path(out_dir)
    results = [read_result(path) for path in paths]
    by_input: dict[str, list[Result]] = {}
    for result in results:
        by_input.setdefault(str(result.attrs.get("input_file", result.path.name)), []).append(result)
    contents, report = {}, {"figures": [], "json": [], "markdown": [], "rows": []}
    for input_name, group in by_input.items():
        rows = [result_metrics(r) for r in group]
        json_path, md_path = metrics_paths(out_dir, input_name)
        figure = out_dir / f"{Path(input_name).stem}.comparison.png"
        contents[json_path] = metrics_json(rows).encode()
        contents[md_path] = markdown_table(rows).encode()
        contents[figure] = render_figure(input_name, group)
        report["figures"].append(figure)
        report["json"].append(json_path)
        report["markdown"].append(md_path)
        report["rows"] += rows
    write_all_or_nothing(contents)
    return report


def describe_file(path) -> str:
    """What a measurement or result file holds, in words and numbers."""
    path = Path(path)
    with open_hdf5(path) as f:
        is_result = has(f, path, "factors/U")
        is_measurement = has(f, path, "ptychogram")
    if is_result:
        return describe_result(read_result(path))
    if is_measurement:
        return describe_measurement(path)
    raise InputFileError(path, "neither a measurement file (no 'ptychogram') nor a result file (no 'factors/U')")


def frames_mean(summary, chosen) -> str:
    """`` (mean 0.37)`` of the chosen frames ('' when the frames were not scanned)."""
    if summary is None:
        return ""
    return f" (mean {summary.frame_mean[chosen].mean() if chosen.any() else 0:.4g})"


def describe_measurement(path) -> str:
    m = read_measurement(path, load_frames=False)  # frames checked block by block, never held whole
    a = m.acquisition
    summary = m.summary
    bright = a.bright_field
    sines = np.hypot(a.direction_sines[:, 0], a.direction_sines[:, 1])
    lines = [
        f"{path}: FP measurement (PtyLab FPM layout)",
        f"  frames:        {a.n_frames} x {a.frame_size} x {a.frame_size} {m.frame_type}, "
        + (f"values {max(summary.minimum, 0):.4g} to {summary.maximum:.4g}" if summary else "values not scanned"),
        f"  bright field:  {int(bright.sum())} frames{frames_mean(summary, bright)}; "
        f"dark field: {int((~bright).sum())} frames{frames_mean(summary, ~bright)}",
        f"  optics:        wavelength {a.wavelength * 1e9:.1f} nm, NA {a.na:g}, magnification {a.magnification:g}, "
        f"camera pixel {a.camera_pixel * 1e6:.3g} um ({a.pixel_size_lr * 1e6:.4g} um at the sample)",
        "  illumination:  " + (f"LEDs {a.led_distance * 1e3:.4g} mm below the sample, " if a.led_positions is not None
                                else "explicit direction sines, ")
        + f"illumination NA up to {sines.max():.3f}; synthetic NA about {sines.max() + a.na:.3f}; "
        + ("sub-pixel windows (exact)" if a.subpixel else "windows rounded to whole spectrum pixels"),
        f"  object grid:   {a.grid_size} x {a.grid_size} (upsample {a.upsample}), pixel {a.pixel_size_hr * 1e6:.4g} um",
        f"  pupil:         {'complex aberration given' if a.pupil is not None else 'ideal'}, "
        f"defocus {a.defocus * 1e6:g} um",
        f"  ground truth:  {'yes' if m.ground_truth is not None else 'no'}",
    ]
    if m.exposure is not None or m.background is not None or m.saturation_level is not None:
        lines.append("  corrections:   " + ", ".join(part for part in (
            m.exposure is not None and f"exposure {m.exposure.min():g} to {m.exposure.max():g}",
            m.background is not None and ("background: dark frame" if m.background.ndim == 2 else
                                          "background: one level per frame")
            + f" (mean {m.background.mean():.4g})",
            m.saturation_level is not None and f"saturation at {m.saturation_level:g} (masked in the loss)")
            if part))
    lines += [f"  note:          {note}" for note in m.notes]
    return "\n".join(lines)


#: Options shown by ``info`` and ``compare``, in this order (those a result does not record are skipped).
SHOWN_OPTIONS = ("preset", "rank", "loss", "precondition", "precondition_alpha", "momentum", "restart_backoff", "init",
                 "step", "step_d", "step_schedule", "scaled_lambda", "xi", "radius", "seed")


def options_summary(attrs: dict) -> str:
    """The solver options a result records, as ``name value`` pairs (files before 0.2 record fewer)."""
    return ", ".join(f"{name} {format_value(attrs[name])}" for name in SHOWN_OPTIONS
                     if attrs.get(name) is not None)


def tiled_lines(result: Result) -> list[str]:
    """``info`` lines of a tiled result: its tiles, and the spread of the per-tile maps (none otherwise)."""
    if not result.attrs.get("tiled") or result.tile_corners is None:
        return []
    a = result.attrs
    lines = [f"  tiled:         {len(result.tile_corners)} tiles of {a.get('tile')} camera pixels "
             f"({a.get('tile_rows')} x {a.get('tile_cols')}), overlap {a.get('overlap')}, margin "
             f"{a.get('tile_margin', 0)}; the eigenvalues, loss and residual above are the first tile's"]
    ratio = result.lambda_ratio
    if ratio is not None and np.isfinite(ratio).any():
        lines.append(f"  tiles:         lambda_2 / lambda_1 from {np.nanmin(ratio):.2e} to {np.nanmax(ratio):.2e} "
                     f"(median {np.nanmedian(ratio):.2e}; maps/lambda_ratio)")
    if result.residual_map is not None:
        lines.append(f"  tiles:         relative residual from {result.residual_map.min():.3g} to "
                     f"{result.residual_map.max():.3g} (maps/residual)")
    return lines


def describe_result(result: Result) -> str:
    a = result.attrs
    values = result.spectral_values
    relative = values / values[0] if values[0] > 0 else values
    symbol, kind = ("sigma", "singular values:") if result.blocks is not None else ("lambda", "eigenvalues:  ")
    metrics = result_metrics(result)
    lines = [
        f"{result.path}: {result.method.upper()} result ({a.get('problem', 'fp')}) from "
        f"{a.get('input_file', '?')} (sha256 {str(a.get('input_sha256', '?'))[:12]}...)",
        f"  method:        {options_summary(a)}, {a.get('device')} {a.get('precision')}",
        f"  iterations:    {result.iterations}" + (" (interrupted: resumable with --resume)"
                                                    if a.get("interrupted") else ""),
        f"  loss:          {result.loss[0]:.4e} -> {result.loss[-1]:.4e}",
        f"  residual:      ||A(X) - b|| / ||b|| {format_value(metrics['relative_residual'])} for X (rank "
        f"{metrics['rank']}), " + (f"{format_value(metrics['relative_residual_rank1'])} for the shown object's "
                                   "x x^* (rank one)" if metrics["relative_residual_rank1"] is not None
                                   else "not recorded for the shown object's x x^*"),
        f"  {kind} {symbol}_1 = {values[0]:.4e}" + (f"; {symbol}_k / {symbol}_1 = " + ", ".join(
            f"{v:.2e}" for v in relative[1:]) if len(values) > 1 else ""),
        f"  numerical rank {metrics['numerical_rank']} (tolerance {RANK_TOLERANCE:g})",
    ]
    lines += calibration_lines(result.calibration)
    lines += tiled_lines(result)
    if result.object is not None:
        lines.append(f"  object:        {result.object.shape[0]} x {result.object.shape[1]} complex, "
                     f"pixel {float(a.get('pixel_size', 0)) * 1e6:.4g} um")
    if metrics.get("relative_error_note"):
        lines.append(f"  vs truth:      {metrics['relative_error_note']}")
    if metrics["relative_error"] is not None:
        lines.append(f"  vs truth:      relative error {metrics['relative_error']:.3e}"
                     + (f", PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}" if metrics["psnr"] else ""))
    return "\n".join(lines)
