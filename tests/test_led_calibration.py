"""The LED-array model: its sines, its Jacobian and the loss gradient chained through sub-pixel pupils."""

import dataclasses

import numpy as np
import pytest
import torch

from ptycho_app.calibration.leds import (
    led_model,
    led_sines,
    nominal_parameters,
    parameter_gradient,
    require_leds,
    shift_jacobian,
    window_shifts,
)
from ptycho_app.calibration.subpixel import bilinear_shift
from ptycho_app.lifting import LiftedFP
from ptycho_app.lifting.losses import make_loss
from ptycho_app.physics import AcquisitionError
from ptycho_app.simulation import default_acquisition

from .conftest import random_factors

PARAMETERS = np.array([0.5e-3, -0.3e-3, 2.0, 83e-3])  # dy, dx (m), rotation (deg), distance (m)


def test_led_sines_follow_the_simulators_array():
    """Shift, rotation and distance as simulate's LED array (center offset, rotation) and the sines' formula."""
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3)
    moved = default_acquisition(frame_size=8, upsample=4, leds_per_side=3, center_offset=PARAMETERS[:2],
                                rotation=PARAMETERS[2], led_distance=PARAMETERS[3])
    sines = led_sines(acquisition.led_positions, PARAMETERS).numpy()
    assert np.allclose(sines, moved.direction_sines, rtol=1e-12, atol=1e-15)
    assert np.allclose(led_sines(acquisition.led_positions, nominal_parameters(acquisition)).numpy(),
                       acquisition.direction_sines, rtol=1e-12)
    assert led_model(PARAMETERS)["led_rotation"] == 2.0
    h = np.array([1e-7, 1e-7, 1e-5, 1e-7])
    jacobian = shift_jacobian(acquisition, PARAMETERS)
    for p in range(4):
        step = np.eye(4)[p] * h[p]
        fd = window_shifts(acquisition, PARAMETERS + step) - window_shifts(acquisition, PARAMETERS - step)
        fd = fd / (2 * h[p])
        assert np.allclose(jacobian[:, :, p], fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_direction_sines_only_is_an_error_naming_the_flag():
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3)
    sines_only = dataclasses.replace(acquisition, led_positions=None, led_distance=None,
                                     direction_sines=acquisition.direction_sines)
    with pytest.raises(AcquisitionError, match="--calibrate geometry"):
        require_leds(sines_only)


def test_parameter_gradient_matches_finite_differences():
    """d loss / d (dy, dx, rotation, distance) through evaluate's pupil gradient, the bilinear shift's
    derivative and the Jacobian equals central differences of the loss (windows fixed)."""
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3, center_offset=(0.2e-3, 0.1e-3))
    pupil = acquisition.pupil_function()
    windows = acquisition.window_shifts
    # a support one pixel wider than the disc, so that shifted pupils are not cut
    wide = bilinear_shift(pupil, np.array([[dy, dx] for dy in (-1, 1) for dx in (-1, 1)])).abs().sum(0) > 0
    operator = LiftedFP(acquisition, dtype=torch.complex128, pupils=wide.numpy().astype(complex))
    U, d = random_factors(operator.n, 2, 1, torch.complex128, seed=3)

    def pupils_at(parameters):
        return bilinear_shift(pupil, window_shifts(acquisition, parameters) - windows)

    operator.set_pupils(pupils_at(PARAMETERS * [0, 0, 0, 1] + [0.1e-3, 0, 0.5, 0]))
    b = operator.measure(U, d).detach() * 1.05
    loss = make_loss("amplitude").bind(b)
    start = np.array([0.05e-3, -0.05e-3, 0.2, 80.5e-3])
    operator.set_pupils(pupils_at(start))
    operator.record_pupil_terms = True
    operator.evaluate(U, d, b, loss)
    operator.record_pupil_terms = False
    delta = window_shifts(acquisition, start) - windows
    assert np.abs(delta).max() < 0.5
    gradient = parameter_gradient(operator, pupil, delta, shift_jacobian(acquisition, start))
    h = np.array([1e-7, 1e-7, 1e-4, 1e-7])
    for p in range(4):
        values = []
        for sign in (1, -1):
            operator.set_pupils(pupils_at(start + sign * np.eye(4)[p] * h[p]))
            values.append(operator.evaluate(U, d, b, loss)[0].numpy())
        fd = (values[0] - values[1]) / (2 * h[p])
        assert np.allclose(gradient[:, p], fd, rtol=1e-4), (p, gradient[:, p], fd)
    assert np.abs(gradient).min() > 0
