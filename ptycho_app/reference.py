"""The minimum nuclear-norm solution of a sensing problem, by convex optimization (cvxpy).

Gunasekar et al. (2017), "Implicit regularization in matrix factorization": gradient descent on
``X = U U^T`` from a small start converges to the minimum nuclear-norm solution of an
under-determined sensing problem.  :func:`nuclear_norm_reference` computes that solution so the
factorized methods can be compared with it (``ptycho-app sense --problem sensing --reference nuclear``).

cvxpy is an optional dependency: ``pip install 'ptycho-app[validate]'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .lifting.sensing import GaussianSensing

#: Solver statuses whose solution is used (cvxpy's names).
SOLVED = ("optimal", "optimal_inaccurate")
MISSING = "the nuclear-norm reference needs cvxpy: install the validate extra: pip install 'ptycho-app[validate]'"


@dataclass
class NuclearReference:
    """A minimum nuclear-norm solution and how it was found.

    Attributes
    ----------
    X : (n, n) float64
        The solution (symmetrized).
    status : str
        cvxpy's solver status (``optimal`` or ``optimal_inaccurate``).
    solver : str
        The conic solver (``SCS`` or ``CLARABEL``).
    psd : bool
        Whether ``X`` was constrained PSD (see :func:`nuclear_norm_reference`).
    nuclear_norm : float
        ``||X||_*``.
    relative_residual : float
        ``||A(X) - b|| / ||b||``.
    """

    X: np.ndarray
    status: str
    solver: str
    psd: bool
    nuclear_norm: float
    relative_residual: float


class MissingCvxpy(ImportError, ValueError):
    """cvxpy is not installed (a ValueError too, so the CLI reports it in one line)."""


def import_cvxpy():
    """cvxpy, or :class:`MissingCvxpy` with the one-line install hint."""
    try:
        import cvxpy
    except ImportError:
        raise MissingCvxpy(MISSING) from None
    return cvxpy


def nuclear_norm_reference(operator: GaussianSensing, b, psd: bool = True, solver: str | None = None
                           ) -> NuclearReference:
    """``argmin ||X||_*`` subject to ``A(X) = b`` over real symmetric ``X``.

    With ``psd`` (the default) the problem is ``min trace(X)`` s.t. ``A(X) = b``, ``X >= 0``: for
    PSD ``X`` the nuclear norm is the trace, this is the set Gunasekar et al.'s conjecture is
    stated over (``U U^T`` is PSD, so BM can only reach PSD solutions), and it is the smaller
    SDP (one ``n x n`` cone; SCS solves n = 50 in well under a second).  ``psd=False`` drops the
    cone constraint: ``X = P - N`` with ``P, N >= 0`` and ``min trace(P) + trace(N)``, which is
    ``||X||_*`` over all symmetric ``X`` (two cones; CLARABEL).  When the truth is low rank and
    there are enough measurements both give the truth.  SCS at tolerance 1e-9 is the PSD default because
    CLARABEL stopped there at ``optimal_inaccurate`` (7e-7 from the truth at n = 50, m = 300; SCS 4e-9);
    CLARABEL solves the two-cone form to ``optimal`` in seconds where SCS does not.

    Parameters
    ----------
    operator : GaussianSensing
        Real sensing operator; ``A(X)_i = <A_i, X>`` with its (m, n, n) ``matrices``.
    b : (m,) or (1, m) real array or tensor
        Measurements.
    psd : bool
        Constrain ``X`` PSD (see above).
    solver : {"SCS", "CLARABEL"}, optional
        cvxpy's bundled conic solver; default SCS (tolerance 1e-9) with ``psd``, else CLARABEL.

    Returns
    -------
    NuclearReference

    Raises
    ------
    MissingCvxpy
        cvxpy is not installed (one line: how to install it); an ImportError and a ValueError.
    ValueError
        Complex problems, or the solver found no solution (its status in the message).
    """
    cp = import_cvxpy()
    if not isinstance(operator, GaussianSensing) or operator.is_complex:
        raise ValueError("--reference nuclear needs a real Gaussian sensing problem (--problem sensing, not --complex)")
    solver = solver or ("SCS" if psd else "CLARABEL")
    if solver not in ("SCS", "CLARABEL"):
        raise ValueError(f"nuclear-norm reference solver must be SCS or CLARABEL, got {solver!r}")
    n = operator.n
    A = operator.matrices.detach().cpu().to(torch.float64).numpy().reshape(-1, n * n)  # (m, n^2), row-major
    b = np.asarray(torch.as_tensor(b).detach().cpu(), dtype=np.float64).reshape(-1)
    if b.shape != (A.shape[0],):
        raise ValueError(f"expected {A.shape[0]} measurements, got {b.size}")
    X = cp.Variable((n, n), symmetric=True)
    constraints = [A @ cp.vec(X, order="C") == b]
    if psd:
        constraints.append(X >> 0)
        objective = cp.trace(X)
    else:
        P, N = cp.Variable((n, n), PSD=True), cp.Variable((n, n), PSD=True)
        constraints.append(X == P - N)
        objective = cp.trace(P) + cp.trace(N)
    settings = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000} if solver == "SCS" else {}
    problem = cp.Problem(cp.Minimize(objective), constraints)
    try:
        problem.solve(solver=solver, **settings)
    except cp.error.SolverError as error:
        raise ValueError(f"nuclear-norm reference: {solver} failed: {str(error).splitlines()[0]}") from None
    if problem.status not in SOLVED or X.value is None:
        raise ValueError(f"nuclear-norm reference: {solver} returned status {problem.status} "
                         "(noisy measurements may have no exact PSD fit)")
    value = (X.value + X.value.T) / 2
    residual = np.linalg.norm(A @ value.reshape(-1) - b) / max(np.linalg.norm(b), np.finfo(float).tiny)
    return NuclearReference(X=value, status=problem.status, solver=solver, psd=psd,
                            nuclear_norm=float(np.abs(np.linalg.eigvalsh(value)).sum()),
                            relative_residual=float(residual))


def relative_error(X, reference) -> float:
    """``||X - X_ref||_F / ||X_ref||_F``."""
    return float(np.linalg.norm(np.asarray(X) - reference) / np.linalg.norm(reference))


def check_reference(reference, problem: str, is_complex: bool, noise: float = 0.0):
    """Refuse (one line, before any work) a ``--reference`` that the problem cannot have; needs cvxpy."""
    if reference != "nuclear":
        raise ValueError(f"--reference must be nuclear, got {reference!r}")
    if noise > 0:  # A(X) = b may have no PSD solution, and the solve would be lost after it ran
        raise ValueError(f"--reference nuclear is for noise-free data (min ||X||_* subject to A(X) = b); got "
                         f"--noise {noise:g}")
    if problem != "sensing" or is_complex:
        raise ValueError("--reference nuclear is for real Gaussian sensing: use --problem sensing without --complex "
                         f"(got --problem {problem}{' --complex' if is_complex else ''})")
    import_cvxpy()


def reference_attrs(operator: GaussianSensing, b, U: torch.Tensor, weights: torch.Tensor, path) -> list[dict]:
    """Solve the nuclear-norm reference, write it to ``path`` (.npy) and compare each method with it.

    Parameters
    ----------
    operator : GaussianSensing
    b : (1, m) real tensor
        The measurements the methods fitted.
    U : (B, n, r) float64
        The methods' factors.
    weights : (B, r) real
        Physical weights, ``X_k = U_k diag(weights_k) U_k^T``.
    path : Path
        Where the reference ``(n, n) float64`` goes (written atomically).

    Returns
    -------
    list of dict
        Per method: ``nuclear_reference_error`` (``||X_k - X_nuc||_F / ||X_nuc||_F``) and the
        reference's solver, status, nuclear norm, residual and file name.
    """
    from .io.atomic import atomic_path

    found = nuclear_norm_reference(operator, b)
    with atomic_path(path, nbytes=found.X.nbytes + 128) as tmp, open(tmp, "wb") as f:
        np.save(f, found.X)
    X = (U * weights.to(U.dtype)[:, None, :]) @ U.transpose(-1, -2)
    common = {"nuclear_reference_solver": found.solver, "nuclear_reference_status": found.status,
              "nuclear_reference_psd": found.psd, "nuclear_reference_norm": found.nuclear_norm,
              "nuclear_reference_residual": found.relative_residual, "nuclear_reference_file": Path(path).name}
    return [{"nuclear_reference_error": relative_error(X_k.cpu().numpy(), found.X), **common} for X_k in X]


def nuclear_summary(paths) -> str:
    """Lines for the ``sense`` command: the reference and each result's distance to it."""
    from .io.results import read_result

    results = [read_result(path) for path in paths]
    a = results[0].attrs
    lines = [f"nuclear-norm reference {a['nuclear_reference_file']} ({a['nuclear_reference_solver']}, "
             f"{'PSD, ' if a['nuclear_reference_psd'] else ''}status {a['nuclear_reference_status']}): "
             f"||X_nuc||_* = {a['nuclear_reference_norm']:.6g}, ||A(X_nuc) - b|| / ||b|| = "
             f"{a['nuclear_reference_residual']:.2e}"]
    lines += [f"  {r.method.upper()}: ||X - X_nuc||_F / ||X_nuc||_F = {r.attrs['nuclear_reference_error']:.3e}"
              for r in results]
    return "\n".join(lines)
