"""Pupil recovery on FP-256 (the issue's aberration test at full size).

Run (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration.py [--iters 1500] [--photons 1000]

FP-256's optics (:func:`benchmarks.fp256.fp_problem`: 256 x 256 object, 64 x 64 frames, 11 x 11 LEDs)
with defocus 20 um, 0.5 rad astigmatism (Z6) and 0.3 rad coma (Z8), Poisson noise.  For BM and UDU
(``fast`` preset, rank 1): the object error with the true pupil given, with the ideal pupil fixed, and
with ``--pupil recover``; the recovered pupil's RMS phase error inside the NA (piston and tip/tilt
removed) and its Zernike coefficients.  Writes ``benchmarks/results/calibration.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_app.analysis import object_from_factors, relative_error
from ptycho_app.calibration.pupil import phase_error_rms
from ptycho_app.calibration.zernike import fit_zernike, pupil_radius, zernike_phase
from ptycho_app.io import atomic_path
from ptycho_app.lifting import LiftedFP
from ptycho_app.physics import band_limit, fp_intensities
from ptycho_app.simulation import add_noise, default_acquisition, reference_object
from ptycho_app.solvers import SolverOptions, iterate

RESULTS = Path(__file__).parent / "results"


def problem(grid_size: int, photons: float):
    plain = default_acquisition(frame_size=grid_size // 4, upsample=4, leds_per_side=11)
    M = plain.frame_size
    coefficients = np.zeros(8)
    coefficients[5], coefficients[7] = 0.5, 0.3
    true = dataclasses.replace(plain, pupil=np.exp(1j * zernike_phase(coefficients, M, pupil_radius(plain))),
                               defocus=20e-6)
    obj = reference_object(grid_size)
    frames = fp_intensities(obj, true)
    if photons > 0:
        frames = add_noise(frames, true, "poisson", photons=photons, seed=1)
    return plain, true, band_limit(obj, true), torch.as_tensor(frames, dtype=torch.float32)[None]


def solve(acquisition, b, **options):
    start = time.perf_counter()
    state = None
    for state in iterate(LiftedFP(acquisition), b, SolverOptions.preset("fast", rank=1, **options)):  # noqa: B007
        pass
    obj = object_from_factors(state.U, state.physical_weights(), acquisition.grid_size)[0].numpy()
    return state, obj, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=256)
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--photons", type=float, default=1000.0)
    args = parser.parse_args(argv)
    plain, true, truth, b = problem(args.grid, args.photons)
    support = np.abs(true.pupil_function()) > 0
    expected = fit_zernike(true.pupil_function(), pupil_radius(plain), 15)
    rows = []
    for method in ("bm", "udu"):
        common = dict(method=method, max_iters=args.iters, yield_every=args.iters)
        _, given, _ = solve(true, b, **common)
        _, fixed, _ = solve(plain, b, **common)
        state, recovered, seconds = solve(plain, b, pupil="recover", **common)
        calibration = state.calibration[0]
        row = {"method": method, "error_true_pupil": relative_error(given, truth),
               "error_ideal_pupil": relative_error(fixed, truth), "error_recovered": relative_error(recovered, truth),
               "phase_error_rms": phase_error_rms(calibration.pupil, true.pupil_function(), support),
               "zernike_recovered": calibration.zernike[:11].tolist(), "zernike_true": expected[:11].tolist(),
               "seconds_recover": seconds}
        row["ratio"] = row["error_recovered"] / row["error_true_pupil"]
        rows.append(row)
        print(f"{method}: object error true pupil {row['error_true_pupil']:.4f}, ideal {row['error_ideal_pupil']:.4f}, "
              f"recovered {row['error_recovered']:.4f} (x{row['ratio']:.2f}); phase error {row['phase_error_rms']:.4f} "
              f"rad RMS; {seconds:.1f} s")
    result = {"grid": args.grid, "iters": args.iters, "photons": args.photons, "rows": rows,
              "aberration": "defocus 20 um + 0.5 rad Z6 + 0.3 rad Z8"}
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(RESULTS / "calibration.json") as path:
        Path(path).write_text(json.dumps(result, indent=2))
    lines = [f"# Pupil recovery, FP-{args.grid} ({result['aberration']}, Poisson {args.photons:g} photons, "
             f"{args.iters} iterations, fast preset, rank 1)", "",
             "| method | error, true pupil | error, ideal pupil | error, recovered | ratio | phase error (rad RMS) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['error_true_pupil']:.4f} | {r['error_ideal_pupil']:.4f} | "
              f"{r['error_recovered']:.4f} | {r['ratio']:.2f} | {r['phase_error_rms']:.4f} |" for r in rows]
    lines += ["", "Zernike (Noll 4..8, radians): true " + ", ".join(f"{v:.3f}" for v in expected[3:8])]
    lines += [f"recovered ({r['method']}): " + ", ".join(f"{v:.3f}" for v in r["zernike_recovered"][3:8]) for r in rows]
    with atomic_path(RESULTS / "calibration.md") as path:
        Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
