"""Pupil recovery on real data: ``blood_aberration.mat`` (../shared) without its authors' pupil.

The file ships with a pupil its authors calibrated (``aberration``).  This script imports the frames
twice with ``ptycho-app import`` (with that pupil, and with ``--ignore-pupil``: the ideal disc),
reconstructs three ways with the fast preset (BM, rank 1, ``--iters``):

- ideal pupil, ``--pupil fixed`` (what ptycho-app did before pupil recovery);
- the authors' pupil, ``--pupil fixed``;
- ideal pupil to start, ``--pupil recover``;

and compares the recovered pupil with the authors': the correlation of their aberration phases
inside the NA (unwrapped, piston and tip/tilt removed: gauges of FP, which shift the object) and
their Zernike coefficients side by side.  Writes ``benchmarks/results/bloodsmear_pupil.{json,md}``
and ``docs/images/bloodsmear_pupil.png``.

Run (after ``make setup``; needs ../shared; about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/bloodsmear_pupil.py [--iters 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "fpm_bloodsmear_uconn"
IMPORT = ["--illumination", str(SHARED / "illumination_blood_aberration.csv"), "--frame-type", "intensity",
          "--na", "0.1", "--magnification", "2", "--pixel-size", "1.845e-6", "--upsample", "4"]
ZERNIKE_SHOWN = 15


def aberration_phase(pupil: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Unwrapped phase inside ``support`` with the least-squares piston and tip/tilt removed (NaN outside)."""
    from ptycho_app.calibration.pupil import linear_phase
    from ptycho_app.calibration.zernike import unwrapped_phase

    phase = np.full(pupil.shape, np.nan)
    phase[support] = (unwrapped_phase(pupil, support) - linear_phase(pupil, support))[support]
    return phase


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000)
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"blood-smear data not found at {SHARED}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptycho_app.calibration.summary import zernike_name
    from ptycho_app.calibration.zernike import fit_zernike, pupil_radius
    from ptycho_app.cli import main as cli
    from ptycho_app.io.measurement import read_measurement
    from ptycho_app.io.results import read_result

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = str(SHARED / "blood_aberration.mat")
        assert cli(["import", source, *IMPORT, "--out", str(tmp / "authors.h5")]) == 0
        assert cli(["import", source, *IMPORT, "--ignore-pupil", "--out", str(tmp / "ideal.h5")]) == 0
        authors = read_measurement(tmp / "authors.h5", load_frames=False).acquisition
        for name, measurement, extra in (("ideal pupil", "ideal", []), ("authors' pupil", "authors", []),
                                         ("recovered pupil", "ideal", ["--pupil", "recover"])):
            out = tmp / name.split()[0].strip("'")
            assert cli(["reconstruct", str(tmp / f"{measurement}.h5"), "--method", "bm", "--rank", "1", "--iters",
                        str(args.iters), "--out", str(out), "--no-progress", *extra]) == 0
            runs[name] = read_result(out / f"{measurement}.bm.h5")

    theirs = authors.pupil_function()
    ours = runs["recovered pupil"].calibration.pupil
    radius = pupil_radius(authors)
    M = theirs.shape[0]
    offsets = np.arange(M) - M // 2
    inside = np.hypot(*np.meshgrid(offsets, offsets, indexing="ij")) <= radius  # the NA disc
    phase_theirs, phase_ours = aberration_phase(theirs, inside), aberration_phase(ours, inside)
    correlation = float(np.corrcoef(phase_theirs[inside], phase_ours[inside])[0, 1])
    zernike_theirs = fit_zernike(theirs, radius, ZERNIKE_SHOWN, support=inside)
    zernike_ours = fit_zernike(ours, radius, ZERNIKE_SHOWN, support=inside)
    amplitude = np.abs(theirs[inside])
    centroid = [float((np.abs(theirs) * c).sum() / np.abs(theirs).sum())
                for c in np.meshgrid(offsets, offsets, indexing="ij")]
    rows = [{"run": name, "relative_residual": float(r.attrs["relative_residual"]), "iterations": r.iterations,
             "seconds": float(r.attrs["seconds"])} for name, r in runs.items()]
    summary = {"iterations": args.iters, "rows": rows, "phase_correlation": correlation,
               "rms_phase_authors": float(np.nanstd(phase_theirs)), "rms_phase_recovered": float(np.nanstd(phase_ours)),
               "zernike_authors": zernike_theirs.tolist(), "zernike_recovered": zernike_ours.tolist(),
               "authors_pupil_amplitude_range_inside_na": [float(amplitude.min()), float(amplitude.max())],
               "authors_pupil_amplitude_centroid_px": centroid}
    results = ROOT / "benchmarks" / "results"
    (results / "bloodsmear_pupil.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# Pupil recovery on blood_aberration.mat (BM, rank 1, fast preset, {args.iters} iterations)", "",
             "| run | relative residual | solver s |", "|---|---|---|"]
    lines += [f"| {r['run']} | {r['relative_residual']:.3f} | {r['seconds']:.0f} |" for r in rows]
    lines += ["", f"Aberration phase inside the NA (unwrapped; piston, tip and tilt removed): correlation "
              f"{correlation:.3f}; RMS {summary['rms_phase_authors']:.3f} rad (authors), "
              f"{summary['rms_phase_recovered']:.3f} rad (recovered).", "",
              "| Zernike (Noll) | authors | recovered |", "|---|---|---|"]
    lines += [f"| Z{j} {zernike_name(j)} | {zernike_theirs[j - 1]:+.3f} | {zernike_ours[j - 1]:+.3f} |"
              for j in range(4, ZERNIKE_SHOWN + 1)]
    (results / "bloodsmear_pupil.md").write_text("\n".join(lines) + "\n")

    figure, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    for ax, (name, result) in zip(axes[0], runs.items(), strict=True):
        image = np.abs(result.object)
        ax.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99))
        ax.set_title(f"{name}: amplitude\nrelative residual {float(result.attrs['relative_residual']):.3f}")
        ax.set_axis_off()
    limit = np.nanmax(np.abs(phase_theirs))
    for ax, phase, title in ((axes[1, 0], phase_theirs, "authors' pupil"), (axes[1, 1], phase_ours, "recovered pupil")):
        shown = ax.imshow(phase, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"{title}: aberration phase (rad)\nRMS {np.nanstd(phase):.2f} inside the NA")
        ax.set_axis_off()
        figure.colorbar(shown, ax=ax, fraction=0.046)
    index = np.arange(4, ZERNIKE_SHOWN + 1)
    axes[1, 2].bar(index - 0.2, zernike_theirs[3:], 0.4, label="authors")
    axes[1, 2].bar(index + 0.2, zernike_ours[3:], 0.4, label="recovered")
    axes[1, 2].set_xticks(index)
    axes[1, 2].set_xlabel("Zernike index (Noll)")
    axes[1, 2].set_ylabel("radians")
    axes[1, 2].set_title(f"Zernike coefficients (phase correlation {correlation:.2f})")
    axes[1, 2].legend()
    figure.tight_layout()
    figure.savefig(ROOT / "docs" / "images" / "bloodsmear_pupil.png", dpi=90)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
