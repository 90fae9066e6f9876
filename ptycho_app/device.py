"""Device and precision selection."""

from __future__ import annotations

import ctypes
import sys

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


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed large buffers for reuse instead of returning them to the system.

    PyTorch does not cache CPU memory: every FFT output of an iteration is a fresh buffer of
    several MiB, and glibc's defaults hand such buffers back to the kernel when freed, so each
    iteration page-faults them in again (measured: twice the cost of the FFTs on FP-256).  A
    fixed mmap threshold of 32 MiB (the solver's work buffers stay below it, see
    ``ptycho_app.lifting.fp.BLOCK_BYTES``) and a 1 GiB trim threshold keep them in the heap.
    Process-wide, idempotent; does nothing outside Linux/glibc.

    Returns
    -------
    bool
        Whether the allocator was tuned (now or before).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok
