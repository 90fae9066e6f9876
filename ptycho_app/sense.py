"""The papers' matrix problems from the shell: matrix completion and Gaussian matrix sensing.

Results use the same file layout as FP reconstructions (eigenvalues, loss, factors), with the
ground-truth matrix as ``reference_matrix``, so ``ptycho-app compare`` reports their errors and
spectra.  Defaults reproduce Hou, Sra and Yurtsever's completion experiment (n = 100, eigenvalues
1, 2, 3, 900 entries, a full-rank factor) with the ``paper`` preset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .analysis import factor_eigh
from .io.results import Result, write_result
from .problems import completion_problem, sensing_problem
from .reference import check_reference, reference_attrs
from .resources import require_memory, sense_bytes
from .session import RunOptions, batch_options, problem_history, problem_options, run_to_end
from .solvers import DEFAULT_PRESET
from .solvers.options import PROBLEM_PRESETS

PROBLEMS = ("completion", "sensing", "asymmetric")


def default_measurements(problem: str, n: int, truth_rank: int) -> int:
    """900 entries for the papers' n = 100, rank 3 completion (3 n r); 5 n r Gaussian measurements."""
    return 3 * n * truth_rank if problem == "completion" else 5 * n * truth_rank


def run_sense(problem="completion", n=100, truth_rank=3, measurements=None, noise=0.0, is_complex=False,
              run: RunOptions | None = None, out_dir="sense-results", progress=True, shape=None,
              reference=None, **options) -> list[Path]:
    """Build a random problem, solve it with each method (side by side, one batched solve) and write
    ``<out>/<name>.<method>.h5``.

    Parameters
    ----------
    problem : {"completion", "sensing", "asymmetric"}
        ``asymmetric``: an ``shape`` (n1, n2) matrix by UV and UDV (:mod:`ptycho_app.sense_asymmetric`).
    n : int
        Matrix size.
    truth_rank : int
        Rank of the ground truth; its eigenvalues are ``1, 2, ..., truth_rank``.
    measurements : int, optional
        Observed entries / Gaussian measurements (default :func:`default_measurements`).
    noise : float
        Standard deviation of additive Gaussian noise, relative to the RMS measurement.
    is_complex : bool
    run : RunOptions
        Methods, preset (``paper``: the ``fast`` preset is FP-only), precision (default double); the
        device is the CPU (small problems).
    options
        :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's; ``rank`` (the factor
        rank) defaults to ``n``, the papers' over-parameterized factor.
    reference : {None, "nuclear"}
        ``nuclear`` (real sensing only, needs cvxpy): also solve ``min ||X||_*`` s.t. ``A(X) = b``
        (:mod:`ptycho_app.reference`), write it to ``<out>/<name>.nuclear.npy`` and record each
        method's ``||X - X_nuc||_F / ||X_nuc||_F`` as the ``nuclear_reference_error`` attribute.

    Returns
    -------
    list of Path
    """
    run = run or RunOptions(preset=DEFAULT_PRESET["sense"], precision="double")
    if reference is not None:
        check_reference(reference, problem, is_complex, noise)
    if problem == "asymmetric":  # U V^* / U D V^* of an (n1, n2) matrix: ptycho_app.sense_asymmetric
        from .sense_asymmetric import run_asymmetric

        if is_complex:
            raise ValueError("sense --problem asymmetric is real (drop --complex)")
        return run_asymmetric(shape or (40, 30), truth_rank, measurements, noise, run, out_dir, progress, **options)
    if run.preset not in PROBLEM_PRESETS["sense"]:
        raise ValueError(f"--preset {run.preset} is for FP data; sense offers {', '.join(PROBLEM_PRESETS['sense'])} "
                         "(add --momentum nesterov or --init spectral by hand)")
    if problem not in PROBLEMS:
        raise ValueError(f"--problem must be one of {', '.join(PROBLEMS)}, got {problem!r}")
    for name, value, low in (("--n", n, 2), ("--truth-rank", truth_rank, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    if truth_rank > n:
        raise ValueError(f"--truth-rank {truth_rank} exceeds --n {n}")
    m = default_measurements(problem, n, truth_rank) if measurements is None else measurements
    if int(m) != m or m < 1:
        raise ValueError(f"--measurements must be a positive integer, got {m}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"--noise must be a finite number >= 0, got {noise}")
    seed = int(options.pop("seed", None) or 0)
    if options.get("rank") is None:
        options["rank"] = n
    methods = run.methods()
    solver_options = batch_options(methods, run.preset, (seed,), **options)
    torch_device = torch.device("cpu")  # small problems: the CPU is the right place
    dtype = run.dtype(is_complex)
    rank = int(solver_options.rank)
    require_memory(sense_bytes(problem, n, m, rank, len(methods), is_complex),
                   f"sense --problem {problem} --n {n} (rank {rank}, {m} measurements)")
    eigenvalues = tuple(float(k) for k in range(1, truth_rank + 1))
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
    config = {"problem": problem, "n": n, "truth_rank": truth_rank, "measurements": m, "noise": noise,
              "complex": is_complex, "seed": seed}
    name = f"{problem}-n{n}-r{truth_rank}-m{m}" + ("-complex" if is_complex else "") + (
        f"-noise{noise:g}" if noise else "")
    batch = len(methods)
    state, interrupted = run_to_end(operator, b.expand(batch, *b.shape[1:]), solver_options, progress=progress,
                                    label="+".join(m_.upper() for m_ in methods))
    if state is None or interrupted:
        raise KeyboardInterrupt
    U = state.U.to(torch.complex128 if is_complex else torch.float64)
    values = factor_eigh(U, state.physical_weights().to(torch.float64))[0].cpu().numpy()
    nuclear = reference_attrs(operator, b, U, state.physical_weights(), Path(out_dir) / f"{name}.nuclear.npy") \
        if reference else [{}] * batch
    written = []
    for k, method in enumerate(methods):
        recorded = problem_options(solver_options, k, batch, run.preset)
        ran, losses = problem_history(state, k)
        attrs = {"problem": problem, **recorded, "iterations": ran, "run_iterations": ran, "input_file": name,
                 "input_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
                 "scale": float(state.scale[k]),
                 "relative_residual": float(state.relative_residual[k]), "seconds": float(state.elapsed),
                 "device": str(torch_device), "precision": run.precision, "interrupted": False,
                 "options": recorded, "problem_config": config, **nuclear[k]}
        result = Result(eigenvalues=values[k], loss=losses, U=state.U[k].cpu().numpy(),
                        d=state.d[k].cpu().numpy().astype(np.float64), attrs=attrs, reference_matrix=truth)
        path = Path(out_dir) / f"{name}.{method}.h5"
        write_result(path, result)
        written.append(path)
    return written
