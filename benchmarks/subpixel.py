"""Sub-pixel illumination: reconstruction error with rounded, exactly shifted and bilinear pupils.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/subpixel.py [--frame-size 32] [--leds 7]

Noise-free data with non-integer windows from the independent truth
(:func:`ptycho_app.calibration.subpixel.tilted_intensities`: explicit frequencies, LEDs 70 mm below
the sample so that the remainders spread over [-0.5, 0.5]); BM, rank 1, the ``fast`` preset.  Writes
``benchmarks/results/subpixel.json`` and ``.md``.
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
from ptycho_app.calibration.subpixel import bilinear_shift, tilted_intensities
from ptycho_app.io import atomic_path
from ptycho_app.lifting import LiftedFP
from ptycho_app.physics import band_limit
from ptycho_app.simulation import default_acquisition, reference_object
from ptycho_app.solvers import SolverOptions, iterate

RESULTS = Path(__file__).parent / "results"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-size", type=int, default=32)
    parser.add_argument("--leds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    acquisition = default_acquisition(frame_size=args.frame_size, upsample=4, leds_per_side=args.leds,
                                      led_distance=70e-3)
    N = acquisition.grid_size
    obj = reference_object(N)
    b = torch.as_tensor(tilted_intensities(obj, acquisition))[None]
    subpixel = dataclasses.replace(acquisition, subpixel=True)
    truth = band_limit(obj, subpixel)
    models = {"rounded windows (today)": (acquisition, None),
              "sub-pixel, exactly shifted pupil (Acquisition.subpixel)": (subpixel, None),
              "sub-pixel, bilinear pupil": (acquisition, bilinear_shift(acquisition.pupil_function(),
                                                                         acquisition.window_remainders))}
    rows = []
    for name, (a, pupils) in models.items():
        options = SolverOptions.preset("fast", method="bm", rank=1, max_iters=args.iterations,
                                       yield_every=args.iterations)
        start = time.perf_counter()
        for state in iterate(LiftedFP(a, dtype=torch.complex128, pupils=pupils), b, options):  # noqa: B007
            pass
        estimate = object_from_factors(state.U, state.physical_weights(), N)[0].numpy()
        rows.append({"model": name, "object_error": relative_error(estimate, truth),
                     "relative_residual": float(state.relative_residual[0]),
                     "seconds": time.perf_counter() - start})
    result = {"frame_size": args.frame_size, "leds_per_side": args.leds, "iterations": args.iterations,
              "max_remainder_px": float(np.abs(acquisition.window_remainders).max()), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(RESULTS / "subpixel.json") as path:
        Path(path).write_text(json.dumps(result, indent=2))
    lines = [f"# Sub-pixel illumination ({args.frame_size}x{args.frame_size} frames, {args.leds}x{args.leds} LEDs, "
             f"noise-free, {args.iterations} iterations)", "", "| model | object error | relative residual |",
             "|---|---|---|"]
    lines += [f"| {r['model']} | {r['object_error']:.2e} | {r['relative_residual']:.2e} |" for r in rows]
    with atomic_path(RESULTS / "subpixel.md") as path:
        Path(path).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
