"""The lifted FP operator: intensities as linear measurements of ``X = x x^*``, ``x = vec(S)``."""

from __future__ import annotations

import torch

from ..physics import Acquisition, FPMeasurement
from .quadratic import QuadraticLifted


class LiftedFP(QuadraticLifted):
    """Lifted FP measurements of the object spectrum.

    ``measure(U, d)`` returns ``(B, L, M, M)`` intensities ``sum_r d_r |psi_j(u_r)|^2``; the cost
    of ``residual_and_product`` is ``2 r L`` FFTs of ``M x M`` plus window copies, memory
    ``O(B n r + B r L_block M^2)``.

    Parameters
    ----------
    acquisition : Acquisition
        Optics and illumination.
    device : str or torch.device
    dtype : torch.dtype
        ``torch.complex64`` (default) or ``torch.complex128``.
    frames_per_block : int, optional
        Frames per block (memory bound); default all.
    """

    def __init__(self, acquisition: Acquisition, device="cpu", dtype=torch.complex64,
                 frames_per_block: int | None = None):
        super().__init__(FPMeasurement(acquisition, device=device, dtype=dtype,
                                       frames_per_block=frames_per_block))
        self.acquisition = acquisition
