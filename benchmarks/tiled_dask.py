"""Tiled reconstruction throughput: in process (``--scheduler none``) against a Dask LocalCluster.

Run from the repository root (on a quiet machine; the full run's time is printed at the start)::

    .venv/bin/python benchmarks/tiled_dask.py            # fields 128, 256 and 512: about 8 minutes on 2 cores
    .venv/bin/python benchmarks/tiled_dask.py --quick    # tiny sizes, checks the script (< 1 minute)

For each field size a full-field file is simulated with the CLI (``ptycho-app simulate --field F``,
spherical LED waves, noise-free; 5x5 LEDs at 60 mm: 7x7 need upsample 3 there) and reconstructed
with ``--tile T --overlap V`` (BM, rank 1, the ``fast`` preset, a fixed number of iterations with
``rel_tol = 0``: no convergence stopping, so every tile does the same work) by each configuration:

* ``none``: in process, torch's default thread count (the process's environment has no
  ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``);
* ``none, 1 thread``: in process after ``torch.set_num_threads(1)``;
* ``none, OMP_WAIT_POLICY=PASSIVE``: torch's default threads, OpenMP's idle threads sleeping instead
  of spinning (on a loaded 2-core machine the spinning made the default row up to ~90x slower);
* ``local, W workers``: ``open_scheduler("local", W, 1)``: W worker processes, 1 thread each (torch's
  threads set to 1 by the workers' preload; Dask also spawns them with ``OMP_NUM_THREADS=1``).

Every configuration runs in a fresh Python process (so ``ru_maxrss`` is its own) with a fresh output
folder, through the same functions as ``reconstruct --tile`` (:func:`~ptycho_app.scheduling.open_scheduler`,
:func:`~ptycho_app.tiled.reconstruct_tiled`, :func:`~ptycho_app.io.results.write_result`), timed in
parts: the cluster's start (``LocalCluster`` + ``Client`` + importing ``ptycho_app.tiled`` on every
worker), the solve (first task submitted to last tile back), the stitch and write, and the close.
Tiles/s is tiles / solve seconds.  Peak memory is ``getrusage(RUSAGE_SELF).ru_maxrss`` (kB on Linux)
of the process and, through ``client.run`` after the solve, of every worker.  The stitched BM objects
are compared to the in-process run's (max |a - b| / max |a|).  Writes
``benchmarks/results/tiled_dask.json`` and ``.md`` (``--results`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "ptycho-app"

#: Sizes of the full run and of ``--quick``.
FULL = dict(fields=(128, 256, 512), upsample=2, leds=5, distance=60e-3, tile=64, overlap=16, margin=None,
            iterations=100)
QUICK = dict(fields=(32, 48), upsample=2, leds=3, distance=60e-3, tile=24, overlap=8, margin=4, iterations=3)
#: (name, scheduler, workers, torch threads in process or None for torch's default, extra environment).
CONFIGS = (("none", "none", None, None, {}), ("none, 1 thread", "none", None, 1, {}),
           ("none, OMP_WAIT_POLICY=PASSIVE", "none", None, None, {"OMP_WAIT_POLICY": "PASSIVE"}),
           ("local, 1 worker", "local", 1, None, {}), ("local, 2 workers", "local", 2, None, {}))
#: Environment variables taken out of every configuration's process (torch's default threads and
#: OpenMP's default waiting unless a configuration sets them).
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: Seconds per tile per iteration, 1 thread (5x5 LEDs, 96 x 96 tile frames, float32, 0.40 s for 100
#: iterations of one tile on the 2-core machine), and seconds per configuration's process and cluster
#: start: for the rough time estimate printed at the start.
SECONDS_PER_TILE_ITERATION = 0.004
SECONDS_PER_CONFIG = 8.0


def maxrss_kb() -> int:
    """This process's peak resident set size, kB (Linux's unit of ``ru_maxrss``)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker_state() -> dict:
    """On a Dask worker (through ``client.run``): its peak RSS and torch's threads."""
    import torch

    return {"maxrss_kb": maxrss_kb(), "torch_threads": torch.get_num_threads()}


def import_tiled() -> None:
    """On a Dask worker (through ``client.run``): import what the tasks run."""
    import ptycho_app.tiled  # noqa: F401


def run_config(args) -> dict:
    """One configuration, in this (fresh) process: the timings, peak memories and the stitched object."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from ptycho_app.batch import load_inputs
    from ptycho_app.io.results import result_path, write_result
    from ptycho_app.scheduling import open_scheduler
    from ptycho_app.session import RunOptions
    from ptycho_app.tile_store import TileStore, store_folder
    from ptycho_app.tiled import reconstruct_tiled, tiled_store_record
    from ptycho_app.tiling import TILE_MARGIN

    out = Path(args.out)
    item = load_inputs([args.input])[0]
    run = RunOptions(method="bm", preset="fast", device="cpu", precision=args.precision)
    overrides = {"rank": 1, "max_iters": args.iterations, "rel_tol": 0.0}
    margin = TILE_MARGIN if args.margin is None else args.margin
    store = TileStore(store_folder(out, item.path))  # in the configuration's folder, as reconstruct --tile does
    store.prepare(tiled_store_record(item, args.tile, args.overlap, run, 0, overrides, 16, margin), False, False)
    marks = {}
    record = {"rss_before_kb": maxrss_kb(), "torch_threads": torch.get_num_threads()}
    start = time.perf_counter()
    with open_scheduler(args.scheduler, args.workers, 1 if args.workers else None) as client:
        if client is not None:
            client.run(import_tiled)  # the workers' imports: start-up, not solving
        record["startup_s"] = time.perf_counter() - start
        solve_start = time.perf_counter()
        results = reconstruct_tiled(item, args.tile, args.overlap, run, 0, dict(overrides), progress=False,
                                    client=client, margin=margin, store=store,
                                    on_tiles=lambda finished, tiles: marks.update(last=time.perf_counter(),
                                                                                  tiles=len(tiles)))
        record["solve_s"] = marks["last"] - solve_start
        for method, result in results.items():
            write_result(result_path(out, item.path, method), result)
        store.remove()
        record["stitch_s"] = time.perf_counter() - marks["last"]
        if client is not None:
            workers = client.run(worker_state)
            record["workers"] = [workers[address] for address in sorted(workers)]
        close_start = time.perf_counter()
    record["close_s"] = time.perf_counter() - close_start if client is not None else 0.0
    record["tiles"] = marks["tiles"]
    record["tiles_per_s"] = record["tiles"] / record["solve_s"]
    record["maxrss_kb"] = maxrss_kb()
    np.save(out / "object.npy", results["bm"].object)
    return record


def simulate(field: int, sizes: dict, folder: Path) -> Path:
    """The full-field file of ``field`` camera pixels (the CLI's ``simulate --field``)."""
    path = folder / f"field{field}.h5"
    subprocess.run([str(CLI), "simulate", "--field", str(field), "--frame-size", str(min(field, sizes["tile"])),
                    "--upsample", str(sizes["upsample"]), "--leds", str(sizes["leds"]),
                    "--distance", str(sizes["distance"]), "--noise", "none", "--out", str(path)],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    return path


def child(config, path: Path, out: Path, sizes: dict, precision: str, timeout: float) -> dict:
    """Run one configuration in a fresh process (its own process group, with its Dask workers); its
    record, or one with ``timed_out`` after ``timeout`` seconds (the group killed)."""
    name, scheduler, workers, threads, extra = config
    out.mkdir(parents=True)
    command = [sys.executable, __file__, "--child", "--input", str(path), "--out", str(out),
               "--scheduler", scheduler, "--tile", str(sizes["tile"]), "--overlap", str(sizes["overlap"]),
               "--iterations", str(sizes["iterations"]), "--precision", precision]
    command += ["--workers", str(workers)] if workers else []
    command += ["--threads", str(threads)] if threads else []
    command += ["--margin", str(sizes["margin"])] if sizes["margin"] is not None else []
    env = {**{k: v for k, v in os.environ.items() if k not in CLEARED}, **extra}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        record = {"timed_out": True}
    else:
        if process.returncode != 0:
            raise RuntimeError(f"{name} on {path.name} failed:\n{stderr[-3000:]}")
        record = json.loads(stdout.strip().splitlines()[-1])
    record.update(config=name, scheduler=scheduler, n_workers=workers, threads_set=threads, env=extra,
                  process_s=time.perf_counter() - start)
    return record


def compare(records, outs) -> None:
    """Each record's ``object_max_rel_diff`` to the first finished configuration's stitched object."""
    finished = [(record, out) for record, out in zip(records, outs, strict=True) if not record.get("timed_out")]
    if not finished:
        return
    reference = np.load(finished[0][1] / "object.npy")
    for record, out in finished:
        other = np.load(out / "object.npy")
        record["object_max_rel_diff"] = float(np.abs(other - reference).max() / np.abs(reference).max())


def markdown(result: dict) -> str:
    s = result["sizes"]
    margin = "default (16)" if s["margin"] is None else s["margin"]
    quick = " (QUICK check, not a benchmark)" if result["quick"] else ""
    lines = [f"# Tiled reconstruction: in process vs Dask LocalCluster{quick}",
             "",
             f"{result['date']}, {result['machine']}; load averages (1, 5, 15 min) before "
             f"{result['load_before']}, after {result['load_after']}.",
             "",
             f"Full fields simulated by `ptycho-app simulate --field F --upsample {s['upsample']} --leds {s['leds']} "
             f"--distance {s['distance']} --noise none`; `--tile {s['tile']} --overlap {s['overlap']}`, "
             f"tile margin {margin}; BM, rank 1, preset fast, {s['iterations']} iterations per tile (rel_tol 0: no "
             f"early stop), precision {result['precision']}, CPU.  Each row: a fresh Python process and output folder.",
             "",
             "Start-up: LocalCluster + Client + importing ptycho_app.tiled on the workers.  Solve: first task "
             "submitted to the last tile back (tiles/s = tiles / solve).  Stitch: stitching, writing the result file.  "
             "Peak RSS: ru_maxrss (MiB) of the process running reconstruct (the client for Dask) and of each worker "
             "(client.run after the solve).  Object diff: max |a - b| / max |a| of the stitched BM object against the "
             "in-process row.  Every configuration's process starts without "
             f"{', '.join(CLEARED)}; Dask spawns its workers with {result['worker_environ']} "
             "(distributed.nanny.pre-spawn-environ).",
             ""] + ([f"**Load**: the 1-minute load average was {result['load_before'][0]} at the start: other "
              "processes shared the cores; the in-process rows, torch's default threads above all, are sensitive to "
              "that.", ""] if result["load_before"][0] > 0.5 else []) + [
             "| field | tiles | configuration | torch threads | start-up s | solve s | tiles/s | stitch s | close s | "
             "RSS after imports MiB | peak RSS process MiB | peak RSS workers MiB | object diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for field in result["fields"]:
        for r in field["rows"]:
            if r.get("timed_out"):
                lines.append(f"| {field['field']} | {field['tiles']} | {r['config']} | timed out after "
                             f"{r['process_s']:.0f} s |" + " |" * 9)
                continue
            threads = ", ".join(str(w["torch_threads"]) for w in r["workers"]) if r.get("workers") else \
                str(r["torch_threads"])
            workers_rss = ", ".join(f"{w['maxrss_kb'] / 1024:.0f}" for w in r.get("workers", [])) or "-"
            lines.append(f"| {field['field']} | {r['tiles']} | {r['config']} | {threads} | {r['startup_s']:.2f} | "
                         f"{r['solve_s']:.2f} | {r['tiles_per_s']:.3f} | {r['stitch_s']:.2f} | {r['close_s']:.2f} | "
                         f"{r['rss_before_kb'] / 1024:.0f} | {r['maxrss_kb'] / 1024:.0f} | {workers_rss} | "
                         f"{r['object_max_rel_diff']:.1e} |")
    lines += ["", "Cost against the field (solve seconds per tile):", "",
              "| configuration | " + " | ".join(f"field {f['field']} ({f['tiles']} tiles)" for f in result["fields"])
              + " |", "|---|" + "---|" * len(result["fields"])]
    for k, name in enumerate(r["config"] for r in result["fields"][0]["rows"]):
        lines.append(f"| {name} | " + " | ".join("timed out" if f["rows"][k].get("timed_out") else
                                                 f"{f['rows'][k]['solve_s'] / f['tiles']:.3f}"
                                                 for f in result["fields"]) + " |")
    lines += ["", f"Total wall time {result['total_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (fields 32 and 48, 3x3 LEDs, 3 iterations)"
                        ": checks the script in under a minute")
    parser.add_argument("--fields", type=int, nargs="+", help="field sizes, camera pixels (default 128 256)")
    parser.add_argument("--iterations", type=int, help="iterations per tile (default 100)")
    parser.add_argument("--precision", default="single", choices=("single", "double"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of tiled_dask.json and .md")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one configuration may run (killed then, reported as timed out)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (inputs, result files)")
    # a configuration's own process (internal)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--input", "--out", "--scheduler"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    for flag in ("--workers", "--threads", "--tile", "--overlap", "--margin"):
        parser.add_argument(flag, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_config(args)))
        return
    sizes = dict(QUICK if args.quick else FULL)
    if args.fields:
        sizes["fields"] = tuple(args.fields)
    if args.iterations:
        sizes["iterations"] = args.iterations
    stride = sizes["tile"] - sizes["overlap"]
    tiles = [(len(range(0, f - sizes["tile"], stride)) + 1) ** 2 for f in sizes["fields"]]  # tiling.tile_grid
    estimate = (sum(tiles) * sizes["iterations"] * SECONDS_PER_TILE_ITERATION * (len(CONFIGS) - 0.5)
                + len(tiles) * len(CONFIGS) * SECONDS_PER_CONFIG)
    print(f"fields {sizes['fields']}: {tiles} tiles, {len(CONFIGS)} configurations; "
          f"rough estimate {estimate / 60:.1f} min on a quiet 2-core machine", flush=True)
    if os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.2f}: other processes share the cores (the in-process "
              "row with torch's default threads is very sensitive to that)", flush=True)
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="tiled-dask-"))
    try:
        fields = []
        for field in sizes["fields"]:
            path = simulate(field, sizes, work)
            rows, outs = [], []
            for k, config in enumerate(CONFIGS):
                outs.append(work / f"field{field}-{k}")
                rows.append(child(config, path, outs[-1], sizes, args.precision, args.timeout))
                r = rows[-1]
                if r.get("timed_out"):
                    print(f"field {field} | {r['config']:<29} | timed out after {args.timeout:g} s", flush=True)
                    continue
                print(f"field {field} | {r['config']:<29} | start-up {r['startup_s']:6.2f} s | solve "
                      f"{r['solve_s']:7.2f} s | {r['tiles_per_s']:6.3f} tiles/s | peak RSS {r['maxrss_kb'] / 1024:.0f}"
                      f" MiB" + "".join(f", worker {w['maxrss_kb'] / 1024:.0f} MiB" for w in r.get("workers", [])),
                      flush=True)
            compare(rows, outs)
            fields.append({"field": field, "tiles": tiles[sizes["fields"].index(field)], "rows": rows})
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    import dask
    import distributed
    import torch

    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
                         f"Python {platform.python_version()}, torch {torch.__version__}, distributed "
                         f"{distributed.__version__}",
              "worker_environ": dict(dask.config.get("distributed.nanny.pre-spawn-environ", {})),
              "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "quick": args.quick, "precision": args.precision, "sizes": sizes, "fields": fields,
              "total_s": time.perf_counter() - started}
    from ptycho_app.io import atomic_path

    args.results.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.results / "tiled_dask.json") as path:
        Path(path).write_text(json.dumps(result, indent=2))
    text = markdown(result)
    with atomic_path(args.results / "tiled_dask.md") as path:
        Path(path).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
