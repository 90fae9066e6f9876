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
    # (torch's LAPACK, not numpy's OpenBLAS: see steps._fit_zernike)
    coefficients = torch.linalg.lstsq(torch.as_tensor(design), torch.as_tensor(phase[support])[:, None],
                                      driver="gelsd").solution[:, 0].numpy()
    return coefficients[0] + coefficients[1] * y + coefficients[2] * x


def fix_gauges(pupil: torch.Tensor, support: torch.Tensor, norm: torch.Tensor,
               reference: torch.Tensor | None = None) -> torch.Tensor:
    """Pupils with the gauges fixed: zero off ``support``, norm ``norm``, no piston or tip/tilt.

    Parameters
    ----------
    pupil : (B, M, M) complex
    support : (M, M) bool
    norm : (B,) real
        The norm each pupil keeps (that of the starting pupil).
    reference : (B, M, M) complex, optional
        Pupils with these gauges already fixed that ``pupil`` is a small update of (the previous
        iterate).  The plane is then fitted to the phase of ``pupil * conj(reference)`` (no
        unwrapping; batched on the device), which equals the plane of ``pupil``'s unwrapped phase
        whenever no pixel's phase moved by pi or more (the unwrapped phase of ``reference`` has no
        plane).  None: unwrap ``pupil``'s phase (:func:`linear_phase`; one problem at a time, on the CPU).

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
    if reference is not None:
        return _fix_gauges_relative(pupil, support, norm, reference)
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


_PLANE_FIT: dict = {}  # one entry: the support and its plane fit (the same every iteration of a solve)


def _plane_fit(support: torch.Tensor, device):
    """Flat indices (J,) of ``support``, the pseudo-inverse (3, J) of the plane's design
    ``[1, y, x]`` there (float64) and the offsets (M,) about ``M // 2``."""
    cached = _PLANE_FIT.get("entry")
    if cached is not None and cached[0] is support and cached[1] == device:
        return cached[2]
    M = support.shape[-1]
    offsets = torch.arange(M, device=device, dtype=torch.float64) - M // 2
    inside = torch.nonzero(support.to(device).reshape(-1)).flatten()
    y, x = offsets[inside // M], offsets[inside % M]
    design = torch.stack([torch.ones_like(y), y, x], dim=1)  # (J, 3)
    fit = (inside, torch.linalg.pinv(design), offsets)
    _PLANE_FIT["entry"] = (support, device, fit)
    return fit


def _fix_gauges_relative(pupil, support, norm, reference):
    """:func:`fix_gauges` with the plane fitted to the (small) phase change from ``reference``."""
    inside, pseudo_inverse, offsets = _plane_fit(support, pupil.device)
    batch = len(pupil)
    change = (pupil.reshape(batch, -1)[:, inside] * reference.reshape(batch, -1)[:, inside].conj())
    change = change.to(torch.complex128).angle()  # (B, J)
    coefficients = (change[:, None, :] * pseudo_inverse).sum(dim=-1)  # (B, 3): piston, rows, cols
    plane = (coefficients[:, 0, None, None] + coefficients[:, 1, None, None] * offsets[:, None]
             + coefficients[:, 2, None, None] * offsets[None, :])
    one = pupil * torch.polar(torch.ones_like(plane), -plane).to(pupil.dtype)
    size = torch.linalg.vector_norm(one.flatten(1), dim=1)
    scale = norm / size.clamp_min(torch.finfo(size.dtype).tiny)
    return one * scale.to(one.dtype)[:, None, None], coefficients[:, 1:].contiguous(), scale


def phase_error_rms(pupil: np.ndarray, truth: np.ndarray, support: np.ndarray) -> float:
    """RMS phase difference (radians) of two pupils inside ``support``, after removing the
    least-squares piston and tip/tilt of the difference (the gauges the data cannot fix)."""
    difference = np.asarray(pupil) * np.conj(truth)
    residual = unwrapped_phase(difference, support) - linear_phase(difference, support)
    return float(np.sqrt(np.mean(residual[support] ** 2)))
