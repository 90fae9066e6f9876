"""The napari plugin's calibration views under Xvfb: pupil layers from result files and live updates."""

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")

from ptycho_app.calibration.summary import pupil_phase  # noqa: E402
from ptycho_app.io.measurement import Measurement  # noqa: E402
from ptycho_app.io.results import write_result  # noqa: E402
from ptycho_app.live import LiveUpdate, SolverView  # noqa: E402
from ptycho_app.simulation import default_acquisition  # noqa: E402

from .test_calibration_io import M, aberration, example_calibration, small_result  # noqa: E402


@pytest.fixture(scope="module")
def acquisition():
    return default_acquisition(frame_size=M, upsample=2, leds_per_side=5)


def test_reader_adds_pupil_layers_for_a_result_with_a_calibration(tmp_path, acquisition, make_napari_viewer):
    calibration = example_calibration(acquisition)
    write_result(tmp_path / "tile.udu.h5", small_result(acquisition, calibration))
    write_result(tmp_path / "plain.udu.h5", small_result(acquisition))
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "tile.udu.h5"), plugin="ptycho-app")
    assert [layer.name for layer in layers] == ["tile UDU amplitude", "tile UDU phase", "tile UDU pupil amplitude",
                                                "tile UDU pupil phase"]
    np.testing.assert_allclose(layers[2].data, np.abs(calibration.pupil), atol=1e-6)
    expected = np.nan_to_num(pupil_phase(calibration.pupil.astype(np.complex64)), nan=0.0)
    np.testing.assert_allclose(layers[3].data, expected, atol=1e-5)
    assert layers[3].data[0, 0] == 0 and layers[2].scale[0] == pytest.approx(32 * 1.0 / M)  # the object's size
    assert len(viewer.open(str(tmp_path / "plain.udu.h5"), plugin="ptycho-app")) == 2


def fake_update(iteration, pupil):
    """An update as :func:`ptycho_app.live.live_reconstruction` yields it, with ``state.calibration``'s pupil."""
    rng = np.random.default_rng(iteration)
    image = rng.uniform(size=(32, 32)).astype(np.float32)
    view = SolverView(image, image - 0.5, np.array([1.0, 0.1]), np.linspace(2, 1, iteration + 1), 0.1, 0.2, pupil)
    return LiveUpdate(iteration, {"udu": view}, 0.5)


def test_widget_shows_a_live_pupil_updated_in_place(acquisition, make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    widget.measurement, widget.name = Measurement(frames=None, acquisition=acquisition), "tile"
    widget.show_update(fake_update(10, None))  # a run that recovers no pupil: no pupil layer
    assert "tile UDU pupil phase" not in viewer.layers and "tile UDU amplitude" in viewer.layers
    phase, disc = aberration(acquisition)
    for iteration, scale in ((20, 0.5), (30, 1.0)):  # the pupil recovered so far, as it changes
        pupil = disc * np.exp(1j * scale * phase)
        widget.show_update(fake_update(iteration, pupil))
        layer = viewer.layers["tile UDU pupil phase"]
        if iteration == 20:
            first = layer
        expected = scale * (phase - phase[disc].mean()) * disc
        np.testing.assert_allclose(layer.data, expected, atol=1e-9)
        assert layer.contrast_limits == pytest.approx([-np.abs(expected).max(), np.abs(expected).max()])
        np.testing.assert_allclose(viewer.layers["tile UDU pupil amplitude"].data, disc.astype(float))
    assert layer is first  # updated in place, not added again
    assert sum(name.endswith("pupil phase") for name in (x.name for x in viewer.layers)) == 1
