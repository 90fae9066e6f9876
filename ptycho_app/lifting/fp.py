"""The lifted FP operator: intensities as linear measurements of ``X = x x^*``, ``x = vec(S)``."""

from __future__ import annotations

import torch

from ..device import tune_cpu_allocator
from ..physics import Acquisition, FPMeasurement
from .quadratic import QuadraticLifted

#: Frames per block are chosen so that one (B, r, frames, M, M) complex work buffer stays below
#: this many bytes (unless ``frames_per_block`` is given).
BLOCK_BYTES = 16 * 2**20


class LiftedFP(QuadraticLifted):
    """Lifted FP measurements of the object spectrum.

    ``measure(U, d)`` returns ``(B, L, M, M)`` intensities ``sum_r d_r |psi_j(u_r)|^2``; the cost
    of ``residual_and_product`` is ``2 r L`` FFTs of ``M x M`` plus window copies, memory
    ``O(B n r + B r L_block M^2)``.

    The solver's hot path, :meth:`residual_and_product`, works in persistent buffers (gather,
    pupil, FFTs and products written with ``out=`` and in place): fresh buffers of this size
    would be page-faulted in on every iteration, which costs the CPU about twice the FFTs.

    Parameters
    ----------
    acquisition : Acquisition
        Optics and illumination.
    device : str or torch.device
    dtype : torch.dtype
        ``torch.complex64`` (default) or ``torch.complex128``.
    frames_per_block : int, optional
        Frames per block. Default: as many as keep one work buffer below :data:`BLOCK_BYTES`
        (all 121 frames of FP-256 up to rank 16; 32 frames of FP-1024 at rank 8).
    """

    def __init__(self, acquisition: Acquisition, device="cpu", dtype=torch.complex64,
                 frames_per_block: int | None = None):
        super().__init__(FPMeasurement(acquisition, device=device, dtype=dtype,
                                       frames_per_block=frames_per_block))
        self.acquisition = acquisition
        self.frames_per_block = frames_per_block
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self._buffers: dict[str, torch.Tensor] = {}
        # Only the pupil's support (|f| <= NA / wavelength: about a fifth of each window) is
        # gathered and scattered; the rest of the window buffer stays zero.
        lin = self.linear
        M = lin.frame_size
        support = torch.nonzero(lin.pupil_forward.reshape(-1) != 0).flatten()
        self._support = support  # (K,) positions in the (ifftshifted) M x M window
        self._support_index = lin.window_index.reshape(lin.n_frames, M * M)[:, support]  # (L, K) spectrum
        # ifft2 with norm="forward" skips the 1/M^2 pass; the pupil carries it instead
        self._pupil_in = lin.pupil_forward.reshape(-1)[support] / M**2
        self._pupil_out = lin.pupil_adjoint.reshape(-1)[support]

    def _buffer(self, name, shape, dtype, zero=False):
        """A persistent work buffer per name and shape (``zero``: zero-filled when created)."""
        key = (name, tuple(shape), dtype)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = (torch.zeros if zero else torch.empty)(shape, dtype=dtype, device=self.device)
            self._buffers[key] = buffer
        return buffer

    def work_blocks(self, batch: int, rank: int) -> list[slice]:
        """Frame blocks for a ``(batch, rank)`` solve (see ``frames_per_block``)."""
        if self.frames_per_block is not None:
            return self.linear.blocks
        L, M = self.linear.n_frames, self.linear.frame_size
        per_frame = batch * rank * M * M * torch.empty((), dtype=self.dtype).element_size()
        step = max(1, min(L, BLOCK_BYTES // per_frame))
        return [slice(j, min(j + step, L)) for j in range(0, L, step)]

    def residual_and_product(self, U, d, b):
        """``A(X) - b`` and ``A^*(A(X) - b) U`` in one pass (see :class:`LiftedOperator`).

        Parameters
        ----------
        U : (B, n, r) complex
        d : (B, r) real
        b : (B, L, M, M) real

        Returns
        -------
        residual : (B, L, M, M) real
        product : (B, n, r) complex
        """
        lin = self.linear
        batch, _, rank = U.shape
        M = lin.frame_size
        columns = U.transpose(-1, -2).contiguous()  # (B, r, n): gathers from contiguous rows are fast
        product = torch.zeros(batch, rank, self.n, dtype=U.dtype, device=U.device)
        residual = torch.empty(batch, lin.n_frames, M, M, dtype=b.dtype, device=U.device)
        weights = d.reshape(batch, rank, 1, 1, 1).to(b.dtype)
        # BM (d = 1) skips a pass; checked on the CPU only, where reading d costs no device sync
        unit_weights = d.device.type == "cpu" and bool((d == 1).all())
        K = len(self._support)
        for block in self.work_blocks(batch, rank):
            frames = block.stop - block.start
            shape = (batch, rank, frames, M, M)
            index = self._support_index[block].reshape(-1)
            windows = self._buffer("windows", shape, U.dtype, zero=True)  # zero off the support
            power = self._buffer("power", shape, b.dtype)
            # forward: gather the windows on the pupil's support, apply the pupil, inverse FFT
            gathered = torch.gather(columns, -1, index.expand(batch, rank, -1)).view(batch, rank, frames, K)
            gathered.mul_(self._pupil_in)
            windows.view(batch, rank, frames, M * M).index_copy_(-1, self._support, gathered)
            fields = torch.fft.ifft2(windows, norm="forward")
            # residual of this block, written in place: sum_r d_r |psi_r|^2 - b
            parts = torch.view_as_real(fields)
            torch.mul(parts[..., 0], parts[..., 0], out=power)
            power.addcmul_(parts[..., 1], parts[..., 1])
            if not unit_weights:
                power.mul_(weights)
            summed = residual[:, block]
            torch.sum(power, dim=1, out=summed)
            summed.sub_(b[:, block])
            # adjoint on residual * fields: FFT, conjugate pupil on the support, scatter-add
            fields.mul_(summed[:, None])
            spectra = torch.fft.fft2(fields)
            selected = spectra.view(batch, rank, frames, M * M).index_select(-1, self._support)
            selected.mul_(self._pupil_out)
            product.index_add_(-1, index, selected.view(batch, rank, -1))
        return residual, product.transpose(-1, -2)
