"""Tiled reconstruction of a simulated full field: stitched error against the tiles' own, seams, and one angle set.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/tiled.py            # the issue's field (about 25 min)
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/tiled.py --quick    # 64 camera pixels (under a minute)

The full field is simulated without tiles (:func:`ptycho_app.tiling.full_field_intensities`: exact
spherical LED waves, reflect-padded), noise-free; the truth is the object band-limited to the field
centre's synthetic aperture.  For each method (defaults: the ``fast`` preset, rank 1) it reports

- the tiled run (``reconstruct --tile``: per-tile angles, unmeasured margin, curvature removed,
  phase-aligned feathered stitching): stitched error, and error in the overlap strips against tile
  interiors (4 camera pixels at the field's edge left out);
- the same tiles' own errors: each tile's object against the truth under it, with its own best global
  phase (what a tile solved on its own, with its exact angles, reaches), as an RMS over the tiles;
- the same tiles solved with one angle set for the whole field (the field centre's sines for every
  tile): stitched error.

With sub-pixel windows every tile's forward operator differs, so the tiled run already solves each
tile on its own: its tiles *are* the tiles solved one by one.  Writes
``benchmarks/results/tiled.{json,md}`` and ``docs/images/tiled-field.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptycho_app.analysis import relative_error  # noqa: E402
from ptycho_app.analysis.metrics import align_global_phase  # noqa: E402
from ptycho_app.batch import Input  # noqa: E402
from ptycho_app.io import atomic_path  # noqa: E402
from ptycho_app.io.measurement import read_measurement, write_measurement  # noqa: E402
from ptycho_app.physics import band_limit  # noqa: E402
from ptycho_app.session import RunOptions  # noqa: E402
from ptycho_app.simulation import default_acquisition, reference_object  # noqa: E402
from ptycho_app.stitching import coverage, stitch  # noqa: E402
from ptycho_app.tiled import cut_tiles, group_tiles, reconstruct_tiled, solve_tiles  # noqa: E402
from ptycho_app.tiling import TILE_MARGIN, cut_object_tile, full_field_intensities, tile_acquisition  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def simulate(args, folder: Path) -> Input:
    """The full-field measurement file (written, read back) as a tiled run's input."""
    acquisition = default_acquisition(frame_size=args.field, upsample=args.upsample, leds_per_side=args.leds,
                                      led_pitch=args.pitch, led_distance=args.distance)
    acquisition = dataclasses.replace(acquisition, subpixel=True)
    obj = reference_object(acquisition.grid_size)
    started = time.perf_counter()
    frames = full_field_intensities(obj, acquisition, args.field, pad=args.field // 4)
    print(f"simulated {frames.shape} in {time.perf_counter() - started:.1f} s", flush=True)
    path = folder / "field.h5"
    write_measurement(path, frames, acquisition, ground_truth=obj)
    return Input(path, read_measurement(path), "benchmark")


def seam_errors(stitched, truth, corners, tile, upsample) -> tuple[float, float]:
    """Relative error in the overlap strips and in the single-tile interiors (field edge left out)."""
    size = truth.shape[0]
    aligned = align_global_phase(stitched, truth)
    miss, energy = np.abs(aligned - truth) ** 2, np.abs(truth) ** 2
    covered = coverage(np.asarray(corners) * upsample, tile * upsample, truth.shape)
    inside = np.zeros(truth.shape, dtype=bool)
    edge = 4 * upsample
    inside[edge:size - edge, edge:size - edge] = True

    def error(where):
        return float(np.sqrt(miss[where].sum() / energy[where].sum()))

    return error(inside & (covered > 1)), error(inside & (covered == 1))


def one_angle_set(item: Input, corners, args, method: str, overrides: dict) -> np.ndarray:
    """Stitched object when every tile takes the field centre's sines (and curvature)."""
    field = item.measurement.acquisition.frame_size
    centre = ((field - args.tile) / 2, (field - args.tile) / 2)
    shared = tile_acquisition(item.measurement.acquisition, field, centre, args.tile, args.margin)
    tiles = [dataclasses.replace(t, acquisition=shared)
             for t in cut_tiles(item.measurement, corners, args.tile, args.margin)]
    solutions = {}
    for chunk in group_tiles(tiles, 8):  # one operator: batches of 8 tiles
        solutions.update(solve_tiles(chunk, (method,), RunOptions(method=method), 0, overrides, item))
    objects = np.stack([solutions[(method, t.index)].object for t in tiles])
    up = item.measurement.acquisition.upsample
    return stitch(objects, np.asarray(corners) * up, (item.measurement.acquisition.grid_size,) * 2,
                  args.overlap * up)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field", type=int, default=256, help="camera pixels per side of the field")
    parser.add_argument("--upsample", type=int, default=4)
    parser.add_argument("--leds", type=int, default=9)
    parser.add_argument("--pitch", type=float, default=4e-3)
    parser.add_argument("--distance", type=float, default=60e-3)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--margin", type=int, default=TILE_MARGIN)
    parser.add_argument("--methods", nargs="+", default=["bm", "udu"])
    parser.add_argument("--iterations", type=int, default=None, help="default: the preset's")
    parser.add_argument("--no-global", action="store_true", help="skip the one-angle-set run")
    parser.add_argument("--quick", action="store_true", help="64 camera pixels, upsample 2, 5 x 5 LEDs, tile 32")
    parser.add_argument("--name", default=None, help="results file stem (default: tiled, or tiled-quick)")
    args = parser.parse_args()
    if args.quick:
        args.field, args.upsample, args.leds, args.tile, args.overlap = 64, 2, 5, 32, 8
    name = args.name or ("tiled-quick" if args.quick else "tiled")
    overrides = {"rank": 1} if args.iterations is None else {"rank": 1, "max_iters": args.iterations}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        item = simulate(args, Path(folder))
        acquisition = item.measurement.acquisition
        up = acquisition.upsample
        truth = band_limit(item.measurement.ground_truth.astype(np.complex128), acquisition)
        for method in args.methods:
            collected = {}

            def collect(finished, tiles, collected=collected):
                collected.update(finished)

            started = time.perf_counter()
            result = reconstruct_tiled(item, args.tile, args.overlap, RunOptions(method=method), 0, dict(overrides),
                                       on_tiles=collect, margin=args.margin)[method]
            seconds = time.perf_counter() - started
            corners = [tuple(c) for c in result.tile_corners]
            stitched = result.object
            per_tile = [relative_error(collected[(method, k)].object, cut_object_tile(truth, c, args.tile, up))
                        for k, c in enumerate(corners)]
            seams, interiors = seam_errors(stitched, truth, corners, args.tile, up)
            row = {"method": method, "tiles": len(corners), "seconds": seconds,
                   "iterations": int(collected[(method, 0)].attrs["iterations"]),
                   "stitched_error": relative_error(stitched, truth),
                   "tile_errors_rms": float(np.sqrt(np.mean(np.square(per_tile)))),
                   "tile_errors_max": float(np.max(per_tile)), "tile_errors": [float(e) for e in per_tile],
                   "seam_error": seams, "interior_error": interiors,
                   "max_tile_residual": float(result.residual_map.max())}
            row["stitched_over_tiles"] = row["stitched_error"] / row["tile_errors_rms"]
            if not args.no_global:
                started = time.perf_counter()
                row["one_angle_set_error"] = relative_error(one_angle_set(item, corners, args, method, overrides),
                                                            truth)
                row["one_angle_set_seconds"] = time.perf_counter() - started
            print(json.dumps(row), flush=True)
            rows.append(row)
            if method == args.methods[0]:
                figure(truth, stitched, corners, args, up, method, name)
    write(rows, args, name)


def figure(truth, stitched, corners, args, up, method, name):
    """Truth and stitched amplitude and phase, and the error map with the tile borders."""
    aligned = align_global_phase(stitched, truth)
    fig, axes = plt.subplots(2, 3, figsize=(14, 9), constrained_layout=True)
    for column, (title, image) in enumerate((("truth (band-limited)", truth), (f"stitched, {method}", aligned))):
        axes[0, column].imshow(np.abs(image), cmap="gray")
        axes[0, column].set_title(f"{title}: amplitude")
        axes[1, column].imshow(np.angle(image), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        axes[1, column].set_title(f"{title}: phase")
    error = axes[0, 2].imshow(np.abs(aligned - truth), cmap="magma", vmax=np.percentile(np.abs(truth), 99) * 0.5)
    axes[0, 2].set_title("|stitched - truth|, tile borders")
    fig.colorbar(error, ax=axes[0, 2], shrink=0.8)
    phase = axes[1, 2].imshow(np.angle(aligned * np.conj(truth)), cmap="RdBu", vmin=-1, vmax=1)
    axes[1, 2].set_title("phase difference, rad")
    fig.colorbar(phase, ax=axes[1, 2], shrink=0.8)
    size = args.tile * up
    for r, c in corners:
        for ax in (axes[0, 2], axes[1, 2]):
            ax.add_patch(plt.Rectangle((c * up - 0.5, r * up - 0.5), size, size, fill=False, lw=0.6, ec="cyan"))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{args.field} x {args.field} camera pixels (object {args.field * up}^2), {args.leds}x{args.leds} "
                 f"LEDs {args.distance * 1e3:g} mm below; tiles {args.tile}, overlap {args.overlap}, "
                 f"margin {args.margin}")
    images = ROOT / "docs" / "images"
    with atomic_path(images / f"{name}-field.png") as tmp:
        fig.savefig(tmp, dpi=70, format="png")
    plt.close(fig)


def write(rows, args, name):
    settings = {k: v for k, v in vars(args).items()}
    payload = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()}, {torch.get_num_threads()} threads",
               "settings": settings, "rows": rows}
    with atomic_path(RESULTS / f"{name}.json") as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=1))
    lines = [f"# Tiled reconstruction ({payload['date']}, {payload['machine']})", "",
             f"Field {args.field} x {args.field} camera pixels, upsample {args.upsample}, {args.leds} x {args.leds} "
             f"LEDs {args.pitch * 1e3:g} mm apart {args.distance * 1e3:g} mm below, noise-free; tiles {args.tile}, "
             f"overlap {args.overlap}, margin {args.margin}; the fast preset, rank 1.", "",
             "| method | tiles | iterations | stitched error | tiles' own errors (RMS / max) | stitched / tiles | "
             "overlap strips | interiors | one angle set | max tile residual | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['tiles']} | {r['iterations']} | {r['stitched_error']:.4f} | "
                     f"{r['tile_errors_rms']:.4f} / {r['tile_errors_max']:.4f} | {r['stitched_over_tiles']:.2f} | "
                     f"{r['seam_error']:.4f} | {r['interior_error']:.4f} | "
                     f"{r.get('one_angle_set_error', float('nan')):.4f} | {r['max_tile_residual']:.3f} | "
                     f"{r['seconds']:.0f} |")
    with atomic_path(RESULTS / f"{name}.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
