"""Memory: what a run needs (from declared shapes, before reading or allocating) and what is free.

The estimates are deliberately rough (within a factor of about two): they exist to refuse, with a
one-line message, what cannot fit, instead of letting NumPy or torch fail in the middle of a run.
"""

from __future__ import annotations

import os

#: Bytes per element of the FP solver's complex and real work arrays, per precision.
COMPLEX_BYTES = {"single": 8, "double": 16}
#: Copies of the factor (B, n, r) a solver holds: U, its gradient, momentum, the previous iterate,
#: the preconditioned direction and a spare for the line search.
FACTOR_COPIES = 6
#: Work buffers of one frame block in the FP operator (windows, fields, spectra, power, weights).
BLOCK_BUFFERS = 5


class NotEnoughMemoryError(ValueError):
    """A run would need more memory than is available (the message gives both)."""


def format_bytes(size: float) -> str:
    """``"62 GiB"``, ``"1.5 GiB"``, ``"300 MiB"``, ``"91.4 KiB"``, ``"512 bytes"``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value >= 10 and unit != "KiB" else f"{value:.1f} {unit}"
    return f"{size:.0f} bytes"


def available_memory(device=None) -> int:
    """Bytes that can be allocated now on ``device`` (default: the host).

    The host's figure is psutil's ``available`` when psutil is installed, else ``MemAvailable``
    of ``/proc/meminfo``, else the free physical pages (``os.sysconf``). A CUDA device reports its
    free memory through torch.
    """
    if device is not None and str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def require_memory(needed: float, what: str, device=None):
    """Refuse a run that needs more than the available memory.

    Parameters
    ----------
    needed : float
        Estimated bytes.
    what : str
        What needs them, starting the message (``"reconstruct of x.h5 (BM+UDU, rank 4)"``).
    device : str or torch.device, optional
        Where they are allocated (default: the host).

    Raises
    ------
    NotEnoughMemoryError
        ``"<what> needs about 62 GiB, 21 GiB available"`` with a hint.
    """
    available = available_memory(device)
    if needed > available:
        where = "" if device is None or str(device) == "cpu" else f" on {device}"
        raise NotEnoughMemoryError(f"{what} needs about {format_bytes(needed)}, {format_bytes(available)} "
                                   f"available{where}")


def frames_bytes(shape, itemsize: int) -> int:
    """Reading a frame stack: the stored array, its float32 copy and the checks' masks."""
    count = 1
    for size in shape:
        count *= int(size)
    return count * (int(itemsize) + 4 + 1)


def fp_solve_bytes(batch: int, n_frames: int, frame_size: int, grid_size: int, rank: int,
                   precision="single") -> int:
    """The FP solver's memory for ``batch`` problems on one acquisition.

    Factor copies ``(B, n, r)`` complex with ``n = grid_size^2``, the frames ``(B, L, M, M)`` with
    the predicted intensities and weights, and the operator's per-block work buffers (at least one
    frame of ``(B, r, M, M)``, up to ``ptycho_app.lifting.fp.BLOCK_BYTES`` each), and the results'
    eigendecomposition (QR of the factor and its ``k x k`` core, ``k = min(n, r)``).
    """
    from .lifting.fp import BLOCK_BYTES

    complex_bytes = COMPLEX_BYTES.get(precision, 16)
    n = int(grid_size) ** 2
    factors = FACTOR_COPIES * batch * n * rank * complex_bytes
    frames = 3 * batch * n_frames * frame_size**2 * complex_bytes // 2
    per_frame = batch * rank * frame_size**2 * complex_bytes
    block = max(per_frame, min(n_frames * per_frame, BLOCK_BYTES))
    k = min(n, rank)
    eigen = 3 * batch * (n * k + k * k) * 16  # the results' eigendecomposition, in double precision
    return factors + frames + BLOCK_BUFFERS * block + eigen


def simulate_bytes(grid_size: int, n_frames: int, frame_size: int) -> int:
    """Memory of ``simulate``: the ``N x N`` object, the images it is made from and its spectrum
    (about six complex128 arrays of ``N x N``), and the frames."""
    return 6 * grid_size**2 * 16 + 3 * n_frames * frame_size**2 * 8


def full_field_bytes(grid_size: int, padded_grid: int, n_frames: int, field_size: int, block: int) -> int:
    """Memory of ``simulate --field``: the object and its images (as :func:`simulate_bytes`), the
    padded object, pupil and frequency grids (about five ``Np x Np`` arrays), one block of spherical
    phases, waves and spectra (about six ``block x Np x Np`` arrays of 8 bytes), and the frames
    with their noisy copies."""
    return (6 * grid_size**2 * 16 + 5 * padded_grid**2 * 16 + 6 * block * padded_grid**2 * 8
            + 4 * n_frames * field_size**2 * 8)


def sense_bytes(problem: str, n: int, measurements: int, rank: int, batch: int, is_complex: bool) -> int:
    """Memory of a ``sense`` run (double precision): the dense ``n x n`` truth and its copies, the
    factor copies ``(B, n, r)``, and for sensing the ``m`` dense ``n x n`` measurement matrices (the
    drawn ones, their Hermitian part and the scaled copy)."""
    itemsize = 16 if is_complex else 8
    dense = 4 * n * n * itemsize + FACTOR_COPIES * batch * n * rank * itemsize
    if problem == "sensing":
        dense += 3 * measurements * n * n * itemsize + 2 * batch * measurements * n * rank * itemsize
    return dense


#: Texts of allocation failures: torch's CPU allocator, CUDA, and others that wrap them.
OUT_OF_MEMORY_TEXTS = ("not enough memory", "DefaultCPUAllocator", "out of memory", "can't allocate memory",
                       "Unable to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception is an allocation failure (MemoryError, torch.OutOfMemoryError, or the
    RuntimeError of torch's CPU allocator)."""
    return isinstance(error, MemoryError) or any(text in str(error) for text in OUT_OF_MEMORY_TEXTS)


def out_of_memory_message(error: BaseException) -> str:
    """One line for an allocation failure: what was asked for, when the error says, and what to lower."""
    import re

    text = str(error)
    asked = re.search(r"(?:tried to allocate|unable to allocate)\s+(\d+ bytes|[0-9.]+\s*[KMGT]i?B)", text,
                      re.IGNORECASE)
    amount = f" (an allocation of {asked.group(1)} failed)" if asked else ""
    if asked and asked.group(1).endswith(" bytes"):
        amount = f" (an allocation of {format_bytes(int(asked.group(1).split()[0]))} failed)"
    where = " on the GPU" if "CUDA" in text or "cuda" in text else ""
    return (f"out of memory{where}{amount}: use a smaller --rank, --upsample, --batch-size or problem size"
            + (", or --device cpu" if where else ""))
