"""The LED-array model of ``--calibrate geometry``: shift, rotation and distance of the whole array.

The nominal LED positions ``g_l`` (the acquisition's ``led_positions``, metres, ``(y, x)``) move as a
rigid array: ``p_l = R(theta) g_l + (dy, dx)`` (``R`` rotates counter-clockwise from x towards y, as
:func:`ptycho_app.simulation.led_array`), at a distance ``z`` below the sample, so that the direction
sines are ``s_l = p_l / sqrt(|p_l|^2 + z^2)`` (the acquisition's convention).  Their window shifts
``t_l = s_l / (wavelength dk)`` (pixels) give the remainders ``delta_l = t_l - round(t_l)`` that the
sub-pixel pupils ``P(k - delta_l)`` carry; the loss's gradient in the 4 parameters is chained from
``d loss / d delta_l`` (:func:`ptycho_app.calibration.subpixel.remainder_gradient`) through the
Jacobian ``d t_l / d parameters`` (:func:`shift_jacobian`).

Parameters are ordered as :data:`~ptycho_app.calibration.model.LED_MODEL_KEYS`: shift y and x
(metres), rotation (degrees), distance (metres, absolute).
"""

from __future__ import annotations

import numpy as np
import torch

from ..physics import AcquisitionError
from .model import LED_MODEL_KEYS
from .subpixel import remainder_gradient


def require_leds(acquisition):
    """The nominal LED positions and distance, or an error naming the flags that give them.

    Raises
    ------
    AcquisitionError
        When the acquisition has direction sines only.
    """
    if acquisition.led_positions is None or acquisition.led_distance is None:
        raise AcquisitionError("--calibrate geometry (or all) needs LED positions and their distance (import with "
                               "--leds/--pitch/--distance or a file with an encoder); this measurement has only "
                               "direction sines")
    return np.asarray(acquisition.led_positions, dtype=np.float64), float(acquisition.led_distance)


def nominal_parameters(acquisition) -> np.ndarray:
    """(4,) float64: the acquisition's own geometry: no shift, no rotation, its distance."""
    _, distance = require_leds(acquisition)
    return np.array([0.0, 0.0, 0.0, distance])


def led_sines(grid, parameters) -> torch.Tensor:
    """Direction sines of the moved array.

    Parameters
    ----------
    grid : (L, 2) float64
        Nominal positions ``(y, x)``, metres.
    parameters : (4,) float64 array or tensor
        ``(dy, dx, rotation in degrees, distance)``.

    Returns
    -------
    (L, 2) float64 tensor
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    parameters = torch.as_tensor(parameters, dtype=torch.float64)
    angle = torch.deg2rad(parameters[2])
    y, x = grid[:, 0], grid[:, 1]
    positions = torch.stack([torch.sin(angle) * x + torch.cos(angle) * y + parameters[0],
                             torch.cos(angle) * x - torch.sin(angle) * y + parameters[1]], dim=1)
    radius = torch.sqrt((positions**2).sum(dim=1, keepdim=True) + parameters[3] ** 2)
    return positions / radius


def window_shifts(acquisition, parameters) -> np.ndarray:
    """(L, 2) float64: exact window shifts ``t_l`` in pixels of the array at ``parameters``."""
    grid, _ = require_leds(acquisition)
    scale = acquisition.wavelength * acquisition.frequency_step
    return led_sines(grid, parameters).numpy() / scale


def shift_jacobian(acquisition, parameters) -> np.ndarray:
    """(L, 2, 4) float64: ``d t_l / d parameters`` (pixels per metre / per degree)."""
    grid, _ = require_leds(acquisition)
    scale = acquisition.wavelength * acquisition.frequency_step
    jacobian = torch.autograd.functional.jacobian(lambda p: led_sines(grid, p) / scale,
                                                  torch.as_tensor(parameters, dtype=torch.float64))
    return jacobian.numpy()


def parameter_gradient(operator, pupil, delta, jacobian) -> np.ndarray:
    """``d loss / d parameters`` per problem, from the last :meth:`LiftedFP.evaluate` with
    ``record_pupil_terms`` (frames' pupils ``bilinear_shift(pupil, delta)``).

    Parameters
    ----------
    operator : LiftedFP
        Holds ``pupil_gradient`` (B, L, K).
    pupil : (M, M) or (B, M, M) complex
        The unshifted pupil.
    delta : (L, 2) or (B, L, 2) float64
        The remainders the frames' pupils were shifted by.
    jacobian : (L, 2, 4) float64
        :func:`shift_jacobian`.

    Returns
    -------
    (B, 4) float64
    """
    gradient = operator.support_to_window(operator.pupil_gradient).to(torch.complex128)
    per_frame = remainder_gradient(gradient, torch.as_tensor(np.asarray(pupil), dtype=torch.complex128),
                                   torch.as_tensor(np.asarray(delta), dtype=torch.float64))  # (B, L, 2)
    return torch.einsum("blc,lcp->bp", per_frame, torch.as_tensor(jacobian)).numpy()


def led_model(parameters) -> dict:
    """The fit as :class:`~ptycho_app.calibration.Calibration` stores it (keys :data:`LED_MODEL_KEYS`)."""
    return {key: float(value) for key, value in zip(LED_MODEL_KEYS, np.asarray(parameters), strict=True)}
