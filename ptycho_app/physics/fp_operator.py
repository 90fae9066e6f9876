"""The linear FP measurement operator ``B`` and the FP simulator.

``B`` maps an object spectrum ``x = vec(S)`` (length ``n = N * N``) to the low-resolution fields
of all frames,

    psi_j = ifft2(ifftshift(P * window_j(S))) * (M / N)^2,

so that the measured intensities are ``I_j = |psi_j|^2``.  Everything is batched: spectra come
as ``(..., n)`` tensors and fields as ``(..., L, M, M)``; any leading axes (problems, factor
columns) are carried along.  Frames are processed in blocks to bound memory.
"""

from __future__ import annotations

import numpy as np
import torch

from .acquisition import Acquisition


class FPMeasurement:
    """Matrix-free ``B`` for one acquisition (forward: spectrum -> fields; adjoint back).

    Parameters
    ----------
    acquisition : Acquisition
        Optics and illumination.
    device : str or torch.device
        Where the tensors live.
    dtype : torch.dtype
        ``torch.complex64`` or ``torch.complex128``.
    frames_per_block : int, optional
        How many frames one forward/adjoint call handles at most (memory bound
        ``O(batch * columns * frames_per_block * M^2)``). Default: all frames.
    pupils : (L, M, M) complex, optional
        One transfer function per frame (window layout, DC at ``M // 2``) instead of the
        acquisition's common one (``acquisition.pupil_function()``, shifted per frame by the window
        remainders when ``acquisition.subpixel``): sub-pixel illumination and per-frame brightness
        are folded into these.

    Attributes
    ----------
    pupil_forward, pupil_adjoint : (M, M) or (L, M, M) complex
        The pupil (per frame when ``pupils`` is given), ifftshifted, with the forward and adjoint
        scalings.
    """

    def __init__(self, acquisition: Acquisition, device="cpu", dtype=torch.complex64,
                 frames_per_block: int | None = None, pupils=None):
        self.acquisition = acquisition
        self.device = torch.device(device)
        self.dtype = dtype
        M, N, L = acquisition.frame_size, acquisition.grid_size, acquisition.n_frames
        self.frame_size, self.grid_size, self.n_frames = M, N, L
        self.n = N * N
        self.measurement_shape = (L, M, M)
        # Flat spectrum indices of every window, already in ifftshifted layout so that the
        # gathered block can go straight into ifft2.
        self.move_windows(acquisition.window_centers)
        if pupils is None:
            shift = acquisition.window_remainders if acquisition.subpixel else None
            pupils = acquisition.pupil_function(shift)  # subpixel: P(k - delta_l) per frame
        self.set_pupils(pupils)
        step = L if frames_per_block is None else max(1, int(frames_per_block))
        self.blocks = [slice(j, min(j + step, L)) for j in range(0, L, step)]

    def move_windows(self, centers):
        """Crop the frames' windows at other centres (LED geometry calibration moves them).

        Parameters
        ----------
        centers : (L, 2) int
            Window centres ``(row, col)`` in the ``N x N`` spectrum (``Acquisition.window_centers``).

        Raises
        ------
        ValueError
            When a window would leave the spectrum.
        """
        M, N = self.frame_size, self.grid_size
        centers = np.asarray(centers, dtype=np.int64)
        if centers.shape != (self.n_frames, 2) or np.any(centers - M // 2 < 0) or np.any(centers - M // 2 + M > N):
            raise ValueError(f"window centres must be ({self.n_frames}, 2) with every {M}x{M} window inside the "
                             f"{N}x{N} spectrum")
        offsets = np.arange(M) - M // 2
        rows = centers[:, 0, None, None] + offsets[None, :, None]
        cols = centers[:, 1, None, None] + offsets[None, None, :]
        flat = np.fft.ifftshift(rows * N + cols, axes=(-2, -1))
        self.window_index = torch.as_tensor(flat, device=self.device)  # (L, M, M) int64

    def set_pupils(self, pupils):
        """Replace the transfer functions.

        Parameters
        ----------
        pupils : (M, M), (L, M, M) or (B, L, M, M) complex array or tensor
            Common, per frame, or per problem and frame (a batch of ``B`` problems: spectra then
            come as ``(B, ..., n)``); window layout, DC at ``M // 2``, unscaled.
        """
        M, L = self.frame_size, self.n_frames
        pupils = torch.as_tensor(np.asarray(pupils) if not isinstance(pupils, torch.Tensor) else pupils)
        if pupils.shape[-2:] != (M, M) or pupils.dim() > 4 or (pupils.dim() >= 3 and pupils.shape[-3] != L):
            raise ValueError(f"pupils must have shape ({M}, {M}), ({L}, {M}, {M}) or (B, {L}, {M}, {M}), "
                             f"got {tuple(pupils.shape)}")
        pupils = torch.fft.ifftshift(pupils.to(device=self.device, dtype=self.dtype), dim=(-2, -1))
        scale = (M / self.grid_size) ** 2
        self._pupil_forward = pupils * scale
        self._pupil_adjoint = pupils.conj() * (scale / M**2)
        self._pending = None

    def set_pupils_on(self, index: torch.Tensor, values: torch.Tensor):
        """Replace the transfer functions by ones given only on some window pixels (zero elsewhere).

        The full (ifftshifted) pupils are built from these when a pass first needs them (pupil
        recovery replaces them every iteration; only the lifted operator's fused pass, which keeps
        its own copy on the support, runs between most of those updates).

        Parameters
        ----------
        index : (K,) int64
            Flat positions in the ifftshifted ``M x M`` window (as ``window_index``'s layout).
        values : (L, K) or (B, L, K) complex
            The unscaled pupils there.
        """
        L = self.n_frames
        if values.dim() not in (2, 3) or values.shape[-2] != L or values.shape[-1] != len(index):
            raise ValueError(f"pupil values must have shape ({L}, {len(index)}) or (B, {L}, {len(index)}), "
                             f"got {tuple(values.shape)}")
        self._pending = (index.to(self.device), values.to(device=self.device, dtype=self.dtype))
        self._pupil_forward = self._pupil_adjoint = None

    def _materialize(self):
        index, values = self._pending
        M = self.frame_size
        pupils = torch.zeros(*values.shape[:-1], M * M, dtype=self.dtype, device=self.device)
        pupils[..., index] = values
        pupils = pupils.reshape(*values.shape[:-1], M, M)
        scale = (M / self.grid_size) ** 2
        self._pupil_forward = pupils * scale
        self._pupil_adjoint = pupils.conj() * (scale / M**2)
        self._pending = None

    @property
    def pupil_forward(self) -> torch.Tensor:
        """The pupils (ifftshifted) with the forward scaling ``(M / N)^2``."""
        if self._pending is not None:
            self._materialize()
        return self._pupil_forward

    @property
    def pupil_adjoint(self) -> torch.Tensor:
        """The conjugate pupils (ifftshifted) with the adjoint scaling ``(M / N)^2 / M^2``."""
        if self._pending is not None:
            self._materialize()
        return self._pupil_adjoint

    @staticmethod
    def frame_pupils(pupil: torch.Tensor, frames: slice, lead: int = 1) -> torch.Tensor:
        """The pupil of the frames in ``frames``, broadcastable against ``(*lead axes, Lb, M, M)``:
        (M, M) when common, (Lb, M, M) per frame, (B, 1, ..., Lb, M, M) per problem and frame."""
        if pupil.dim() == 2:
            return pupil
        if pupil.dim() == 3:
            return pupil[frames]
        selected = pupil[:, frames]
        return selected.reshape(selected.shape[0], *[1] * (lead - 1), *selected.shape[1:])

    def forward(self, spectra: torch.Tensor, frames: slice = slice(None)) -> torch.Tensor:
        """Low-resolution fields of the given frames.

        Parameters
        ----------
        spectra : (..., n) complex
            Object spectra ``vec(S)``, row-major ``N x N``.
        frames : slice
            Which frames (default all).

        Returns
        -------
        (..., Lb, M, M) complex
            ``psi_j`` for the frames in ``frames``.
        """
        index = self.window_index[frames]
        windows = spectra[..., index.reshape(-1)].reshape(*spectra.shape[:-1], *index.shape)
        return torch.fft.ifft2(windows * self.frame_pupils(self.pupil_forward, frames, spectra.dim() - 1))

    def adjoint(self, fields: torch.Tensor, frames: slice = slice(None)) -> torch.Tensor:
        """Adjoint of :meth:`forward` for the same frames.

        Parameters
        ----------
        fields : (..., Lb, M, M) complex
            Values on the frames in ``frames``.
        frames : slice
            Which frames ``fields`` belongs to.

        Returns
        -------
        (..., n) complex
            ``B_frames^H fields``.
        """
        index = self.window_index[frames].reshape(-1)
        spectra_windows = torch.fft.fft2(fields) * self.frame_pupils(self.pupil_adjoint, frames, fields.dim() - 3)
        lead = fields.shape[:-3]
        out = torch.zeros(*lead, self.n, dtype=fields.dtype, device=fields.device)
        out.index_add_(-1, index, spectra_windows.reshape(*lead, -1))
        return out


def object_to_spectrum(obj: torch.Tensor) -> torch.Tensor:
    """``S = fftshift(fft2(o))`` over the last two axes: (..., N, N) -> (..., N, N)."""
    return torch.fft.fftshift(torch.fft.fft2(obj), dim=(-2, -1))


def spectrum_to_object(spectrum: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`object_to_spectrum`: (..., N, N) -> (..., N, N)."""
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)))


def fp_intensities(obj, acquisition: Acquisition, device="cpu") -> np.ndarray | torch.Tensor:
    """Noise-free FP intensities of a complex object: the simulator's core.

    Parameters
    ----------
    obj : (..., N, N) complex array or tensor
        Object transmission on the ``N x N`` high-resolution grid (``N = upsample * M``).
    acquisition : Acquisition
        Optics and illumination.
    device : str or torch.device
        Where to compute (tensors stay on their own device).

    Returns
    -------
    (..., L, M, M) float
        ``I_j = |psi_j|^2``; a NumPy array (float32 or float64 after the input precision) for
        NumPy input, a tensor for tensor input.
    """
    as_numpy = not isinstance(obj, torch.Tensor)
    tensor = torch.as_tensor(np.asarray(obj) if as_numpy else obj)
    if not tensor.is_complex():
        tensor = tensor.to(torch.complex128 if tensor.dtype == torch.float64 else torch.complex64)
    if not as_numpy:
        device = tensor.device
    N = acquisition.grid_size
    if tensor.shape[-2:] != (N, N):
        raise ValueError(f"object must be {N}x{N} for this acquisition, got {tuple(tensor.shape[-2:])}")
    operator = FPMeasurement(acquisition, device=device, dtype=tensor.dtype)
    spectra = object_to_spectrum(tensor.to(device)).reshape(*tensor.shape[:-2], N * N)
    intensities = operator.forward(spectra).abs() ** 2
    return intensities.cpu().numpy() if as_numpy else intensities


def synthetic_aperture(acquisition: Acquisition) -> np.ndarray:
    """Where the object spectrum is measured at all: the union of the shifted pupils.

    Returns
    -------
    (N, N) bool
        True on spectrum pixels covered by some frame's pupil support.
    """
    M, N = acquisition.frame_size, acquisition.grid_size
    support = np.abs(acquisition.pupil_function()) > 0
    supports = [support] * acquisition.n_frames
    if acquisition.subpixel:  # each frame's own (shifted) pupil
        supports = np.abs(acquisition.pupil_function(acquisition.window_remainders)) > 0
    covered = np.zeros((N, N), dtype=bool)
    for (row, col), frame_support in zip(acquisition.window_centers - M // 2, supports, strict=True):
        covered[row:row + M, col:col + M] |= frame_support
    return covered


def band_limit(obj: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """The part of ``obj`` that FP can recover: its spectrum masked to the synthetic aperture.

    Parameters
    ----------
    obj : (..., N, N) complex

    Returns
    -------
    (..., N, N) complex
        complex128 for real or complex128 input, complex64 for complex64 input.
    """
    spectrum = np.fft.fftshift(np.fft.fft2(obj), axes=(-2, -1))
    spectrum = spectrum * synthetic_aperture(acquisition)
    return np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1)))
