"""Zernike polynomials on the FP pupil: Noll order, RMS-normalized over the unit pupil.

The unit pupil is the disc ``|f| <= NA / lambda`` of the window grid (DC at pixel ``M // 2``,
``f = (index - M // 2) * dk``), the support of
:meth:`~ptycho_app.physics.Acquisition.pupil_function`.  Polar coordinates: ``rho = |f| / (NA /
lambda)``, ``theta = atan2(f_y, f_x)`` (``f_y`` along rows, ``f_x`` along columns).  Noll's
normalization: ``(1 / pi) int_disc Z_i Z_j = delta_ij``, so a coefficient is the RMS phase (radians)
of its term.  ``Z_1`` piston, ``Z_2`` / ``Z_3`` tilt (x / y), ``Z_4`` defocus, ``Z_5`` / ``Z_6``
astigmatism, ``Z_7`` / ``Z_8`` coma (y / x), ``Z_11`` spherical.
"""

from __future__ import annotations

from math import factorial

import numpy as np

#: Terms fitted by default (Noll 1 .. 15: up to fourth radial order).
DEFAULT_TERMS = 15


def noll_to_nm(j: int) -> tuple[int, int]:
    """Radial order ``n`` and azimuthal frequency ``m`` of Noll index ``j >= 1``; ``m < 0`` means
    ``sin(|m| theta)``, ``m > 0`` ``cos(m theta)`` (even ``j``: cosine, odd ``j``: sine)."""
    if j < 1:
        raise ValueError(f"Noll indices start at 1, got {j}")
    n, rest = 0, j - 1
    while rest > n:
        n += 1
        rest -= n
    m = (-1) ** j * ((n % 2) + 2 * ((rest + (n + 1) % 2) // 2))
    return n, m


def radial(n: int, m: int, rho: np.ndarray) -> np.ndarray:
    """The radial polynomial ``R_n^|m|(rho)``."""
    m = abs(m)
    out = np.zeros_like(rho, dtype=np.float64)
    for s in range((n - m) // 2 + 1):
        coefficient = (-1) ** s * factorial(n - s) / (
            factorial(s) * factorial((n + m) // 2 - s) * factorial((n - m) // 2 - s))
        out = out + coefficient * rho ** (n - 2 * s)
    return out


def zernike(j: int, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Noll's RMS-normalized ``Z_j(rho, theta)`` (no cut at ``rho = 1``)."""
    n, m = noll_to_nm(j)
    rho = np.asarray(rho, dtype=np.float64)
    if m == 0:
        return np.sqrt(n + 1) * radial(n, 0, rho)
    angular = np.cos(m * theta) if m > 0 else np.sin(-m * theta)
    return np.sqrt(2 * (n + 1)) * radial(n, m, rho) * angular


def pupil_coordinates(frame_size: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``(rho, theta)`` (M, M) float64 on the window grid for a pupil of ``radius`` pixels
    (``NA / (lambda dk)``)."""
    offsets = np.arange(frame_size) - frame_size // 2
    fy, fx = np.meshgrid(offsets, offsets, indexing="ij")
    return np.hypot(fy, fx) / radius, np.arctan2(fy, fx)


def pupil_radius(acquisition) -> float:
    """The pupil's radius ``NA / lambda`` in window pixels ``dk``."""
    return acquisition.na / (acquisition.wavelength * acquisition.frequency_step)


def zernike_basis(n_terms: int, frame_size: int, radius: float) -> np.ndarray:
    """(J, M, M) float64: ``Z_1 .. Z_J`` on the window grid, zero outside the unit pupil.

    Parameters
    ----------
    n_terms : int
        ``J``, Noll terms ``1 .. J``.
    frame_size : int
        ``M``.
    radius : float
        Pupil radius in pixels (:func:`pupil_radius`); the pupil is ``rho <= 1``, as in
        ``Acquisition.pupil_function``.
    """
    rho, theta = pupil_coordinates(frame_size, radius)
    inside = rho <= 1 + 1e-12
    return np.stack([zernike(j, rho, theta) * inside for j in range(1, n_terms + 1)])


def zernike_phase(coefficients, frame_size: int, radius: float) -> np.ndarray:
    """(M, M) float64: ``sum_j c_j Z_j`` (radians) inside the unit pupil, 0 outside."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    return np.tensordot(coefficients, zernike_basis(len(coefficients), frame_size, radius), axes=1)


def unwrapped_phase(pupil: np.ndarray, support: np.ndarray) -> np.ndarray:
    """(M, M) float64: the phase of ``pupil`` unwrapped inside ``support`` (scikit-image's
    ``unwrap_phase``), 0 outside."""
    from skimage.restoration import unwrap_phase

    phase = np.angle(pupil)
    if support.sum() < 2:
        return np.where(support, phase, 0.0)
    masked = np.ma.masked_array(phase, mask=~support)
    return np.where(support, np.ma.getdata(unwrap_phase(masked)), 0.0)


def fit_zernike(pupil: np.ndarray, radius: float, n_terms: int = DEFAULT_TERMS, support=None) -> np.ndarray:
    """Least-squares Zernike coefficients of a pupil's phase.

    Parameters
    ----------
    pupil : (M, M) complex
        A transfer function (window layout, DC at ``M // 2``).
    radius : float
        Pupil radius in pixels (:func:`pupil_radius`).
    n_terms : int
        ``J``.
    support : (M, M) bool, optional
        Pixels to fit (default: inside the unit pupil where ``pupil != 0``).

    Returns
    -------
    (J,) float64
        Radians, Noll order (``[0]`` piston, carrying the unwrapping's arbitrary ``2 pi k``).
    """
    pupil = np.asarray(pupil)
    basis = zernike_basis(n_terms, pupil.shape[-1], radius)
    rho, _ = pupil_coordinates(pupil.shape[-1], radius)
    if support is None:
        support = (np.abs(pupil) > 0) & (rho <= 1 + 1e-12)
    phase = unwrapped_phase(pupil, support)
    coefficients, *_ = np.linalg.lstsq(basis[:, support].T, phase[support], rcond=None)
    return coefficients
