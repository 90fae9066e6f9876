"""Batched factorized solvers (BM, UDU) over the lifted interface: methods, losses, starts, one driver."""

from .factorized import SolverDivergedError, SolverState, initial_factors, iterate, solve
from .methods import METHODS, Method, get_method
from .normalization import largest_eigenvalue, problem_scale
from .options import DEFAULT_PRESET, PRESETS, SolverOptions

__all__ = [
    "DEFAULT_PRESET",
    "METHODS",
    "PRESETS",
    "Method",
    "SolverDivergedError",
    "SolverOptions",
    "SolverState",
    "get_method",
    "initial_factors",
    "iterate",
    "largest_eigenvalue",
    "problem_scale",
    "solve",
]
