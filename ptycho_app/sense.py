"""The papers' matrix problems from the shell: matrix completion and Gaussian matrix sensing.

Results use the same file layout as FP reconstructions (eigenvalues, loss, factors), with the
ground-truth matrix as ``reference_matrix``, so ``ptycho-app compare`` reports their errors and
spectra.  Defaults reproduce Hou, Sra and Yurtsever's completion experiment (n = 100, eigenvalues
1, 2, 3, 900 entries, a full-rank factor).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .analysis import factor_eigh
from .demo import run_with_progress
from .device import resolve_dtype
from .io.results import Result, write_result
from .problems import completion_problem, sensing_problem
from .solvers import SolverOptions

PROBLEMS = ("completion", "sensing")


def default_measurements(problem: str, n: int, rank: int) -> int:
    """900 entries for the papers' n = 100, rank 3 completion (3 n r); 5 n r Gaussian measurements."""
    return 3 * n * rank if problem == "completion" else 5 * n * rank


def run_sense(problem="completion", n=100, rank=3, measurements=None, noise=0.0, is_complex=False,
              solvers=("bm", "udu"), out_dir="sense-results", precision="double", seed=0,
              progress=True, **options) -> list[Path]:
    """Build a random problem, solve it with each solver and write ``<out>/<name>.<solver>.h5``.

    Parameters
    ----------
    problem : {"completion", "sensing"}
    n : int
        Matrix size.
    rank : int
        Rank of the ground truth; its eigenvalues are ``1, 2, ..., rank``.
    measurements : int, optional
        Observed entries / Gaussian measurements (default :func:`default_measurements`).
    noise : float
        Standard deviation of additive Gaussian noise, relative to the RMS measurement.
    is_complex : bool
    solvers : sequence of {"bm", "udu"}
    options
        :class:`~ptycho_app.solvers.SolverOptions` fields; ``rank`` there is ``factor_rank``
        (default ``n``: the papers' over-parameterized factor).

    Returns
    -------
    list of Path
    """
    if problem not in PROBLEMS:
        raise ValueError(f"--problem must be one of {', '.join(PROBLEMS)}, got {problem!r}")
    for name, value, low in (("--n", n, 2), ("--rank", rank, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    if rank > n:
        raise ValueError(f"--rank {rank} exceeds --n {n}")
    m = default_measurements(problem, n, rank) if measurements is None else measurements
    if int(m) != m or m < 1:
        raise ValueError(f"--measurements must be a positive integer, got {m}")
    if not noise >= 0:
        raise ValueError(f"--noise must be >= 0, got {noise}")
    factor_rank = options.pop("factor_rank", None) or n
    per_method = {method: SolverOptions(**{**options, "method": method, "rank": factor_rank, "seed": seed})
                  for method in solvers}
    torch_device = torch.device("cpu")  # small problems: the CPU is the right place
    dtype = resolve_dtype(precision, is_complex)
    eigenvalues = tuple(float(k) for k in range(1, rank + 1))
    if problem == "completion":
        if m > n * n:
            raise ValueError(f"--measurements {m} exceeds the {n * n} entries of the matrix")
        operator, b, truth = completion_problem(n, eigenvalues, m, seed=seed, is_complex=is_complex, dtype=dtype)
    else:
        operator, b, truth = sensing_problem(n, eigenvalues, m, seed=seed, is_complex=is_complex)
    if noise > 0:
        rms = b.flatten().norm() / np.sqrt(b.numel())
        b = b + noise * rms * torch.randn(b.shape, generator=torch.Generator().manual_seed(seed + 7),
                                          dtype=b.dtype)
    config = {"problem": problem, "n": n, "rank": rank, "measurements": m, "noise": noise,
              "complex": is_complex, "seed": seed}
    name = f"{problem}-n{n}-r{rank}-m{m}" + ("-complex" if is_complex else "") + (f"-noise{noise:g}" if noise else "")
    written = []
    for method, method_options in per_method.items():
        state = run_with_progress(operator, b, method_options, label=method.upper(), progress=progress)
        U = state.U.to(torch.complex128 if is_complex else torch.float64)
        values = factor_eigh(U, state.physical_weights().to(torch.float64))[0][0].cpu().numpy()
        attrs = {"problem": problem, "solver": method, "rank": method_options.rank, "step": method_options.step,
                 "step_d": method_options.step_d, "xi": method_options.xi,
                 "radius": method_options.radius if method == "udu" else None, "iterations": state.iteration,
                 "run_iterations": state.iteration, "seed": seed, "input_file": name,
                 "input_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
                 "scale": float(state.scale[0]),
                 "relative_residual": float(state.relative_residual[0]), "seconds": float(state.elapsed),
                 "device": str(torch_device),
                 "precision": precision, "interrupted": False, "options": method_options.to_dict(),
                 "problem_config": config}
        result = Result(eigenvalues=values, loss=state.losses[:, 0].cpu().numpy(), U=state.U[0].cpu().numpy(),
                        d=state.d[0].cpu().numpy().astype(np.float64), attrs=attrs, reference_matrix=truth)
        path = Path(out_dir) / f"{name}.{method}.h5"
        write_result(path, result)
        written.append(path)
    return written
