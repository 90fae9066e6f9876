"""FP solver study: which loss, preconditioner, momentum, start, rank and method reconstruct FP data
fastest, on clean and on Poisson data.

Run (from the repository root, after ``make setup``)::

    .venv/bin/python benchmarks/study.py                    # the whole study (--stage all)
    .venv/bin/python benchmarks/study.py --quick            # smoke test, about a minute
    .venv/bin/python benchmarks/study.py --stage survivors  # stage 2 (and the stall analysis) again
    .venv/bin/python benchmarks/study.py --stage stalls     # only the stall analysis, on the saved runs

Stage 1 (screen): every combination of loss {intensity, amplitude, poisson} x precondition {none,
spectral} x momentum {none, nesterov} x init {random, spectral, frame} x rank {1, 4, 16} x method {BM,
UDU} on FP-128 (``fp_problem(128)``: the FP-256 optics on a 128 x 128 object, 32 x 32 frames), 300
iterations, noise-free and with Poisson noise (1000 photons per bright-field pixel), each option set
with its default steps.

Stage 2 (survivors): per (method, rank, noise) the best few screen combinations (error after 300
iterations, then time) plus the ``paper`` and ``fast`` presets, on FP-256, 1000 iterations, 3 seeds
(rank 16: the best one, 1 seed, to fit the hour); and, on the Poisson data, the ``fast`` settings with
each loss side by side.  Seed ``s`` is both the random start and the Poisson draw.

Stalls: every curve's flat stretches (error above 1% and falling by less than 1% over 100+ iterations)
are classified (start plateau, noise floor, slow, stall: ``classify_flat``), and the worst are rerun
with a trace (``d``, column norms, every loss, band errors) plus one-option-at-a-time variants.

Runs go to ``--workers`` processes (default 2, one torch thread each: on this 2-core machine that
finished a screen sample sooner than one 2-thread process, and a 2-thread process slows down badly
when other processes share the cores).

The error is ``relative_error`` (up to a global phase) of the object from the factors against the
band-limited truth, checked every 10 iterations; the radial band errors split the synthetic
aperture's spectrum by ``|k|`` in units of the objective NA (band 0-1 NA: the pupil itself; bright-field
frames reach about 1.9 NA; past 2 NA only dark-field frames measure the spectrum).  A run whose loss
becomes non-finite (``SolverDivergedError``) is recorded as failed.  Times are solver seconds
(``SolverState.elapsed``: the iterations, without the set-up and without this script's error checks).

Writes ``<out>/study.json`` (every number, the machine) and ``<out>/study.md`` (tables), and the
figures ``docs/images/study-convergence.png`` and ``docs/images/study-bands.png`` (into ``<out>``
when ``--out`` or ``--quick`` is given).  docs/study.md discusses the results.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fp256 import fp_problem  # noqa: E402

from ptycho_app.analysis import align_global_phase, factor_eigh, object_from_factors, relative_error  # noqa: E402
from ptycho_app.io import atomic_path  # noqa: E402
from ptycho_app.lifting import LiftedFP  # noqa: E402
from ptycho_app.lifting.losses import make_loss  # noqa: E402
from ptycho_app.physics import synthetic_aperture  # noqa: E402
from ptycho_app.plotting import save_figure  # noqa: E402
from ptycho_app.simulation import add_noise  # noqa: E402
from ptycho_app.solvers import PRESETS, SolverDivergedError, SolverOptions, iterate  # noqa: E402
from ptycho_app.solvers.normalization import (  # noqa: E402
    problem_scale,
    spectral_preconditioner,
    step_curvatures,
)
from ptycho_app.solvers.options import MOMENTA, PRECONDITIONERS, STARTS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"

LOSS_NAMES = ("intensity", "amplitude", "poisson")
METHOD_NAMES = ("bm", "udu")
NOISES = ("none", "poisson")
PHOTONS = 1000.0  # per bright-field pixel, on average
TARGETS = (0.05, 0.01, 0.003)
CHECK_EVERY = 10
FACTORS = {"loss": LOSS_NAMES, "precondition": PRECONDITIONERS, "momentum": MOMENTA, "init": STARTS}
#: a curve is flat where its error is above STALL_FLOOR and falls by less than STALL_GAIN (relative) over
#: STALL_WINDOW or more iterations; ``classify_flat`` says why (start plateau, slow, floor or stall)
STALL_WINDOW, STALL_GAIN, STALL_FLOOR = 100, 0.01, 0.01
START_RESIDUAL, FLOOR_TOLERANCE = 0.9, 0.05

#: The full study (sizes chosen from the timings in docs/study.md, "Budget").
FULL = {
    "screen": {"grid": 128, "iters": 300, "ranks": (1, 4, 16), "seeds": (0,), "noises": NOISES},
    "survivors": {"grid": 256, "iters": 1000, "ranks": (1, 4, 16), "seeds": (0, 1, 2), "noises": NOISES,
                  "best": 2, "rank16_best": 1, "rank16_seeds": (0,), "loss_ranks": (1, 4)},
    "band_iterations": (10, 30, 100, 300, 1000),
}
#: Smoke test: a few combinations on FP-64, survivors on FP-128.
QUICK = {
    "screen": {"grid": 64, "iters": 60, "ranks": (1, 4), "seeds": (0,), "noises": NOISES,
               "subset": [("intensity", "none", "none", "random"), ("amplitude", "spectral", "nesterov", "frame"),
                          ("poisson", "spectral", "none", "spectral")]},
    "survivors": {"grid": 128, "iters": 60, "ranks": (1, 4), "seeds": (0,), "noises": NOISES, "best": 1,
                  "rank16_seeds": (0,), "loss_ranks": (1,)},
    "band_iterations": (10, 30, 60),
}


# ---------------------------------------------------------------------------------------------
# configurations


def config(method, rank, loss, precondition, momentum, init):
    return {"method": method, "rank": int(rank), "loss": loss, "precondition": precondition,
            "momentum": momentum, "init": init}


def preset_config(name, method, rank):
    values = SolverOptions.preset(name)
    return config(method, rank, values.loss, values.precondition, values.momentum, values.init)


def label(cfg) -> str:
    """``loss/precondition/momentum/init`` with the presets named."""
    for name in PRESETS:
        if preset_config(name, cfg["method"], cfg["rank"]) == cfg:
            return f"{cfg['loss']}/{cfg['precondition']}/{cfg['momentum']}/{cfg['init']} ({name})"
    return f"{cfg['loss']}/{cfg['precondition']}/{cfg['momentum']}/{cfg['init']}"


def key_of(cfg) -> tuple:
    return tuple(cfg[k] for k in ("method", "rank", "loss", "precondition", "momentum", "init"))


# ---------------------------------------------------------------------------------------------
# problems (cached per process)

_PROBLEMS: dict = {}


class Problem:
    """FP-N data (noise-free or Poisson), its operator, truth and radial band masks."""

    def __init__(self, grid, noise, seed):
        acquisition, truth, b = fp_problem(grid)
        if noise == "poisson":
            frames = add_noise(b[0].numpy(), acquisition, "poisson", photons=PHOTONS, seed=seed)
            b = torch.as_tensor(frames)[None]
        self.acquisition, self.truth, self.b, self.grid = acquisition, truth, b, grid
        self.operator = operator_for(grid, acquisition)
        self.truth_spectrum = np.fft.fftshift(np.fft.fft2(truth))
        self.bands, self.band_names = radial_bands(acquisition)

    def truth_loss(self, name):
        """The loss (physical units) of the band-limited truth on these data: 0 without noise."""
        if not hasattr(self, "_truth_loss"):
            self._truth_loss = {}
        if name not in self._truth_loss:
            clean = Problem.get(self.grid, "none", 0).b.double()
            noisy = self.b.double()
            self._truth_loss[name] = float(make_loss(name).bind(noisy).value_and_weight(clean, noisy)[0][0])
        return self._truth_loss[name]

    @staticmethod
    def get(grid, noise, seed):
        key = (grid, noise, seed if noise != "none" else 0)
        if key not in _PROBLEMS:
            _PROBLEMS[key] = Problem(grid, noise, seed)
        return _PROBLEMS[key]


_OPERATORS: dict = {}


def operator_for(grid, acquisition):
    if grid not in _OPERATORS:
        _OPERATORS[grid] = LiftedFP(acquisition)
    return _OPERATORS[grid]


def radial_bands(acquisition):
    """Masks of the synthetic aperture split by ``|k|`` in units of the objective NA: [0, 1], (1, 2],
    (2, 3], (3, 4], (4, max]; names like ``0-1 NA``."""
    N = acquisition.grid_size
    aperture = synthetic_aperture(acquisition)
    k = (np.arange(N) - N // 2) * acquisition.frequency_step * acquisition.wavelength / acquisition.na
    radius = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    top = float(radius[aperture].max())
    edges = [0.0, 1.0, 2.0, 3.0, 4.0, top]
    masks, names = [], []
    for j, (low, high) in enumerate(itertools.pairwise(edges)):
        inside = aperture & (radius <= high) & ((radius > low) if j > 0 else True)
        masks.append(inside)
        names.append(f"{low:.0f}-{high:.0f} NA" if j < len(edges) - 2 else f"{low:.0f}-{high:.1f} NA")
    return masks, names


def band_errors(obj, problem):
    """Relative spectrum error per radial band (global phase aligned over the whole object)."""
    spectrum = np.fft.fftshift(np.fft.fft2(align_global_phase(obj, problem.truth)))
    diff = spectrum - problem.truth_spectrum
    return [float(np.linalg.norm(diff[m]) / np.linalg.norm(problem.truth_spectrum[m])) for m in problem.bands]


def eigen_summary(U, weights):
    """lambda_2 / lambda_1 (None at rank 1) and the tail's share of the trace, from factor_eigh."""
    values = factor_eigh(U.to(torch.complex128), weights.to(torch.float64))[0][0].cpu().numpy()
    values = np.clip(values, 0, None)
    total = float(values.sum())
    ratio = float(values[1] / values[0]) if len(values) > 1 and values[0] > 0 else None
    tail = float(values[1:].sum() / total) if total > 0 and len(values) > 1 else None
    return ratio, tail, [float(v) for v in values]


def short(x, digits=5):
    return None if x is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


# ---------------------------------------------------------------------------------------------
# one run


def run(task):
    """Run one (config, problem, seed) and return its record (a dict of plain numbers)."""
    cfg, grid, noise, seed, iters = (task[k] for k in ("config", "grid", "noise", "seed", "iters"))
    band_at = set(task.get("band_at", ()))
    trace = task.get("trace", False)
    problem = Problem.get(grid, noise, seed)
    N = grid
    options = SolverOptions(**cfg, max_iters=iters, yield_every=CHECK_EVERY, seed=seed)
    record = {"config": cfg, "label": label(cfg), "grid": grid, "noise": noise, "seed": seed, "iters": iters,
              "step": options.step, "step_d": options.step_d, "status": "ok"}
    curve = {"iteration": [], "error": [], "seconds": [], "cpu_seconds": [], "relative_residual": [], "loss": []}
    bands = {"iteration": [], "errors": []}
    diag = {"iteration": [], "d": [], "column_norms": [], "weights": []}
    generator = iterate(problem.operator, problem.b, options)
    cpu = 0.0
    wall_start = time.perf_counter()
    first_wall = None
    state = None
    while True:
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        try:
            state = next(generator)
        except StopIteration:
            break
        except SolverDivergedError as error:
            record["status"] = "diverged"
            record["diverged_after"] = error.state.iteration if error.state is not None else 0
            break
        cpu += time.process_time() - started_cpu
        if first_wall is None:
            first_wall = time.perf_counter() - started_wall
            record["setup_seconds"] = short(first_wall - state.elapsed)
        weights = state.physical_weights()
        obj = object_from_factors(state.U.to(torch.complex128), weights.to(torch.float64), N)[0].cpu().numpy()
        error = relative_error(obj, problem.truth)
        if not math.isfinite(error):
            record["status"] = "diverged"
            record["diverged_after"] = state.iteration
            break
        curve["iteration"].append(state.iteration)
        curve["error"].append(short(error, 6))
        curve["seconds"].append(short(state.elapsed, 4))
        curve["cpu_seconds"].append(short(cpu, 4))
        curve["relative_residual"].append(short(float(state.relative_residual[0]), 5))
        curve["loss"].append(short(float(state.loss[0]), 6))
        if band_at and (state.iteration in band_at or state.done):
            bands["iteration"].append(state.iteration)
            bands["errors"].append([short(e, 4) for e in band_errors(obj, problem)])
        if trace:
            diag["iteration"].append(state.iteration)
            diag["d"].append([short(float(v), 4) for v in state.d[0]])
            diag["weights"].append([short(float(v), 4) for v in weights[0]])
            diag["column_norms"].append([short(float(v), 4) for v in state.U[0].abs().pow(2).sum(0).sqrt()])
    record["wall_seconds"] = short(time.perf_counter() - wall_start, 4)
    record["curve"] = curve
    if band_at:
        record["bands"] = bands
    if trace:
        record["trace"] = diag
        if state is not None:
            losses = state.losses[:, 0]
            rises = (losses[1:] > losses[:-1]).nonzero().flatten().add(1).tolist()
            record["trace"]["loss_rises"] = rises
            record["trace"]["losses"] = [short(float(v), 6) for v in losses]
    errors = curve["error"]
    ok = record["status"] == "ok"
    record["final_error"] = errors[-1] if ok and errors else None
    record["min_error"] = min(errors) if errors else None
    record["min_error_iteration"] = curve["iteration"][errors.index(min(errors))] if errors else None
    record["seconds"] = curve["seconds"][-1] if curve["seconds"] else None
    record["cpu_seconds"] = curve["cpu_seconds"][-1] if curve["cpu_seconds"] else None
    for target in TARGETS:
        hit = next((j for j, e in enumerate(errors) if e < target), None)
        record[f"iterations_to_{target:g}"] = curve["iteration"][hit] if hit is not None else None
        record[f"seconds_to_{target:g}"] = curve["seconds"][hit] if hit is not None else None
    if ok and state is not None:
        ratio, tail, values = eigen_summary(state.U, state.physical_weights())
        record["lambda2_over_lambda1"] = short(ratio, 4)
        record["tail_share"] = short(tail, 4)
        record["eigenvalues"] = [short(v, 5) for v in values]
        record["d"] = [short(float(v), 4) for v in state.d[0]]
    return record


def flat_windows(curve):
    """Maximal windows of at least STALL_WINDOW iterations over which the error is above STALL_FLOOR and
    falls by less than STALL_GAIN (relative): ``[(first check, last check)]`` as indices into the curve."""
    errors = curve["error"]
    span = STALL_WINDOW // CHECK_EVERY
    out, j = [], 0
    while j + span < len(errors):
        if errors[j + span] > STALL_FLOOR and errors[j + span] > (1 - STALL_GAIN) * errors[j]:
            end = j + span
            while end + 1 < len(errors) and errors[end + 1] > (1 - STALL_GAIN) * errors[j]:
                end += 1
            out.append((j, end))
            j = end + 1
        else:
            j += 1
    return out


def classify_flat(records):
    """Find every flat window (``flat_windows``) of these records and say what it is; sets ``record["flat"]``.

    - ``start plateau``: ``X`` is still about 0 at the end of the window (relative residual > START_RESIDUAL):
      the saddle of the small random start;
    - ``floor``: the loss is at most (1 + FLOOR_TOLERANCE) times the loss of the band-limited truth on the
      same data (0 for noise-free data): the run fits the data as well as the truth does, so the data
      cannot pull the error lower (on Poisson data: the noise floor);
    - ``slow``: the loss still falls by more than STALL_GAIN per STALL_WINDOW iterations (on average over the
      window); the object error (from the leading eigenvector) is what lags;
    - ``stall``: none of these: the loss is flat, well above the truth's loss.
    """
    for r in records:
        curve = r["curve"]
        truth_loss = Problem.get(r["grid"], r["noise"], r["seed"]).truth_loss(r["config"]["loss"])
        windows = []
        for j, end in flat_windows(curve):
            loss_from, loss_to = curve["loss"][j], curve["loss"][end]
            if curve["relative_residual"][end] > START_RESIDUAL:
                kind = "start plateau"
            elif loss_to <= (1 + FLOOR_TOLERANCE) * truth_loss:
                kind = "floor"
            elif loss_from - loss_to > STALL_GAIN * abs(loss_from) * (curve["iteration"][end] - curve["iteration"][j]) \
                    / STALL_WINDOW:
                kind = "slow"
            else:
                kind = "stall"
            windows.append({"kind": kind, "from": curve["iteration"][j], "to": curve["iteration"][end],
                            "error_from": curve["error"][j], "error_to": curve["error"][end],
                            "loss_from": loss_from, "loss_to": loss_to, "truth_loss": short(truth_loss, 6),
                            "relative_residual_to": curve["relative_residual"][end]})
        r["flat"] = windows
    return records


# ---------------------------------------------------------------------------------------------
# running many


def _worker_init(threads):
    torch.set_num_threads(threads)


def run_all(tasks, workers, description):
    """Run the tasks (in ``workers`` processes of 2 // workers threads each, or here); records in order."""
    from tqdm import tqdm

    records = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc=description, mininterval=5, file=sys.stdout, dynamic_ncols=False, ncols=110)
    if workers <= 1:
        for j, task in enumerate(tasks):
            records[j] = run(task)
            bar.set_postfix_str(progress_note(records[j]), refresh=False)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_worker_init, initargs=(max(1, 2 // workers),)) as pool:
            for j, record in pool.imap_unordered(_indexed_run, list(enumerate(tasks))):
                records[j] = record
                bar.set_postfix_str(progress_note(record), refresh=False)
                bar.update()
    bar.close()
    return records


def _indexed_run(item):
    j, task = item
    return j, run(task)


def progress_note(record):
    error = record["final_error"]
    return (f"{record['config']['method']} r{record['config']['rank']} {record['label'][:40]} "
            f"{record['noise']}: " + (f"{error:.2e}" if error is not None else record["status"]))


# ---------------------------------------------------------------------------------------------
# stage 1: screen


def screen_tasks(plan):
    s = plan["screen"]
    combos = s.get("subset") or list(itertools.product(LOSS_NAMES, PRECONDITIONERS, MOMENTA, STARTS))
    tasks = []
    # big ranks first so that the pool's last tasks are short ones
    for rank in sorted(s["ranks"], reverse=True):
        for noise in s["noises"]:
            for method in METHOD_NAMES:
                for loss, precondition, momentum, init in combos:
                    for seed in s["seeds"]:
                        tasks.append({"config": config(method, rank, loss, precondition, momentum, init),
                                      "grid": s["grid"], "noise": noise, "seed": seed, "iters": s["iters"]})
    return tasks


def aggregate(records):
    """Group records by (config, noise): means over seeds of what the tables show."""
    groups = {}
    for r in records:
        groups.setdefault((key_of(r["config"]), r["noise"]), []).append(r)
    rows = []
    for (_, noise), runs in groups.items():
        ok = [r for r in runs if r["status"] == "ok"]
        row = {"config": runs[0]["config"], "label": runs[0]["label"], "noise": noise, "grid": runs[0]["grid"],
               "iters": runs[0]["iters"], "runs": len(runs), "failed": len(runs) - len(ok),
               "seeds": [r["seed"] for r in runs]}
        finals = [r["final_error"] for r in ok]
        row["final_error"] = statistics.mean(finals) if len(ok) == len(runs) else None
        row["final_error_max"] = max(finals) if len(ok) == len(runs) else None
        row["min_error"] = statistics.mean(r["min_error"] for r in ok) if ok else None
        row["seconds"] = statistics.mean(r["seconds"] for r in ok) if ok else None
        for target in TARGETS:
            its = [r[f"iterations_to_{target:g}"] for r in runs]
            secs = [r[f"seconds_to_{target:g}"] for r in runs]
            reached = [i for i in its if i is not None]
            row[f"reached_{target:g}"] = len(reached)
            # median over seeds, counted as not reached unless every seed reached it
            row[f"iterations_to_{target:g}"] = statistics.median(reached) if len(reached) == len(runs) else None
            row[f"seconds_to_{target:g}"] = (statistics.median(s for s in secs if s is not None)
                                             if len(reached) == len(runs) else None)
        for name in ("lambda2_over_lambda1", "tail_share"):
            values = [r.get(name) for r in ok if r.get(name) is not None]
            row[name] = statistics.median(values) if values else None
            row[name + "_max"] = max(values) if values else None
        row["stalls"] = sum(1 for r in runs if any(w["kind"] == "stall" for w in r.get("flat", ())))
        rows.append(row)
    return rows


def ranking_key(row):
    """Error after the run (everything below the smallest target ties), then time to that target, then time."""
    error = row["final_error"] if row["final_error"] is not None else math.inf
    to_target = row[f"seconds_to_{TARGETS[-1]:g}"]
    return (max(error, TARGETS[-1]), to_target if to_target is not None else math.inf, row["seconds"] or math.inf)


def survivors(screen_rows, plan):
    """Per (method, rank, noise): the ``best`` screen rows (ranking_key) plus the paper and fast presets."""
    s = plan["survivors"]
    chosen = {}
    for method, rank, noise in itertools.product(METHOD_NAMES, s["ranks"], s["noises"]):
        rows = [r for r in screen_rows if r["config"]["method"] == method and r["config"]["rank"] == rank
                and r["noise"] == noise]
        best = s.get("rank16_best", s["best"]) if rank >= 16 else s["best"]
        picks = [r["config"] for r in sorted(rows, key=ranking_key)[:best]]
        for name in ("paper", "fast"):
            cfg = preset_config(name, method, rank)
            if cfg not in picks:
                picks.append(cfg)
        chosen[(method, rank, noise)] = picks
    return chosen


def factor_effects(screen_rows):
    """What each option buys in the screen: matched pairs that differ only in that option."""
    baseline = {"loss": "intensity", "precondition": "none", "momentum": "none", "init": "random"}
    index = {(key_of(r["config"]), r["noise"]): r for r in screen_rows}
    out = []
    for factor, levels in FACTORS.items():
        for level in levels:
            if level == baseline[factor]:
                continue
            for method, noise in itertools.product(METHOD_NAMES, NOISES):
                ratios, its_ratios, gained, lost, failed = [], [], 0, 0, 0
                for row in screen_rows:
                    cfg = row["config"]
                    if cfg["method"] != method or row["noise"] != noise or cfg[factor] != baseline[factor]:
                        continue
                    other = index.get((key_of({**cfg, factor: level}), noise))
                    if other is None:
                        continue
                    a, b = row["final_error"], other["final_error"]
                    if b is None:
                        failed += 1
                        continue
                    if a is None:
                        continue
                    ratios.append(max(b, 1e-6) / max(a, 1e-6))
                    target = "0.01" if noise == "none" else "0.05"
                    ia, ib = row[f"iterations_to_{target}"], other[f"iterations_to_{target}"]
                    if ia is not None and ib is not None:
                        its_ratios.append(ib / ia)
                    gained += ia is None and ib is not None
                    lost += ia is not None and ib is None
                if not ratios and not failed:
                    continue
                out.append({"factor": factor, "level": level, "baseline": baseline[factor], "method": method,
                            "noise": noise, "pairs": len(ratios) + failed, "failed": failed,
                            "median_error_ratio": statistics.median(ratios) if ratios else None,
                            "better": sum(r < 0.9 for r in ratios), "worse": sum(r > 1.1 for r in ratios),
                            "median_iterations_ratio": statistics.median(its_ratios) if its_ratios else None,
                            "target": "1%" if noise == "none" else "5%", "reaches_newly": gained,
                            "no_longer_reaches": lost})
    return out


# ---------------------------------------------------------------------------------------------
# stage 2


def survivor_tasks(chosen, plan):
    s = plan["survivors"]
    tasks, seen = [], set()
    band_at = band_iterations(plan)

    def add(cfg, noise, seed):
        key = (key_of(cfg), noise, seed)
        if key not in seen:
            seen.add(key)
            tasks.append({"config": cfg, "grid": s["grid"], "noise": noise, "seed": seed, "iters": s["iters"],
                          "band_at": band_at})

    for (_, rank, noise), configs in sorted(chosen.items(), key=lambda kv: -kv[0][1]):
        seeds = s["rank16_seeds"] if rank >= 16 else s["seeds"]
        for cfg in configs:
            for seed in seeds:
                add(cfg, noise, seed)
    # the fast settings with each loss, on Poisson data
    for method, rank, loss in itertools.product(METHOD_NAMES, s["loss_ranks"], LOSS_NAMES):
        if "poisson" in s["noises"]:
            for seed in s["seeds"]:
                add({**preset_config("fast", method, rank), "loss": loss}, "poisson", seed)
    return tasks


def band_iterations(plan):
    """Where stage 2 records the band errors: the plan's band iterations and every 50th."""
    iters = plan["survivors"]["iters"]
    return sorted(set(plan["band_iterations"]) | set(range(50, iters + 1, 50)))


def loss_comparison(rows, plan):
    out = []
    for method, rank in itertools.product(METHOD_NAMES, plan["survivors"]["loss_ranks"]):
        entry = {"method": method, "rank": rank}
        for loss in LOSS_NAMES:
            cfg = {**preset_config("fast", method, rank), "loss": loss}
            row = next((r for r in rows if r["config"] == cfg and r["noise"] == "poisson"), None)
            entry[loss] = None if row is None else {"final_error": row["final_error"],
                                                    "final_error_max": row["final_error_max"],
                                                    "min_error": row["min_error"], "runs": row["runs"],
                                                    "failed": row["failed"]}
        finished = {loss: entry[loss]["final_error"] for loss in LOSS_NAMES
                    if entry[loss] and entry[loss]["final_error"] is not None}
        entry["best"] = min(finished, key=finished.get) if finished else None
        out.append(entry)
    return out


def trace_task(cfg, grid, noise, seed, iters, why):
    return {"config": cfg, "grid": grid, "noise": noise, "seed": seed, "iters": iters, "trace": True, "why": why,
            "band_at": list(range(CHECK_EVERY, iters + 1, CHECK_EVERY))}


def investigate(records, plan, workers, limit=3):
    """Rerun flat curves with a trace (d, column norms, every loss, band errors every 10 iterations).

    Traced: the ``limit`` longest stalls (one per configuration and grid), the two longest ``slow`` windows
    and the longest start plateau (likewise); for the longest stall, the same run with one option at a time changed to
    the fast preset's (and momentum off, noise-free data, the screen's grid); and the fast preset at rank
    1 on the survivors' grid (the prototype that once stalled near 3.9%: amplitude loss, Jacobi (spectral)
    preconditioner, Nesterov, frame start).
    """
    windows = [(w, r) for r in records for w in r.get("flat", ())]
    picked, seen = [], set()

    def pick(kind, count):
        items = sorted([(w, r) for w, r in windows if w["kind"] == kind], key=lambda x: x[0]["from"] - x[0]["to"])
        for _, r in items:
            key = (key_of(r["config"]), r["grid"])
            if count == 0 or key in seen:
                continue
            seen.add(key)
            picked.append((r, kind))
            count -= 1

    pick("stall", limit)
    pick("slow", 2)
    pick("start plateau", 1)
    tasks = [trace_task(r["config"], r["grid"], r["noise"], r["seed"], r["iters"], kind) for r, kind in picked]
    stalls = [r for r, kind in picked if kind == "stall"]
    if stalls:
        r = stalls[0]
        cfg = r["config"]
        fast = preset_config("fast", cfg["method"], cfg["rank"])
        variants = [(f"{k}={fast[k]}", {**cfg, k: fast[k]}, r["grid"], r["noise"])
                    for k in FACTORS if cfg[k] != fast[k]]
        if cfg["momentum"] != "none":
            variants.append(("momentum=none", {**cfg, "momentum": "none"}, r["grid"], r["noise"]))
        if r["noise"] != "none":
            variants.append(("noise-free data", cfg, r["grid"], "none"))
        if r["grid"] != plan["screen"]["grid"]:
            variants.append((f"FP-{plan['screen']['grid']}", cfg, plan["screen"]["grid"], r["noise"]))
        for why, vcfg, grid, noise in variants:
            tasks.append(trace_task(vcfg, grid, noise, r["seed"], r["iters"], f"variant of the stall: {why}"))
    grid, iters = plan["survivors"]["grid"], plan["survivors"]["iters"]
    for method in METHOD_NAMES:
        tasks.append(trace_task(preset_config("fast", method, 1), grid, "none", 0, iters, "prototype (fast, rank 1)"))
    traced = run_all(tasks, workers, "traces")
    classify_flat(traced)
    for task, record in zip(tasks, traced, strict=True):
        record["why"] = task["why"]
        record["normalization"] = normalization_of(Problem.get(task["grid"], task["noise"], task["seed"]),
                                                   SolverOptions(**task["config"]))
    return traced


def normalization_of(problem, options):
    """The solver's tau and the absolute U and d steps for these options (as ``iterate`` computes them)."""
    operator, b = problem.operator, problem.b
    tau, curvature, _ = problem_scale(operator, b, return_vector=True)
    b_normalized = b / tau.reshape(-1, 1, 1, 1)
    loss = make_loss(options.loss).bind(b_normalized)
    preconditioner = spectral_preconditioner(operator) if options.precondition == "spectral" else None
    curvature_u, curvature_d = step_curvatures(operator, b_normalized, loss, options.radius, preconditioner,
                                               curvature)
    return {"tau": float(tau[0]), "curvature_u": float(curvature_u[0]), "curvature_d": float(curvature_d[0]),
            "eta_u": options.step / float(curvature_u[0]),
            "eta_d": (options.step_d or 0) / float(curvature_d[0]) if options.step_d else None}


# ---------------------------------------------------------------------------------------------
# output


def machine(threads, workers):
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": threads,
            "processes": workers, "python": platform.python_version(), "numpy": np.__version__}


def fmt(x, kind="e"):
    if x is None:
        return "-"
    if kind == "e":
        return f"{x:.2e}"
    if kind == "s":
        return f"{x:.1f}"
    if kind == "i":
        return f"{x:.0f}"
    return f"{x:.3g}"


def cell(row, target):
    its, secs = row[f"iterations_to_{target:g}"], row[f"seconds_to_{target:g}"]
    if its is None:
        reached = row.get(f"reached_{target:g}", 0)
        return "-" if not reached else f"- ({reached}/{row['runs']})"
    return f"{its:.0f} / {secs:.1f}"


def markdown(report) -> str:
    lines = ["# FP solver study (benchmarks/study.py)", "",
             f"Machine: `{json.dumps(report['machine'])}`", "",
             f"Date: {report['date']}. Compute time per stage (wall, seconds): "
             + ", ".join(f"{k} {v:.0f}" for k, v in report.get("stage_seconds", {}).items()) + ".", "",
             "Times are solver seconds on a shared 2-core VM (other processes ran now and then): compare "
             "ratios within this run, not absolute numbers. `it / s` = iterations / solver seconds to the "
             "error (checked every 10 iterations; median over seeds, `-` = not reached by every seed, "
             "`(k/n)`: k of n seeds reached it). Error: relative error of the object against the "
             "band-limited truth, up to a global phase.", ""]
    plan = report["plan"]
    if "screen" in report:
        s = plan["screen"]
        rows = report["screen"]["rows"]
        lines += [f"## Stage 1: screen on FP-{s['grid']}, {s['iters']} iterations, seeds {list(s['seeds'])}", ""]
        lines += ["### What each option buys (matched pairs differing only in that option)", "",
                  "`error ratio`: median over pairs of (final error with the option) / (without); `better`/`worse`: "
                  "pairs whose error changes by more than 10%; `it ratio`: median ratio of iterations to the "
                  "target where both reach it; `newly`/`lost`: pairs that reach the target only with/without "
                  "the option; `failed`: diverged with the option.", "",
                  "| option | vs | method | noise | pairs | error ratio | better | worse | target | it ratio | "
                  "newly | lost | failed |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in report["screen"]["effects"]:
            lines.append(f"| {e['factor']}={e['level']} | {e['baseline']} | {e['method']} | {e['noise']} | "
                         f"{e['pairs']} | {fmt(e['median_error_ratio'], 'g')} | {e['better']} | {e['worse']} | "
                         f"{e['target']} | {fmt(e['median_iterations_ratio'], 'g')} | {e['reaches_newly']} | "
                         f"{e['no_longer_reaches']} | {e['failed']} |")
        lines.append("")
        lines += ["### Best five per method, rank and noise (ranked by error after the screen, then time)", "",
                  "| method | rank | noise | loss/precondition/momentum/init | final error | to 5% | to 1% | "
                  "to 0.3% | lambda2/lambda1 | failed |", "|---|---|---|---|---|---|---|---|---|---|"]
        for method, rank, noise in itertools.product(METHOD_NAMES, s["ranks"], s["noises"]):
            group = sorted([r for r in rows if r["config"]["method"] == method and r["config"]["rank"] == rank
                            and r["noise"] == noise], key=ranking_key)
            for r in group[:5]:
                lines.append(f"| {method} | {rank} | {noise} | {r['label']} | {fmt(r['final_error'])} | "
                             f"{cell(r, 0.05)} | {cell(r, 0.01)} | {cell(r, 0.003)} | "
                             f"{fmt(r['lambda2_over_lambda1'])} | {r['failed']} |")
        lines.append("")
        failed = [r for r in rows if r["failed"]]
        lines += [f"Failed (diverged) screen runs: {sum(r['failed'] for r in rows)} of "
                  f"{sum(r['runs'] for r in rows)}" + (": " + "; ".join(
                      f"{r['config']['method']} r{r['config']['rank']} {r['label']} ({r['noise']})" for r in failed)
                      if failed else "") + ".", ""]
    if "survivors" in report:
        s = plan["survivors"]
        sv = report["survivors"]
        lines += [f"## Stage 2: survivors on FP-{s['grid']}, {s['iters']} iterations, seeds {list(s['seeds'])} "
                  f"(rank 16: {list(s['rank16_seeds'])})", "",
                  "| method | rank | noise | loss/precondition/momentum/init | runs | to 5% | to 1% | to 0.3% | "
                  "final error | min error | lambda2/lambda1 | tail share | failed | stalls |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, rank, noise in itertools.product(METHOD_NAMES, s["ranks"], s["noises"]):
            group = [r for r in sv["rows"] if r["config"]["method"] == method and r["config"]["rank"] == rank
                     and r["noise"] == noise and r["config"] in [c for c in sv["chosen"][f"{method}/{rank}/{noise}"]]]
            for r in sorted(group, key=ranking_key):
                lines.append(f"| {method} | {rank} | {noise} | {r['label']} | {r['runs']} | {cell(r, 0.05)} | "
                             f"{cell(r, 0.01)} | {cell(r, 0.003)} | {fmt(r['final_error'])} | "
                             f"{fmt(r['min_error'])} | {fmt(r['lambda2_over_lambda1'])} | {fmt(r['tail_share'])} | "
                             f"{r['failed']} | {r['stalls']} |")
        lines.append("")
        lines += ["### Poisson data: the fast settings with each loss (final error after "
                  f"{s['iters']} iterations, mean over seeds; min along the run in brackets)", "",
                  "| method | rank | intensity | amplitude | poisson | best |", "|---|---|---|---|---|---|"]
        data = [d for d in report.get("data", []) if d["grid"] == s["grid"]]
        for e in sv["loss_comparison"]:
            def entry(v):
                if v is None:
                    return "-"
                if v["final_error"] is None:
                    return f"failed ({v['failed']}/{v['runs']})"
                return f"{v['final_error']:.4f} ({v['min_error']:.4f})"
            lines.append(f"| {e['method']} | {e['rank']} | {entry(e['intensity'])} | {entry(e['amplitude'])} | "
                         f"{entry(e['poisson'])} | {e['best']} |")
        lines.append("")
        if data:
            lines += ["Poisson data sets (1000 photons per bright-field pixel): relative noise in the frames "
                      "||b - b_clean|| / ||b_clean|| and the loss the band-limited truth itself gets on them:", "",
                      "| FP | seed | frame noise | truth's intensity loss | truth's amplitude loss | "
                      "truth's poisson loss |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {d['grid']} | {d['seed']} | {d['frame_noise']:.4f} | {d['truth_loss']['intensity']:.4g} | "
                      f"{d['truth_loss']['amplitude']:.4g} | {d['truth_loss']['poisson']:.4g} |" for d in data]
            lines.append("")
        names = sv["band_names"]
        lines += ["### Error per radial band (relative spectrum error in each band; noise-free, seed 0)", "",
                  "Bands in units of the objective NA: 0-1 NA is the pupil, bright-field frames reach about "
                  "1.9 NA, beyond 2 NA only dark-field frames see the spectrum. Truth's energy share per band: "
                  + ", ".join(f"{n} {100 * w:.2g}%" for n, w in zip(names, sv["band_energy"], strict=True)) + ".", "",
                  "| method | rank | settings | iteration | " + " | ".join(names) + " |",
                  "|---|---|---|---|" + "---|" * len(names)]
        for r in sv["band_table"]:
            lines.append(f"| {r['method']} | {r['rank']} | {r['label']} | {r['iteration']} | "
                         + " | ".join(fmt(v) for v in r["errors"]) + " |")
        lines.append("")
    if "stalls" in report:
        lines += stalls_markdown(report)
    return "\n".join(lines)


def stalls_markdown(report):
    st = report["stalls"]
    lines = ["## Flat stretches and stalls", "",
             f"A curve is flat where its error is above {STALL_FLOOR:.0%} and falls by less than {STALL_GAIN:.0%} "
             f"(relative) over {STALL_WINDOW} or more iterations. Kinds: `start plateau` (the relative residual "
             f"is still above {START_RESIDUAL} at the end of the window: X is about 0, the saddle of the small random "
             "start); `floor` "
             f"(the loss is at most {1 + FLOOR_TOLERANCE:g} x the loss of the band-limited truth on the same data: "
             "the run fits the data as well as the truth does, so the data cannot pull the error lower; only on "
             "Poisson data, the noise floor); `slow` (the loss still falls by more than "
             f"{STALL_GAIN:.0%} per {STALL_WINDOW} iterations on average over the window, only the object error "
             "lags); `stall` (none of these: the loss "
             "is flat, well above the truth's).", "",
             "| stage | noise | kind | curves | configurations | error range |", "|---|---|---|---|---|---|"]
    for row in st["summary"]:
        lines.append(f"| FP-{row['grid']} | {row['noise']} | {row['kind']} | {row['curves']} | {row['configs']} | "
                     f"{row['error_min']:.4f}-{row['error_max']:.4f} |")
    lines.append("")
    listed = [w for w in st["windows"] if w["kind"] in ("stall", "slow")]
    if listed:
        lines += ["Every `stall` and `slow` window:", "",
                  "| FP | noise | method | rank | settings | seed | kind | iterations | error | loss | truth's loss "
                  "| rel. residual |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for w in listed:
            lines.append(f"| {w['grid']} | {w['noise']} | {w['method']} | {w['rank']} | {w['label']} | {w['seed']} | "
                         f"{w['kind']} | {w['from']}-{w['to']} | {w['error_from']:.4f} -> {w['error_to']:.4f} | "
                         f"{w['loss_from']:.6g} -> {w['loss_to']:.6g} | {w['truth_loss']:.6g} | "
                         f"{w['relative_residual_to']:.4g} |")
        lines.append("")
    traced = st.get("traced", [])
    if traced:
        names = report["survivors"]["band_names"]
        lines += ["### Traced runs", "",
                  "Absolute steps `eta_u`, `eta_d` as `iterate` computes them (normalized units); `loss rises`: "
                  "iterations whose loss rose (with Nesterov, a restart each); `d`, `|u_j|`: the last state; band "
                  "errors: " + ", ".join(names) + ".", "",
                  "| why | FP | noise | method | rank | settings | seed | final error | flat windows | eta_u | eta_d | "
                  "loss rises | d | column norms | band errors |", "|---" * 15 + "|"]
        for t in traced:
            flat = "; ".join(f"{w['kind']} {w['from']}-{w['to']} at {w['error_to']:.4f}" for w in t["flat"]) or "none"
            bands = t["bands"]["errors"][-1] if t.get("bands") and t["bands"]["errors"] else []
            final = fmt(t["final_error"]) if t["final_error"] is not None else t["status"]
            lines.append(f"| {t['why']} | {t['grid']} | {t['noise']} | {t['config']['method']} | "
                         f"{t['config']['rank']} | "
                         f"{t['label']} | {t['seed']} | {final} | {flat} | {fmt(t['normalization']['eta_u'])} | "
                         f"{fmt(t['normalization']['eta_d'])} | {len(t['trace'].get('loss_rises', []))} | "
                         f"{top(t['trace']['d'])} | {top(t['trace']['column_norms'])} | "
                         + ", ".join(f"{b:.3g}" for b in bands) + " |")
        lines += ["", "How the traced runs got there (error, relative residual, loss, d and column norms of the four "
                  "largest final columns):", ""]
        for t in traced:
            lines += [f"- {t['why']}: FP-{t['grid']} {t['noise']} {t['config']['method']} rank {t['config']['rank']} "
                      f"{t['label']}, seed {t['seed']}"]
            tr, cu = t["trace"], t["curve"]
            order = np.argsort([-(v or 0) for v in tr["column_norms"][-1]])[:4] if tr["column_norms"] else []
            for it in (10, 50, 100, 200, 300, 500, 1000):
                if it in cu["iteration"]:
                    j = cu["iteration"].index(it)
                    lines.append(f"  - it {it}: error {cu['error'][j]:.4f}, residual {cu['relative_residual'][j]:.4g}, "
                                 f"loss {cu['loss'][j]:.6g}, d {[tr['d'][j][k] for k in order]}, "
                                 f"|u| {[tr['column_norms'][j][k] for k in order]}")
        lines.append("")
    return lines


def top(series, count=4):
    """The last entry of a per-column series, its ``count`` largest columns (by the last value)."""
    if not series:
        return "-"
    last = series[-1]
    if len(last) <= count:
        return str(last)
    return str(sorted(last, key=lambda v: -(v or 0))[:count]) + f" (+{len(last) - count})"


def data_summary(plan):
    """Per Poisson data set: the relative noise in the frames and each loss of the band-limited truth."""
    rows = []
    for stage in ("screen", "survivors"):
        grid = plan[stage]["grid"]
        clean = Problem.get(grid, "none", 0).b.double()
        for seed in plan[stage]["seeds"]:
            noisy = Problem.get(grid, "poisson", seed)
            rows.append({"grid": grid, "seed": seed,
                         "frame_noise": float((noisy.b.double() - clean).norm() / clean.norm()),
                         "truth_loss": {name: noisy.truth_loss(name) for name in LOSS_NAMES}})
    return rows


def stall_summary(records):
    """Counts of flat windows per (grid, noise, kind), and every window as a flat row."""
    windows = [{"grid": r["grid"], "noise": r["noise"], "method": r["config"]["method"], "rank": r["config"]["rank"],
                "label": r["label"], "config": r["config"], "seed": r["seed"], **w}
               for r in records for w in r.get("flat", ())]
    summary = []
    for (grid, noise, kind), group in itertools.groupby(
            sorted(windows, key=lambda w: (w["grid"], w["noise"], w["kind"])),
            key=lambda w: (w["grid"], w["noise"], w["kind"])):
        group = list(group)
        summary.append({"grid": grid, "noise": noise, "kind": kind,
                        "curves": len({(key_of(w["config"]), w["seed"]) for w in group}),
                        "configs": len({key_of(w["config"]) for w in group}),
                        "error_min": min(w["error_to"] for w in group), "error_max": max(w["error_to"] for w in group)})
    return summary, windows


def band_table(records, plan):
    """Band errors at the plan's band iterations for the noise-free seed-0 paper and fast runs."""
    out = []
    for r in records:
        if r["noise"] != "none" or r["seed"] != 0 or "bands" not in r:
            continue
        method, rank = r["config"]["method"], r["config"]["rank"]
        if not any(preset_config(p, method, rank) == r["config"] for p in ("paper", "fast")):
            continue
        for it, errors in zip(r["bands"]["iteration"], r["bands"]["errors"], strict=True):
            if it in plan["band_iterations"]:
                out.append({"method": r["config"]["method"], "rank": r["config"]["rank"], "label": r["label"],
                            "iteration": it, "errors": errors})
    out.sort(key=lambda x: (x["method"], x["rank"], x["label"], x["iteration"]))
    return out


def figures(report, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sv = report["survivors"]
    plan = report["plan"]["survivors"]
    records = sv["records"]
    folder.mkdir(parents=True, exist_ok=True)
    panels = [(m, r) for m in METHOD_NAMES for r in (1, 4) if r in plan["ranks"]]
    noises = plan["noises"]
    fig, axes = plt.subplots(len(noises), len(panels), figsize=(4.2 * len(panels), 3.6 * len(noises)),
                             squeeze=False, sharey=True)
    for i, noise in enumerate(noises):
        for j, (method, rank) in enumerate(panels):
            ax = axes[i][j]
            configs = sv["chosen"][f"{method}/{rank}/{noise}"]
            for c, cfg in enumerate(configs):
                runs = [r for r in records if r["config"] == cfg and r["noise"] == noise]
                if not runs:
                    continue
                for s, r in enumerate(runs):
                    ax.semilogy(r["curve"]["iteration"], r["curve"]["error"], color=f"C{c}", lw=1.2,
                                alpha=0.9 if s == 0 else 0.35, label=r["label"] if s == 0 else None)
            for target in TARGETS:
                ax.axhline(target, color="0.6", lw=0.6, ls=":")
            ax.set_title(f"{method.upper()}, rank {rank}, {'noise-free' if noise == 'none' else 'Poisson 1000'}",
                         fontsize=9)
            ax.set_xlabel("iteration")
            if j == 0:
                ax.set_ylabel("relative error")
            ax.legend(fontsize=6, loc="lower left")
            ax.grid(alpha=0.3, which="both", lw=0.3)
    fig.suptitle(f"FP-{plan['grid']}: error vs iteration (survivors; one line per seed)", fontsize=10)
    save_figure(fig, folder / "study-convergence.png")

    names = sv["band_names"]
    rank = 4 if 4 in plan["ranks"] else plan["ranks"][0]
    fig, axes = plt.subplots(len(METHOD_NAMES), 2, figsize=(9, 3.4 * len(METHOD_NAMES)), squeeze=False,
                             sharey=True)
    iterations = report["plan"]["band_iterations"]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(iterations)))
    for i, method in enumerate(METHOD_NAMES):
        for j, preset in enumerate(("paper", "fast")):
            ax = axes[i][j]
            cfg = preset_config(preset, method, rank)
            run_ = next((r for r in records if r["config"] == cfg and r["noise"] == "none" and r["seed"] == 0), None)
            if run_ is None:
                continue
            for it, color in zip(iterations, colors, strict=True):
                if it in run_["bands"]["iteration"]:
                    errors = run_["bands"]["errors"][run_["bands"]["iteration"].index(it)]
                    ax.semilogy(range(len(names)), [max(e, 1e-7) for e in errors], "o-", color=color,
                                label=f"it {it}")
            ax.axvspan(1.5, len(names) - 0.5, color="0.92", zorder=0)
            ax.set_xticks(range(len(names)), names, fontsize=7)
            ax.set_title(f"{method.upper()} rank {rank}, {preset} preset (shaded: dark-field only)", fontsize=9)
            if j == 0:
                ax.set_ylabel("relative spectrum error in band")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which="both", lw=0.3)
    fig.suptitle(f"FP-{plan['grid']}, noise-free: error per radial frequency band", fontsize=10)
    save_figure(fig, folder / "study-bands.png")


def plan_for_json(plan):
    return json.loads(json.dumps(plan, default=list))


def write(report, out):
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "study.json") as tmp:
        tmp.write_text(json.dumps(report, separators=(",", ":")))
    with atomic_path(out / "study.md") as tmp:
        tmp.write_text(markdown(report) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("screen", "survivors", "stalls", "all"), default="all",
                        help="screen: stage 1; survivors: stage 2 (needs the saved screen), then the stall "
                        "analysis; stalls: only the stall analysis and traces (needs both); all: everything")
    parser.add_argument("--quick", action="store_true", help="a tiny subset (smoke test, about a minute)")
    parser.add_argument("--out", type=Path, help="folder for study.json/.md (default benchmarks/results; "
                        "with --quick benchmarks/results/study-quick); figures go there too unless default")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes running the runs, each with max(1, 2 // workers) torch threads (default 2: "
                        "on 2 cores two 1-thread processes finish the screen sooner than one 2-thread process, "
                        "and suffer less when other processes share the cores; docs/study.md)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    out = args.out or (RESULTS / "study-quick" if args.quick else RESULTS)
    image_folder = IMAGES if (args.out is None and not args.quick) else out
    threads = max(1, 2 // args.workers)
    torch.set_num_threads(threads)
    previous = out / "study.json"
    report = json.loads(previous.read_text()) if previous.exists() else {}
    report.update({"machine": machine(threads, args.workers), "plan": plan_for_json(plan),
                   "date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick})
    report.setdefault("stage_seconds", {})
    if args.stage in ("screen", "all"):
        started = time.perf_counter()
        records = classify_flat(run_all(screen_tasks(plan), args.workers, "screen"))
        rows = aggregate(records)
        report["screen"] = {"records": records, "rows": rows, "effects": factor_effects(rows),
                            "workers": args.workers, "threads_per_worker": threads}
        report["stage_seconds"]["screen"] = time.perf_counter() - started
        report.pop("survivors", None)
        report.pop("stalls", None)
        write(report, out)
        print(f"screen: {len(records)} runs in {report['stage_seconds']['screen']:.0f} s", flush=True)
    if args.stage in ("survivors", "all"):
        if "screen" not in report:
            raise SystemExit(f"no screen in {previous}: run --stage screen first")
        started = time.perf_counter()
        chosen = survivors(report["screen"]["rows"], plan)
        records = classify_flat(run_all(survivor_tasks(chosen, plan), args.workers, "survivors"))
        rows = aggregate(records)
        problem = Problem.get(plan["survivors"]["grid"], "none", 0)
        energy = [float(np.linalg.norm(problem.truth_spectrum[m]) ** 2) for m in problem.bands]
        report["survivors"] = {
            "chosen": {f"{m}/{r}/{n}": c for (m, r, n), c in chosen.items()}, "records": records, "rows": rows,
            "loss_comparison": loss_comparison(rows, plan), "band_names": problem.band_names,
            "band_energy": [e / sum(energy) for e in energy], "band_table": band_table(records, plan)}
        report["stage_seconds"]["survivors"] = time.perf_counter() - started
        write(report, out)
    if args.stage in ("survivors", "stalls", "all"):
        if "survivors" not in report:
            raise SystemExit(f"no survivors in {previous}: run --stage survivors first")
        started = time.perf_counter()
        screen_records, survivor_records = report["screen"]["records"], report["survivors"]["records"]
        classify_flat(screen_records)
        classify_flat(survivor_records)
        report["screen"]["rows"] = aggregate(screen_records)
        report["survivors"]["rows"] = aggregate(survivor_records)
        summary, windows = stall_summary(screen_records + survivor_records)
        print(f"flat windows: {len(windows)} ({sum(w['kind'] == 'stall' for w in windows)} stalls); tracing",
              flush=True)
        traced = investigate(screen_records + survivor_records, plan, args.workers)
        report["stalls"] = {"summary": summary, "windows": windows, "traced": traced}
        report["data"] = data_summary(plan)
        report["stage_seconds"]["investigation"] = time.perf_counter() - started
        write(report, out)
        figures(report, image_folder)
    print(f"wrote {out / 'study.json'} and .md" + (f"; figures in {image_folder}" if "survivors" in report else ""))


if __name__ == "__main__":
    main()
