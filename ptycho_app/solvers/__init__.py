"""Batched BM and UDU solvers over the lifted interface."""

from .factorized import SolverDivergedError, SolverState, initial_factors, iterate, solve
from .normalization import largest_eigenvalue, problem_scale
from .options import METHODS, SolverOptions

__all__ = [
    "METHODS",
    "SolverDivergedError",
    "SolverOptions",
    "SolverState",
    "initial_factors",
    "iterate",
    "largest_eigenvalue",
    "problem_scale",
    "solve",
]
