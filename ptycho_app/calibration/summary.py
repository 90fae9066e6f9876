"""A calibration in words and numbers: the pupil's support and phase, Zernike names, ``info`` lines.

Used by ``ptycho-app info`` and ``compare`` (:mod:`ptycho_app.report`) and the napari plugin.
"""

from __future__ import annotations

import numpy as np

from .model import LED_MODEL_KEYS, Calibration

#: Names of the Zernike polynomials in Noll order (``ZERNIKE_NAMES[j - 1]`` names ``Z_j``).
ZERNIKE_NAMES = ("piston", "tip", "tilt", "defocus", "oblique astigmatism", "vertical astigmatism",
                 "vertical coma", "horizontal coma", "vertical trefoil", "oblique trefoil", "spherical",
                 "vertical secondary astigmatism", "oblique secondary astigmatism", "vertical quadrafoil",
                 "oblique quadrafoil")
#: Zernike coefficients shown by ``info`` (the rest are counted).
SHOWN_ZERNIKE = 11
#: The pupil's support: pixels whose amplitude is at least this fraction of the largest (a soft edge's
#: outer tail, whose phase means little, is left out).
SUPPORT_FRACTION = 0.1


def zernike_name(j: int) -> str:
    """Name of Noll's ``Z_j`` (``"Z16"`` beyond :data:`ZERNIKE_NAMES`)."""
    return ZERNIKE_NAMES[j - 1] if 1 <= j <= len(ZERNIKE_NAMES) else f"Z{j}"


def pupil_support(pupil: np.ndarray) -> np.ndarray:
    """(M, M) bool: where ``|pupil| >= SUPPORT_FRACTION * max |pupil|`` (all False for a zero pupil)."""
    amplitude = np.abs(np.asarray(pupil))
    peak = amplitude.max(initial=0.0)
    return amplitude >= SUPPORT_FRACTION * peak if peak > 0 else np.zeros(amplitude.shape, dtype=bool)


def pupil_phase(pupil: np.ndarray) -> np.ndarray:
    """The aberration phase inside the support: unwrapped, piston removed, NaN outside.

    Parameters
    ----------
    pupil : (M, M) complex
        Coherent transfer function (window layout).

    Returns
    -------
    (M, M) float64
        Phase in radians (mean zero over the support), unwrapped with scikit-image's
        ``unwrap_phase`` (exact while neighbouring pixels differ by less than pi); NaN outside
        the support (:func:`pupil_support`).
    """
    from skimage.restoration import unwrap_phase

    pupil = np.asarray(pupil, dtype=np.complex128)
    support = pupil_support(pupil)
    phase = np.full(pupil.shape, np.nan)
    if not support.any():
        return phase
    wrapped = np.angle(pupil * np.exp(-1j * np.angle(pupil[support].sum())))  # piston (mean phasor) removed
    if support.sum() > 1:
        unwrapped = np.asarray(unwrap_phase(np.ma.masked_array(wrapped, mask=~support)).filled(0.0))
    else:
        unwrapped = wrapped
    phase[support] = unwrapped[support] - unwrapped[support].mean()
    return phase


def rms_pupil_phase(pupil: np.ndarray) -> float:
    """RMS aberration phase (radians) inside the pupil's support, piston removed (:func:`pupil_phase`)."""
    phase = pupil_phase(pupil)
    inside = np.isfinite(phase)
    return float(np.sqrt(np.mean(phase[inside] ** 2))) if inside.any() else 0.0


def zernike_text(zernike: np.ndarray, shown: int = SHOWN_ZERNIKE) -> str:
    """``piston 0.000, tip 0.012, ...`` (radians, Noll order; the rest counted)."""
    parts = [f"{zernike_name(j)} {value:+.3f}" for j, value in enumerate(np.asarray(zernike)[:shown], start=1)]
    more = len(zernike) - shown
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def led_model_text(led_model: dict) -> str:
    """``shift (dy, dx) (0.500, -0.100) mm, rotation 2.00 deg, distance 83.0 mm`` (the keys present)."""
    parts = []
    if "led_shift_y" in led_model or "led_shift_x" in led_model:
        dy, dx = (float(led_model.get(k, 0.0)) * 1e3 for k in ("led_shift_y", "led_shift_x"))
        parts.append(f"shift (dy, dx) ({dy:.3f}, {dx:.3f}) mm")
    if "led_rotation" in led_model:
        parts.append(f"rotation {float(led_model['led_rotation']):.3f} deg")
    if "led_distance" in led_model:
        parts.append(f"distance {float(led_model['led_distance']) * 1e3:.3f} mm")
    parts += [f"{key} {value}" for key, value in led_model.items() if key not in LED_MODEL_KEYS]
    return ", ".join(parts)


def calibration_lines(calibration: Calibration, indent: str = "  ") -> list[str]:
    """What ``info`` shows of a calibration, one line per part (nothing for an empty one)."""
    if calibration is None or calibration.is_empty():
        return []
    how = ", ".join(f"{key} {calibration.attrs[key]}" for key in ("pupil_mode", "calibrate")
                    if key in calibration.attrs)
    lines = [f"{indent}calibration:   " + (how or "recorded")]
    pad = indent + " " * 15
    if calibration.pupil is not None:
        M = calibration.pupil.shape[0]
        lines.append(f"{pad}pupil {M} x {M}, {int(pupil_support(calibration.pupil).sum())} pixels in the support, "
                     f"RMS aberration phase {rms_pupil_phase(calibration.pupil):.3f} rad inside it")
    if calibration.zernike is not None:
        lines.append(f"{pad}Zernike (rad, Noll order): {zernike_text(calibration.zernike)}")
    if calibration.brightness is not None:
        b = calibration.brightness
        lines.append(f"{pad}brightness {b.min():.4g} to {b.max():.4g} over {len(b)} frames (RMS deviation "
                     f"from 1: {np.sqrt(np.mean((b - 1) ** 2)):.3g})")
    if calibration.direction_sines is not None:
        lines.append(f"{pad}direction sines refined for {len(calibration.direction_sines)} frames")
    if calibration.led_model:
        lines.append(f"{pad}LED fit: {led_model_text(calibration.led_model)}")
    return lines
