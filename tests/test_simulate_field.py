"""``simulate --field``: a full-field acquisition (spherical LED waves) that ``reconstruct --tile`` reads."""

import numpy as np
import pytest

from ptycho_app.cli import main
from ptycho_app.io.measurement import read_measurement
from ptycho_app.io.results import read_result
from ptycho_app.tiling import full_field_intensities

FIELD_FLAGS = ["--field", "64", "--frame-size", "32", "--upsample", "2", "--leds", "5", "--distance", "0.06"]


def test_simulate_field_frames_and_tiled_reconstruct(tmp_path):
    path = tmp_path / "field.h5"
    assert main(["simulate", *FIELD_FLAGS, "--out", str(path)]) == 0
    measurement = read_measurement(path)
    assert measurement.frames.shape == (25, 64, 64)
    obj = measurement.ground_truth
    assert obj.shape == (128, 128)
    acquisition = measurement.acquisition
    assert acquisition.frame_size == 64 and acquisition.led_distance == pytest.approx(0.06)
    expected = full_field_intensities(obj, acquisition, 64, pad=64 // 4, pad_mode="reflect")
    np.testing.assert_allclose(measurement.frames, expected, rtol=1e-5, atol=1e-6 * expected.max())

    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "--tile", "32", "--overlap", "8", "--method", "bm", "--rank", "1",
                 "--iters", "100", "--out", str(out), "--no-progress"]) == 0
    result = read_result(out / "field.bm.h5")
    assert result.tiled and result.object.shape == (128, 128)


@pytest.mark.parametrize("flags, named", [(["--geometry", "GEOMETRY"], "--geometry"),
                                          (["--direction-sines", "SINES"], "--direction-sines"),
                                          (["--field", "16"], "--field"),
                                          (["--field-pad", "-1"], "--field-pad")])
def test_simulate_field_refusals(tmp_path, capsys, flags, named):
    geometry = tmp_path / "geometry.h5"
    assert main(["simulate", "--out", str(geometry)]) == 0
    sines = tmp_path / "sines.npy"
    np.save(sines, np.zeros((4, 2)))
    flags = [str(geometry) if f == "GEOMETRY" else str(sines) if f == "SINES" else f for f in flags]
    capsys.readouterr()
    out = tmp_path / "field.h5"
    assert main(["simulate", *FIELD_FLAGS, *flags, "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert named in message and len(message.splitlines()) == 1
    assert not out.exists()


def test_field_pad_needs_field(tmp_path, capsys):
    assert main(["simulate", "--field-pad", "4", "--out", str(tmp_path / "m.h5")]) == 2
    message = capsys.readouterr().err.strip()
    assert "--field-pad" in message and len(message.splitlines()) == 1
