"""``sense --problem asymmetric``: Gaussian sensing of an ``n1 x n2`` matrix by UV and UDV.

The ground truth has singular values ``1, 2, ..., truth_rank``; ``m = 5 (n1 + n2) r`` Gaussian
measurements by default; the factor rank defaults to ``min(n1, n2)`` (full-width factors).  UV
(Soltanolkotabi, Stoger, Xie 2023) and UDV (Hou, Sra, Yurtsever 2025) run side by side in one
batched solve through the symmetric embedding (:mod:`ptycho_app.lifting.asymmetric`).  Results
use the ``sense`` layout with ``singular_values`` instead of ``eigenvalues`` (:mod:`ptycho_app.io.results`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .analysis import factor_svd
from .io.results import Result, write_result
from .problems import asymmetric_problem
from .resources import require_memory
from .session import RunOptions, batch_options, problem_history, problem_options, run_to_end


def asymmetric_bytes(n1: int, n2: int, m: int, rank: int, batch: int) -> int:
    """Memory of the run (double precision): the ``m`` dense ``n1 x n2`` matrices (drawn and scaled),
    the truth and the factor copies."""
    return 8 * (2 * m * n1 * n2 + 4 * n1 * n2 + 16 * batch * (n1 + n2) * rank)


def run_asymmetric(shape=(40, 30), truth_rank=2, measurements=None, noise=0.0, run: RunOptions | None = None,
                   out_dir="sense-results", progress=True, **options) -> list[Path]:
    """Solve a random asymmetric sensing problem with UV and UDV (or ``run.method``) and write
    ``<out>/<name>.<method>.h5``.

    Parameters
    ----------
    shape : (int, int)
        ``(n1, n2)``.
    truth_rank : int
    measurements : int, optional
        Default ``5 (n1 + n2) truth_rank``.
    noise : float
        Gaussian noise relative to the RMS measurement.
    run : RunOptions
        ``method`` ``both`` means ``uv`` and ``udv``.
    options
        :class:`~ptycho_app.solvers.SolverOptions` fields; ``rank`` defaults to ``min(n1, n2)``.

    Returns
    -------
    list of Path
    """
    run = run or RunOptions(preset="paper", precision="double")
    if run.precision != "double":
        raise ValueError("sense --problem asymmetric runs in double precision (--precision double)")
    if len(shape) != 2 or any(int(v) != v or v < 1 for v in shape):
        raise ValueError(f"--shape must be two positive integers N1 N2, got {shape}")
    n1, n2 = (int(v) for v in shape)
    if int(truth_rank) != truth_rank or not 1 <= truth_rank <= min(n1, n2):
        raise ValueError(f"--truth-rank must be an integer in 1..min(N1, N2) = {min(n1, n2)}, got {truth_rank}")
    m = 5 * (n1 + n2) * truth_rank if measurements is None else measurements
    if int(m) != m or m < 1:
        raise ValueError(f"--measurements must be a positive integer, got {m}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"--noise must be a finite number >= 0, got {noise}")
    methods = run.methods(asymmetric=True)
    seed = int(options.pop("seed", None) or 0)
    if options.get("rank") is None:
        options["rank"] = min(n1, n2)
    solver_options = batch_options(methods, run.preset, (seed,), **options)
    rank = int(solver_options.rank)
    require_memory(asymmetric_bytes(n1, n2, m, rank, len(methods)),
                   f"sense --problem asymmetric --shape {n1} {n2} (rank {rank}, {m} measurements)")
    singular_values = tuple(float(k) for k in range(1, truth_rank + 1))
    operator, b, truth = asymmetric_problem(n1, n2, singular_values, m, seed=seed)
    if noise > 0:
        rms = b.flatten().norm() / np.sqrt(b.numel())
        b = b + noise * rms * torch.randn(b.shape, generator=torch.Generator().manual_seed(seed + 7), dtype=b.dtype)
    config = {"problem": "asymmetric", "shape": [n1, n2], "truth_rank": truth_rank, "measurements": m,
              "noise": noise, "seed": seed}
    name = f"asymmetric-{n1}x{n2}-r{truth_rank}-m{m}" + (f"-noise{noise:g}" if noise else "")
    batch = len(methods)
    state, interrupted = run_to_end(operator, b.expand(batch, *b.shape[1:]), solver_options, progress=progress,
                                    label="+".join(m_.upper() for m_ in methods))
    if state is None or interrupted:
        raise KeyboardInterrupt
    values = factor_svd(state.U, state.physical_weights(), n1)[0].numpy()
    written = []
    for k, method in enumerate(methods):
        recorded = problem_options(solver_options, k, batch, run.preset)
        ran, losses = problem_history(state, k)
        attrs = {"problem": "asymmetric", "n1": n1, "n2": n2, **recorded, "iterations": ran, "run_iterations": ran,
                 "input_file": name,
                 "input_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
                 "scale": float(state.scale[k]), "relative_residual": float(state.relative_residual[k]),
                 "seconds": float(state.elapsed), "device": "cpu", "precision": run.precision,
                 "interrupted": False, "options": recorded, "problem_config": config}
        result = Result(eigenvalues=None, singular_values=values[k], loss=losses, U=state.U[k].numpy(),
                        d=state.d[k].numpy().astype(np.float64), attrs=attrs, reference_matrix=truth)
        path = Path(out_dir) / f"{name}.{method}.h5"
        write_result(path, result)
        written.append(path)
    return written
