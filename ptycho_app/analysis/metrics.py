"""Quality measures of a reconstruction (NumPy in, floats out)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def align_global_phase(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``estimate * exp(i phi)`` with the ``phi`` minimizing ``||estimate e^{i phi} - truth||``."""
    inner = np.vdot(estimate, truth)
    return estimate * (np.exp(1j * np.angle(inner)) if inner != 0 else 1.0)


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``min_phi ||estimate e^{i phi} - truth|| / ||truth||``.

    Parameters
    ----------
    estimate, truth : (...) complex
        Same shape.
    """
    estimate, truth = np.asarray(estimate), np.asarray(truth)
    if estimate.shape != truth.shape:
        raise ValueError(f"shapes differ: {estimate.shape} vs {truth.shape}")
    aligned = align_global_phase(estimate, truth)
    return float(np.linalg.norm(aligned - truth) / np.linalg.norm(truth))


def numerical_rank(eigenvalues: np.ndarray, tol: float = 1e-6) -> int:
    """Number of eigenvalues above ``tol * lambda_1``.

    Parameters
    ----------
    eigenvalues : (r,) real
    tol : float
        Relative threshold.
    """
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    top = eigenvalues.max()
    return int(np.sum(eigenvalues > tol * top)) if top > 0 else 0


def amplitude_psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB) of ``|estimate|`` against ``|truth|``, data range of ``|truth|``."""
    a, t = np.abs(estimate), np.abs(truth)
    return float(peak_signal_noise_ratio(t, a, data_range=float(t.max() - t.min())))


def amplitude_ssim(estimate: np.ndarray, truth: np.ndarray) -> float:
    """SSIM of ``|estimate|`` against ``|truth|`` (scikit-image), data range of ``|truth|``."""
    a, t = np.abs(estimate), np.abs(truth)
    return float(structural_similarity(t, a, data_range=float(t.max() - t.min())))
