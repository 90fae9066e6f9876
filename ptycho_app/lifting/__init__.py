"""Lifted measurement operators: FP, matrix completion and matrix sensing behind one interface."""

from .base import LiftedOperator
from .completion import MatrixCompletion
from .fp import LiftedFP
from .quadratic import QuadraticLifted
from .sensing import GaussianSensing

__all__ = ["GaussianSensing", "LiftedFP", "LiftedOperator", "MatrixCompletion", "QuadraticLifted"]
