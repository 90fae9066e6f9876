"""Type checks shared by option and acquisition validation (bools are not numbers here)."""

from __future__ import annotations

import math
import numbers


def is_finite_real(value) -> bool:
    """A finite real number (Python or NumPy), not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_whole(value) -> bool:
    """An integer, or a finite real with no fractional part (16.0)."""
    return is_finite_real(value) and float(value).is_integer()
