"""Input and output."""

from .atomic import atomic_path

__all__ = ["atomic_path"]
