"""The common pupil, its per-frame versions, and its gauges.

Every frame ``l`` of problem ``b`` sees ``P_bl = sqrt(c_bl) (ratio_l P_b + edge_l)``: the problem's
common pupil ``P_b`` (support times aberration) on the exact sub-pixel model of the frame
(:func:`frame_model`: ``ratio_l P_0 + edge_l = P_0(k - delta_l)``, the model pupil moved by the
frame's illumination remainder ``delta_l``), scaled by its brightness ``c_bl``.
:func:`compose_frame_pupils` builds them; :func:`pull_back` is its adjoint in ``P`` (per-frame pupil
gradients -> the common pupil's).

The loss does not change when the pupil is multiplied by a constant phase (piston) or by a linear
phase (tip/tilt: it shifts the object instead), and it only sees ``|P|^2 X``'s scale (global scale):
:func:`fix_gauges` sets these after every pupil update.
"""

from __future__ import annotations

import numpy as np
import torch

from .zernike import unwrapped_phase


def frame_model(acquisition, delta) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The exact per-frame model pupils relative to the common one, for sub-pixel remainders ``delta``.

    Frame ``l``'s model pupil is ``D_l(k) = P_0(k - delta_l)`` (the disc and the defocus evaluated at
    the shifted frequencies: :meth:`Acquisition.pupil_function` with ``shift``), written as
    ``D_l = ratio_l P_0 + edge_l`` with ``ratio_l = D_l / P_0`` where ``P_0 != 0`` and ``edge_l`` the
    part of ``D_l`` where ``P_0 = 0`` (the rim the shift uncovers).

    Parameters
    ----------
    acquisition : Acquisition
    delta : (L, 2) float, optional
        Remainders in pixels ``(rows, cols)``; None: no sub-pixel shift (returns None).

    Returns
    -------
    (ratio, edge) : two (L, M, M) complex128 tensors, or None
    """
    if delta is None:
        return None
    delta = np.asarray(torch.as_tensor(delta).cpu(), dtype=np.float64)
    common = acquisition.pupil_function()
    frames = acquisition.pupil_function(shift=delta)
    inside = common != 0
    ratio = np.where(inside, frames / np.where(inside, common, 1), 0)
    edge = np.where(inside, 0, frames)
    return torch.as_tensor(ratio), torch.as_tensor(edge)


def compose_frame_pupils(pupil: torch.Tensor, brightness: torch.Tensor | None = None,
                         model: tuple | None = None, n_frames: int | None = None) -> torch.Tensor:
    """Per-frame pupils ``sqrt(c_l) (ratio_l P + edge_l)``.

    Parameters
    ----------
    pupil : (B, M, M) complex
        Common pupil per problem (window layout, DC at ``M // 2``).
    brightness : (B, L) real, optional
        Per-frame brightness ``c_l`` (None: all 1).
    model : (ratio, edge), optional
        The sub-pixel model of :func:`frame_model` (None: every frame sees ``P`` itself).  The
        recovered pupil multiplies the exact shifted model pupils; its own shift (an aberration,
        smooth on the scale of a pixel) is neglected.
    n_frames : int, optional
        ``L`` when neither ``brightness`` nor ``model`` gives it.

    Returns
    -------
    (B, L, M, M) complex
    """
    frames = pupil[:, None]
    if model is not None:
        ratio, edge = (part.to(device=pupil.device, dtype=pupil.dtype) for part in model)
        frames = frames * ratio + edge  # (B, L, M, M)
    if brightness is not None:
        frames = frames * brightness.clamp_min(0).sqrt().to(pupil.dtype)[..., None, None]
    L = n_frames if n_frames is not None else (len(model[0]) if model is not None else brightness.shape[1])
    return frames.expand(-1, L, -1, -1)


def pull_back(frame_values: torch.Tensor, brightness: torch.Tensor | None = None,
              model: tuple | None = None) -> torch.Tensor:
    """Adjoint of :func:`compose_frame_pupils`'s linear part in the pupil:
    ``sum_l sqrt(c_l) conj(ratio_l) g_l``.

    Parameters
    ----------
    frame_values : (B, L, M, M) complex or real
        Per-frame values (gradients ``d loss / d conj(P_l)``, or energies: pass ``|ratio|^2``
        weighting yourself for those).
    brightness : (B, L) real, optional
    model : (ratio, edge), optional

    Returns
    -------
    (B, M, M)
    """
    values = frame_values
    if brightness is not None:
        values = values * brightness.clamp_min(0).sqrt().to(values.dtype)[..., None, None]
    if model is not None:
        ratio = model[0].to(device=values.device)
        values = values * (ratio.conj() if values.is_complex() else ratio.abs()).to(values.dtype)
    return values.sum(dim=1)


def linear_phase(pupil: np.ndarray, support: np.ndarray) -> np.ndarray:
    """(M, M) float64: the least-squares plane ``a + b y + c x`` through the unwrapped phase of
    ``pupil`` inside ``support`` (pixel coordinates about ``M // 2``), evaluated everywhere."""
    M = pupil.shape[-1]
    offsets = np.arange(M) - M // 2
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    phase = unwrapped_phase(pupil, support)
    design = np.stack([np.ones(int(support.sum())), y[support], x[support]], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, phase[support], rcond=None)
    return coefficients[0] + coefficients[1] * y + coefficients[2] * x


def fix_gauges(pupil: torch.Tensor, support: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Pupils with the gauges fixed: zero off ``support``, norm ``norm``, no piston or tip/tilt.

    Parameters
    ----------
    pupil : (B, M, M) complex
    support : (M, M) bool
    norm : (B,) real
        The norm each pupil keeps (that of the starting pupil).

    Returns
    -------
    pupil : (B, M, M) complex
    tilt : (B, 2) float64
        The removed tip/tilt ``(rows, cols)`` in radians per pixel (the object's spectrum takes
        ``exp(+i tilt . k)`` to keep the loss unchanged).
    scale : (B,) real
        The factor the pupil was multiplied by (the object's spectrum takes ``1 / scale``).
    """
    pupil = pupil * support
    out, tilts, scales = [], [], []
    mask = support.cpu().numpy()
    for k, one in enumerate(pupil):
        plane = linear_phase(one.detach().cpu().numpy(), mask)
        tilts.append((plane[1, 0] - plane[0, 0], plane[0, 1] - plane[0, 0]))
        ramp = torch.as_tensor(np.exp(-1j * plane), device=pupil.device).to(pupil.dtype)
        one = one * ramp
        size = torch.linalg.vector_norm(one)
        scale = norm[k] / size.clamp_min(torch.finfo(size.dtype).tiny)
        scales.append(scale)
        out.append(one * scale.to(one.dtype))
    return torch.stack(out), torch.as_tensor(tilts, dtype=torch.float64), torch.stack(scales)


def phase_error_rms(pupil: np.ndarray, truth: np.ndarray, support: np.ndarray) -> float:
    """RMS phase difference (radians) of two pupils inside ``support``, after removing the
    least-squares piston and tip/tilt of the difference (the gauges the data cannot fix)."""
    difference = np.asarray(pupil) * np.conj(truth)
    residual = unwrapped_phase(difference, support) - linear_phase(difference, support)
    return float(np.sqrt(np.mean(residual[support] ** 2)))
