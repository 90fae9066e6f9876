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
    """

    def __init__(self, acquisition: Acquisition, device="cpu", dtype=torch.complex64,
                 frames_per_block: int | None = None):
        self.acquisition = acquisition
        self.device = torch.device(device)
        self.dtype = dtype
        M, N, L = acquisition.frame_size, acquisition.grid_size, acquisition.n_frames
        self.frame_size, self.grid_size, self.n_frames = M, N, L
        self.n = N * N
        self.measurement_shape = (L, M, M)
        # Flat spectrum indices of every window, already in ifftshifted layout so that the
        # gathered block can go straight into ifft2.
        offsets = np.arange(M) - M // 2
        rows = acquisition.window_centers[:, 0, None, None] + offsets[None, :, None]
        cols = acquisition.window_centers[:, 1, None, None] + offsets[None, None, :]
        flat = np.fft.ifftshift(rows * N + cols, axes=(-2, -1))
        self.window_index = torch.as_tensor(flat, device=self.device)  # (L, M, M) int64
        scale = (M / N) ** 2
        pupil = np.fft.ifftshift(acquisition.pupil_function())
        self.pupil_forward = torch.as_tensor(pupil * scale, dtype=dtype, device=self.device)
        self.pupil_adjoint = torch.as_tensor(np.conj(pupil) * scale / M**2, dtype=dtype,
                                             device=self.device)
        step = L if frames_per_block is None else max(1, int(frames_per_block))
        self.blocks = [slice(j, min(j + step, L)) for j in range(0, L, step)]

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
        return torch.fft.ifft2(windows * self.pupil_forward)

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
        spectra_windows = torch.fft.fft2(fields) * self.pupil_adjoint
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
    covered = np.zeros((N, N), dtype=bool)
    for row, col in acquisition.window_centers - M // 2:
        covered[row:row + M, col:col + M] |= support
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
