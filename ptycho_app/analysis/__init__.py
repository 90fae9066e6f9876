"""Extraction (eigenvalues, recovered object) and metrics."""

from .metrics import align_global_phase, amplitude_psnr, amplitude_ssim, numerical_rank, relative_error
from .spectrum import factor_eigh, factor_svd, leading_from_eigh, leading_vector, object_from_factors

__all__ = [
    "align_global_phase",
    "amplitude_psnr",
    "amplitude_ssim",
    "factor_eigh",
    "factor_svd",
    "leading_from_eigh",
    "leading_vector",
    "numerical_rank",
    "object_from_factors",
    "relative_error",
]
