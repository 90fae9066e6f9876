"""The lifted FP operator: intensities as linear measurements of ``X = x x^*``, ``x = vec(S)``."""

from __future__ import annotations

import torch

from ..device import tune_cpu_allocator
from ..physics import Acquisition, FPMeasurement
from .base import residual_norm_sq
from .quadratic import QuadraticLifted

#: Frames per block are chosen so that one (B, r, frames, M, M) complex work buffer stays below
#: this many bytes (unless ``frames_per_block`` is given).
BLOCK_BYTES = 16 * 2**20


class LiftedFP(QuadraticLifted):
    """Lifted FP measurements of the object spectrum.

    ``measure(U, d)`` returns ``(B, L, M, M)`` intensities ``sum_r d_r |psi_j(u_r)|^2``; the cost
    of :meth:`evaluate` (any loss) is ``2 r L`` FFTs of ``M x M`` plus window copies, memory
    ``O(B n r + B r L_block M^2)``.

    The solver's hot path, :meth:`evaluate`, works in persistent buffers (gather,
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
    pupils : (L, M, M) complex, optional
        One transfer function per frame (see :class:`~ptycho_app.physics.FPMeasurement`).

    The pupils the fused pass uses can be replaced between iterations, per frame and per problem,
    by :meth:`set_pupils` (pupil recovery, brightness, sub-pixel illumination): they live on the
    union of the frames' supports, so the cost per iteration does not change.
    """

    has_frames = True

    def __init__(self, acquisition: Acquisition, device="cpu", dtype=torch.complex64,
                 frames_per_block: int | None = None, pupils=None):
        super().__init__(FPMeasurement(acquisition, device=device, dtype=dtype,
                                       frames_per_block=frames_per_block, pupils=pupils))
        self.acquisition = acquisition
        self.frames_per_block = frames_per_block
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self._buffers: dict[str, torch.Tensor] = {}
        # Only the pupil's support (|f| <= NA / wavelength: about a fifth of each window) is
        # gathered and scattered; the rest of the window buffer stays zero.
        lin = self.linear
        M = lin.frame_size
        # union of the frames' supports, (K,) positions in the (ifftshifted) M x M window
        support = torch.nonzero((lin.pupil_forward.reshape(-1, M * M) != 0).any(dim=0)).flatten()
        self._support = support
        self._support_index = lin.window_index.reshape(lin.n_frames, M * M)[:, support]  # (L, K) spectrum
        #: (M, M) or (L, M, M) complex: the transfer functions the operator was built with (unscaled,
        #: window layout): where calibration (:mod:`ptycho_app.calibration.steps`) starts from.
        self.model_pupils = torch.fft.fftshift(lin.pupil_forward, dim=(-2, -1)) * (lin.grid_size / M) ** 2
        self.set_pupils(None)
        #: When True, :meth:`evaluate` also leaves, at no extra FFT, per problem and frame on the
        #: support (:meth:`support_to_window` puts them on the window grid):
        #: ``pupil_gradient`` (B, L, K) complex, ``d loss / d conj(P_l)`` in the unscaled pupil
        #: ``P_l`` of :meth:`set_pupils` (``d loss = 2 Re <pupil_gradient, d P>``), and
        #: ``pupil_energy`` (B, L, K) real, ``c^2 sum_r d_r |window_l(u_r)|^2`` (``c = 1 / N^2``), the
        #: object's energy behind each pupil pixel (ePIE's pupil-step normalizer).
        self.record_pupil_terms = False
        self.pupil_gradient = self.pupil_energy = None
        #: ``(U, d)`` of the last :meth:`evaluate` (references, no copy): where the recorded terms were taken.
        self.last_point = None
        #: When True, :meth:`evaluate` also leaves ``frame_sums``: a dict of (B, L) real per-frame sums
        #: over the (unmasked) pixels of the prediction ``q`` and the measurements ``b``: ``"q"``,
        #: ``"qq"`` (q^2), ``"qb"``, ``"rqb"`` (sqrt(q b)) and ``"b"`` (the brightness fits' inputs).
        self.record_frame_sums = False
        self.frame_sums = None

    def set_pupils(self, pupils=None):
        """Use other transfer functions from now on (in :meth:`evaluate` and every other pass).

        Parameters
        ----------
        pupils : (B, L, M, M) or (L, M, M) or (M, M) complex array or tensor, optional
            Per problem and/or per frame, window layout with DC at ``M // 2`` (as
            ``Acquisition.pupil_function``), unscaled.  Values off the operator's support (the
            union of the frames' pupils it was built with) are set to zero.  None: keep the
            current ones.
        """
        lin, M = self.linear, self.linear.frame_size
        support = self._support
        if pupils is not None:
            inside = torch.zeros(M * M, dtype=torch.bool, device=self.device)
            inside[support] = True
            inside = torch.fft.fftshift(inside.reshape(M, M))  # window layout, DC at M // 2
            pupils = torch.as_tensor(pupils, device=self.device).to(self.dtype) * inside
            lin.set_pupils(pupils)
        # (P, L, K), P = 1 or B; ifft2 with norm="forward" skips the 1/M^2 pass: the pupil carries it
        self._pupil_in = self._on_support(lin.pupil_forward) / M**2
        self._pupil_out = self._on_support(lin.pupil_adjoint)

    def set_support_pupils(self, values: torch.Tensor):
        """:meth:`set_pupils` for pupils given on the support only: the calibration's hot path.

        Parameters
        ----------
        values : (L, K) or (B, L, K) complex tensor
            Per (problem and) frame (or one for all frames: a frame axis of length 1), unscaled, at
            the support's pixels (the layout of ``pupil_gradient``; :meth:`window_positions` gives
            their window-grid places).  The fused pass takes them at once; the linear operator's full
            pupils (the other passes) are built from them when first needed, so every pass sees
            these pupils.
        """
        L = self.linear.n_frames
        values = values.to(device=self.device, dtype=self.dtype)
        scale = (self.linear.frame_size / self.linear.grid_size) ** 2 / self.linear.frame_size**2
        self.linear.set_pupils_on(self._support, values.expand(*values.shape[:-2], L, -1))
        flat = values if values.dim() == 3 else values.unsqueeze(0)
        # (a frame axis of length 1 stays one: the same pupil for every frame costs no (B, L, K) copies)
        self._pupil_in = (flat * scale).expand(-1, L, -1)
        self._pupil_out = (flat.conj() * scale).expand(-1, L, -1)

    def window_positions(self) -> torch.Tensor:
        """(K,) int64: the support's pixels as flat positions in the window layout of :meth:`set_pupils`
        (DC at ``M // 2``): ``support_to_window(v).flatten(-2)[..., window_positions()] == v``."""
        M = self.linear.frame_size
        rows, cols = self._support // M, self._support % M
        return ((rows + M // 2) % M) * M + (cols + M // 2) % M

    def move_windows(self, centers):
        """Crop the frames at other window centres (L, 2) from now on, keeping the operator, its
        support and pupils (LED geometry calibration: a remainder left ``[-0.5, 0.5]``)."""
        self.linear.move_windows(centers)
        M = self.linear.frame_size
        self._support_index = self.linear.window_index.reshape(self.linear.n_frames, M * M)[:, self._support]

    def widen_support(self, mask):
        """Gather and scatter on the union of the current support and ``mask`` (M, M) bool (window
        layout, DC at ``M // 2``) from now on, so pupils moved within it are not cut."""
        M = self.linear.frame_size
        inside = torch.fft.ifftshift(torch.as_tensor(mask, device=self.device), dim=(-2, -1)).reshape(M * M)
        inside[self._support] = True
        self._support = torch.nonzero(inside).flatten()
        self._support_index = self.linear.window_index.reshape(self.linear.n_frames, M * M)[:, self._support]
        self._buffers.clear()  # the zero-filled window buffers assumed the old support
        self.set_pupils(None)

    def support_to_window(self, values: torch.Tensor) -> torch.Tensor:
        """(..., K) values on the support -> (..., M, M) on the window grid (DC at ``M // 2``, zero
        off the support), the layout of :meth:`set_pupils`."""
        M = self.linear.frame_size
        window = torch.zeros(*values.shape[:-1], M * M, dtype=values.dtype, device=values.device)
        window[..., self._support] = values
        return torch.fft.fftshift(window.reshape(*values.shape[:-1], M, M), dim=(-2, -1))

    def _on_support(self, pupil):
        """(M, M), (L, M, M) or (B, L, M, M) ifftshifted pupils -> (1 or B, L, K) on the support."""
        M, L = self.linear.frame_size, self.linear.n_frames
        flat = pupil.reshape(*pupil.shape[:-2], M * M)[..., self._support]
        while flat.dim() < 3:
            flat = flat.unsqueeze(0)
        return flat.expand(-1, L, -1)

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

    def evaluate(self, U, d, b, loss, residual=True):
        """Loss, ``||A(X) - b||^2`` and ``A^*(w) U`` in one pass (see :class:`LiftedOperator`).

        Parameters
        ----------
        U : (B, n, r) complex
        d : (B, r) real
        b : (B, L, M, M) real
        loss : Loss
            Bound to ``b``.
        residual : bool
            Also compute ``||A(X) - b||^2`` (free for the intensity loss).

        Returns
        -------
        value : (B,) real
        residual_sq : (B,) real or None
        product : (B, n, r) complex
        """
        lin = self.linear
        batch, _, rank = U.shape
        M = lin.frame_size
        self.last_point = (U, d)
        columns = U.transpose(-1, -2).contiguous()  # (B, r, n): gathers from contiguous rows are fast
        product = torch.zeros(batch, rank, self.n, dtype=U.dtype, device=U.device)
        value = torch.zeros(batch, dtype=b.dtype, device=U.device)
        residual_sq = torch.zeros_like(value) if residual or loss.weight_is_residual else None
        weights = d.reshape(batch, rank, 1, 1, 1).to(b.dtype)
        # BM (d = 1) skips a pass; checked on the CPU only, where reading d costs no device sync
        unit_weights = d.device.type == "cpu" and bool((d == 1).all())
        K = len(self._support)
        pupil_terms = self.record_pupil_terms
        if pupil_terms:
            self.pupil_gradient = torch.empty(batch, lin.n_frames, K, dtype=U.dtype, device=U.device)
            self.pupil_energy = torch.empty(batch, lin.n_frames, K, dtype=b.dtype, device=U.device)
            pupil_scale = (M / lin.grid_size) ** 2 / M**2
        if self.record_frame_sums:
            self.frame_sums = {key: torch.zeros(batch, lin.n_frames, dtype=b.dtype, device=U.device)
                               for key in ("q", "qq", "qb", "rqb", "b")}
        for block in self.work_blocks(batch, rank):
            frames = block.stop - block.start
            shape = (batch, rank, frames, M, M)
            index = self._support_index[block].reshape(-1)
            windows = self._buffer("windows", shape, U.dtype, zero=True)  # zero off the support
            power = self._buffer("power", shape, b.dtype)
            # forward: gather the windows on the pupil's support, apply the pupil, inverse FFT
            gathered = torch.gather(columns, -1, index.expand(batch, rank, -1)).view(batch, rank, frames, K)
            if pupil_terms:  # keep the object's windows (before the pupil) for the pupil terms
                raw = gathered
                gathered = torch.mul(raw, self._pupil_in[:, None, block],
                                     out=self._buffer("pupil_windows", raw.shape, U.dtype))
            else:
                gathered.mul_(self._pupil_in[:, None, block])
            # scatter_ / gather with the support's index expanded (a view) run 2-4x faster than
            # index_copy_ / index_select along the last axis
            on_support = self._support.expand(batch, rank, frames, K)
            windows.view(batch, rank, frames, M * M).scatter_(-1, on_support, gathered)
            fields = torch.fft.ifft2(windows, norm="forward")
            # predicted intensities of this block: q = sum_r d_r |psi_r|^2 (squares in one contiguous
            # pass, then one add of the strided halves: 1.5x faster than two strided passes)
            squares = torch.square(torch.view_as_real(fields), out=self._buffer("squares", (*shape, 2), b.dtype))
            torch.add(squares[..., 0], squares[..., 1], out=power)
            if not unit_weights:
                power.mul_(weights)
            q = power[:, 0] if rank == 1 else power.sum(dim=1)  # scratch: the loss may overwrite it
            measured = b[:, block]
            if residual_sq is not None and not loss.weight_is_residual:  # before the loss overwrites q
                residual_sq += residual_norm_sq(q, measured, None, loss, True, block)
            if self.record_frame_sums:  # before the loss overwrites q
                self._add_frame_sums(q, measured, loss, block)
            block_value, weight = loss.value_and_weight(q, measured, block, overwrite=True)
            value += block_value
            if residual_sq is not None and loss.weight_is_residual:
                residual_sq += 2 * block_value
            # adjoint on weight * fields: FFT, conjugate pupil on the support, scatter-add
            # (the real weight copied into a complex buffer first: a complex-by-complex product is
            # faster than the mixed-type one, which converts the weight on the fly)
            fields.mul_(self._buffer("complex_weight", weight.shape, U.dtype).copy_(weight)[:, None])
            spectra = torch.fft.fft2(fields)
            selected = torch.gather(spectra.view(batch, rank, frames, M * M), -1, on_support)
            if pupil_terms:  # d loss / d conj(P_l) = c sum_r d_r conj(raw_r) fft2(w psi_r), c = (M/N)^2 / M^2
                gradient_block = self.pupil_gradient[:, block]
                energy_block = self.pupil_energy[:, block]
                if rank == 1:  # straight into the outputs (a view of them)
                    torch.mul(raw[:, 0].conj(), selected[:, 0], out=gradient_block)
                    torch.abs(raw[:, 0], out=energy_block).square_()
                    scale_gradient = pupil_scale * (1.0 if unit_weights else d[:, 0, None, None].to(b.dtype))
                    gradient_block.mul_(scale_gradient)
                    energy_block.mul_(scale_gradient * pupil_scale)
                else:
                    d_r = d.reshape(batch, rank, 1, 1).to(b.dtype) * pupil_scale
                    gradient_block.copy_((raw.conj() * selected * d_r).sum(dim=1))
                    energy_block.copy_((raw.abs().square_() * d_r).sum(dim=1) * pupil_scale)
            selected.mul_(self._pupil_out[:, None, block])
            product.index_add_(-1, index, selected.view(batch, rank, -1))
        return value, residual_sq, product.transpose(-1, -2)

    def _add_frame_sums(self, q, measured, loss, block):
        """Per-frame sums of a block's prediction ``q`` and measurements (masked pixels left out)."""
        keep = loss._keep(block)
        qk = q if keep is None else q * keep
        bk = measured if keep is None else measured * keep
        sums = self.frame_sums
        sums["q"][:, block] = qk.sum(dim=(-2, -1))
        sums["qq"][:, block] = (qk * q).sum(dim=(-2, -1))
        sums["qb"][:, block] = (qk * measured).sum(dim=(-2, -1))
        sums["rqb"][:, block] = (qk * bk).clamp_min(0).sqrt().sum(dim=(-2, -1))
        sums["b"][:, block] = bk.sum(dim=(-2, -1))

    def jacobi_diagonal(self) -> torch.Tensor:
        """(n,) real: ``m(k) = sum_l |P_l(k)|^2``, the diagonal of ``A^*(1) = sum_l B_l^H B_l``.

        ``B_l^H B_l`` is diagonal in the spectrum (a window, the pupil and a unitary FFT), so this is
        exactly ``A^*(1)``; it is zero off the synthetic aperture.  With per-problem pupils
        (:meth:`set_pupils` with (B, L, M, M)) it is the mean over the problems (one preconditioner
        serves the batch).
        """
        lin = self.linear
        M = lin.frame_size
        power = lin.pupil_forward.abs() ** 2
        if power.dim() == 4:
            power = power.mean(dim=0)
        weight = power.real.reshape(-1, M * M) / M**2  # B^H B on one window
        weight = weight.expand(lin.n_frames, -1)
        diagonal = torch.zeros(self.n, dtype=self.real_dtype, device=self.device)
        index = lin.window_index.reshape(lin.n_frames, -1)
        diagonal.index_add_(0, index.reshape(-1), weight.reshape(-1).to(self.real_dtype))
        return diagonal

    def support(self) -> torch.Tensor:
        """(n,) bool: the synthetic aperture (spectrum pixels some frame's pupil sees)."""
        return self.jacobi_diagonal() > 0

    def on_axis_frame(self) -> int:
        """Index of the frame whose illumination is closest to the optical axis."""
        shifts = torch.as_tensor(self.acquisition.direction_sines, dtype=torch.float64)
        return int(torch.argmin((shifts**2).sum(-1)))

    def frame_start(self, b: torch.Tensor) -> torch.Tensor:
        """(B, n) complex: ``B_0^H sqrt(b_0)``, the spectrum of the on-axis frame's amplitude (zero
        phase) seen through the pupil: the classical FP start, up to a scale the solver fits."""
        lin = self.linear
        j = self.on_axis_frame()
        amplitude = b[:, j:j + 1].clamp_min(0).sqrt()  # (B, 1, M, M)
        dark = amplitude.flatten(1).amax(1) <= 0
        if bool(dark.any()):
            raise ValueError(f"the on-axis frame ({j}) of problem(s) {torch.nonzero(dark).flatten().tolist()} is "
                             "dark: use init 'spectral' (--init spectral)")
        return lin.adjoint(amplitude.to(self.dtype), slice(j, j + 1))
