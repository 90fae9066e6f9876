"""Device and precision selection."""

from __future__ import annotations

import torch

PRECISIONS = {"single": (torch.float32, torch.complex64), "double": (torch.float64, torch.complex128)}


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; ``"cpu"``/``"cuda"`` are taken as given.

    Raises
    ------
    ValueError
        For ``"cuda"`` on a machine without a CUDA device, or an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def resolve_dtype(precision: str = "single", is_complex: bool = True) -> torch.dtype:
    """``"single"`` -> complex64 / float32, ``"double"`` -> complex128 / float64."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision][1 if is_complex else 0]
