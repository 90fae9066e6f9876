"""Calibration outputs: result files, ``info``, ``compare``, live views, and ``--calibration`` reuse."""

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ptycho_app.batch import Input, reconstruct_files, results_from_state
from ptycho_app.calibration import Calibration
from ptycho_app.calibration.apply import apply_calibration, read_calibration_file
from ptycho_app.calibration.summary import pupil_phase, pupil_support, rms_pupil_phase, zernike_name
from ptycho_app.cli import main
from ptycho_app.io.errors import InputFileError
from ptycho_app.io.measurement import Measurement, write_measurement
from ptycho_app.io.results import Result, read_result, write_result
from ptycho_app.lifting import LiftedFP
from ptycho_app.live import recovered_pupil
from ptycho_app.physics import Acquisition, fp_intensities
from ptycho_app.report import compare_results, describe_file
from ptycho_app.session import batch_options, run
from ptycho_app.simulation import default_acquisition, reference_object

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
M, L = 16, 25


def unit_pupil(acquisition: Acquisition):
    """Normalized pupil radius ``r`` and angle ``theta`` on the window grid, and the NA disc."""
    f = (np.arange(acquisition.frame_size) - acquisition.frame_size // 2) * acquisition.frequency_step
    fy, fx = np.meshgrid(f, f, indexing="ij")
    r = np.hypot(fy, fx) / (acquisition.na / acquisition.wavelength)
    return r, np.arctan2(fy, fx), r <= 1


def aberration(acquisition: Acquisition, defocus=2.0, astigmatism=0.5, coma=0.3):
    """Noll Z4 (sqrt3 (2r^2 - 1)), Z6 (sqrt6 r^2 cos 2t) and Z8 (sqrt8 (3r^3 - 2r) cos t), in radians."""
    r, t, disc = unit_pupil(acquisition)
    phase = (defocus * np.sqrt(3) * (2 * r**2 - 1) + astigmatism * np.sqrt(6) * r**2 * np.cos(2 * t)
             + coma * np.sqrt(8) * (3 * r**3 - 2 * r) * np.cos(t))
    return phase, disc


def example_calibration(acquisition: Acquisition, seed=0) -> Calibration:
    rng = np.random.default_rng(seed)
    phase, disc = aberration(acquisition)
    n = acquisition.n_frames
    leds = {"led_shift_y": 5e-4, "led_shift_x": -2e-4, "led_rotation": 2.0, "led_distance": 0.083}
    return Calibration(pupil=disc * np.exp(1j * phase), zernike=np.array([0.0, 0.01, -0.02, 2.0, 0.0, 0.5, 0.0, 0.3]),
                       brightness=1 + 0.2 * rng.uniform(-1, 1, n),
                       direction_sines=acquisition.direction_sines + 1e-3 * rng.standard_normal((n, 2)),
                       led_model=leds, attrs={"pupil_mode": "recover", "calibrate": "all"})


def small_result(acquisition: Acquisition, calibration=None) -> Result:
    N = acquisition.grid_size
    rng = np.random.default_rng(1)
    obj = (reference_object(N) if N >= 32 else np.ones((N, N))).astype(np.complex64)
    U = rng.standard_normal((N * N, 2)) + 1j * rng.standard_normal((N * N, 2))
    return Result(eigenvalues=np.array([2.0, 0.1]), loss=np.array([3.0, 2.0, 1.0]), U=U, d=np.ones(2),
                  attrs={"method": "udu", "problem": "fp", "rank": 2, "input_file": "tile.h5", "pixel_size": 1e-6,
                         "relative_residual": 0.05},
                  object=obj, spectrum=obj, calibration=calibration)


@pytest.fixture(scope="module")
def acquisition():
    return default_acquisition(frame_size=M, upsample=2, leds_per_side=5)


# ---- result files ------------------------------------------------------------------------------
def test_calibration_round_trips_through_a_result_file(tmp_path, acquisition):
    calibration = example_calibration(acquisition)
    path = tmp_path / "tile.udu.h5"
    write_result(path, small_result(acquisition, calibration))
    with h5py.File(path, "r") as f:
        group = f["calibration"]
        assert group["pupil"].dtype == np.complex64 and group["pupil"].shape == (M, M)
        assert group["brightness"].shape == (L,) and group["direction_sines"].shape == (L, 2)
        assert group.attrs["led_rotation"] == 2.0 and group.attrs["pupil_mode"] == "recover"
    back = read_result(path).calibration
    np.testing.assert_allclose(back.pupil, calibration.pupil, atol=1e-7)  # complex64 on disk
    for name in ("zernike", "brightness", "direction_sines"):
        np.testing.assert_array_equal(getattr(back, name), getattr(calibration, name))
    assert back.led_model == calibration.led_model
    assert back.attrs == calibration.attrs
    # a result without one reads as None, and an empty calibration writes no group
    write_result(tmp_path / "plain.h5", small_result(acquisition, Calibration()))
    assert read_result(tmp_path / "plain.h5").calibration is None
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert "calibration" not in f


def damage(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


@pytest.mark.parametrize("edit, dataset, words", [
    (lambda f: f["calibration/brightness"].__setitem__(3, np.nan), "calibration/brightness", "NaN/Inf"),
    (lambda f: (f.__delitem__("calibration/pupil"), f["calibration"].create_dataset("pupil", data=np.ones((4, 5)))),
     "calibration/pupil", "square"),
    (lambda f: (f.__delitem__("calibration/direction_sines"),
                f["calibration"].create_dataset("direction_sines", data=np.zeros((L, 3)))),
     "calibration/direction_sines", "(L, 2)"),
    (lambda f: (f.__delitem__("calibration/brightness"),
                f["calibration"].create_dataset("brightness", data=np.ones(7))),
     "calibration/brightness", "one per frame"),
    (lambda f: (f.__delitem__("calibration/zernike"),
                f["calibration"].create_dataset("zernike", data=np.ones((2, 2)))),
     "calibration/zernike", "1 axes"),
    (lambda f: f["calibration"].attrs.__setitem__("led_distance", "far"), "calibration/led_distance", "finite number"),
    (lambda f: (f.__delitem__("calibration"), f.create_dataset("calibration", data=1.0)), "calibration", "group"),
])
def test_damaged_calibration_is_refused_naming_file_and_dataset(tmp_path, acquisition, edit, dataset, words):
    path = tmp_path / "tile.udu.h5"
    write_result(path, small_result(acquisition, example_calibration(acquisition)))
    damage(path, edit)
    with pytest.raises(InputFileError) as error:
        read_result(path)
    assert error.value.field == dataset and str(path) in str(error.value) and words in str(error.value)


def test_results_from_state_carries_the_state_calibration(tmp_path, acquisition):
    obj = reference_object(acquisition.grid_size)
    frames = fp_intensities(obj, acquisition).astype(np.float32)
    measurement = Measurement(frames=frames, acquisition=acquisition)
    operator = LiftedFP(acquisition)
    options = batch_options(("udu", "bm"), "fast", (0,), max_iters=2)
    b = torch.as_tensor(frames)[None].expand(2, -1, -1, -1)
    state = list(run(operator, b, options))[-1]
    calibration = example_calibration(acquisition)
    state = dataclasses.replace(state, calibration=[calibration, None])
    group = [Input(tmp_path / "tile.h5", measurement, "0" * 64)] * 2
    results = results_from_state(state, group, options, [None, None], "cpu", "single")
    assert results[0].calibration is calibration and results[1].calibration is None
    assert recovered_pupil(state, 0) is not None and recovered_pupil(state, 1) is None
    np.testing.assert_array_equal(recovered_pupil(state, 0), calibration.pupil)
    assert results_from_state(dataclasses.replace(state, calibration=None), group, options, [None, None], "cpu",
                              "single")[0].calibration is None


# ---- the pupil's phase and info ----------------------------------------------------------------
def test_rms_phase_is_that_of_the_aberration_even_where_it_wraps(acquisition):
    phase, disc = aberration(acquisition, defocus=2.0)  # peak-to-valley about 7 rad: wraps
    pupil = 0.7 * disc * np.exp(1j * (phase + 1.3))  # a piston and a scale change nothing
    assert np.ptp(phase[disc]) > 2 * np.pi
    expected = np.sqrt(np.mean((phase[disc] - phase[disc].mean()) ** 2))
    assert rms_pupil_phase(pupil) == pytest.approx(expected, rel=1e-9)
    shown = pupil_phase(pupil)
    assert np.array_equal(np.isfinite(shown), disc) and np.array_equal(pupil_support(pupil), disc)
    np.testing.assert_allclose(shown[disc], phase[disc] - phase[disc].mean(), atol=1e-9)
    assert rms_pupil_phase(disc.astype(complex)) == 0.0
    assert [zernike_name(j) for j in (1, 2, 3, 4, 7, 11, 40)] == [
        "piston", "tip", "tilt", "defocus", "vertical coma", "spherical", "Z40"]


def test_info_shows_the_calibration(tmp_path, acquisition, capsys):
    calibration = example_calibration(acquisition)
    path = tmp_path / "tile.udu.h5"
    write_result(path, small_result(acquisition, calibration))
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    rms = rms_pupil_phase(calibration.pupil)
    assert f"pupil {M} x {M}, {int(unit_pupil(acquisition)[2].sum())} pixels in the support" in text
    assert f"RMS aberration phase {rms:.3f} rad" in text
    assert "piston +0.000, tip +0.010, tilt -0.020, defocus +2.000" in text and "horizontal coma +0.300" in text
    b = calibration.brightness
    assert f"brightness {b.min():.4g} to {b.max():.4g} over {L} frames" in text
    assert "LED fit: shift (dy, dx) (0.500, -0.200) mm, rotation 2.000 deg, distance 83.000 mm" in text
    assert "pupil_mode recover, calibrate all" in text
    write_result(tmp_path / "plain.h5", small_result(acquisition))
    assert "calibration" not in describe_file(tmp_path / "plain.h5")


# ---- compare -----------------------------------------------------------------------------------
def test_compare_draws_the_pupil_and_reports_its_rms_phase(tmp_path, acquisition):
    from PIL import Image

    calibration = example_calibration(acquisition)
    write_result(tmp_path / "tile.udu.h5", small_result(acquisition, calibration))
    plain = small_result(acquisition)
    plain.attrs = {**plain.attrs, "input_file": "plain.h5"}
    write_result(tmp_path / "plain.udu.h5", plain)
    report = compare_results([tmp_path / "tile.udu.h5", tmp_path / "plain.udu.h5"], tmp_path / "out")
    rows = {row["input"]: row for row in report["rows"]}
    assert rows["tile.h5"]["pupil_rms_phase"] == pytest.approx(rms_pupil_phase(calibration.pupil))
    assert rows["plain.h5"]["pupil_rms_phase"] is None
    assert json.loads((tmp_path / "out" / "tile-metrics.json").read_text())[0]["pupil_rms_phase"] == pytest.approx(
        rows["tile.h5"]["pupil_rms_phase"])
    assert "pupil_rms_phase" in (tmp_path / "out" / "tile-metrics.md").read_text()
    assert "pupil_rms_phase" not in (tmp_path / "out" / "plain-metrics.md").read_text()
    with_pupil = Image.open(tmp_path / "out" / "tile.comparison.png")
    without = Image.open(tmp_path / "out" / "plain.comparison.png")
    assert with_pupil.size[0] > 1.3 * without.size[0]  # one more column: the pupil
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "compare-with-pupil.png").write_bytes((tmp_path / "out" / "tile.comparison.png").read_bytes())


# ---- applying a calibration --------------------------------------------------------------------
def aberrated_setup(acquisition):
    """A true acquisition (aberrated pupil, LED board shifted and rotated) and the nominal one."""
    phase, _ = aberration(acquisition)
    true_sines = default_acquisition(frame_size=M, upsample=2, leds_per_side=5, center_offset=(5e-4, -3e-4),
                                     rotation=2.0).direction_sines
    true = dataclasses.replace(acquisition, pupil=np.exp(1j * phase), defocus=3e-6, direction_sines=true_sines,
                               led_positions=None, led_distance=None)
    return true, acquisition


def test_applied_calibration_gives_the_true_forward_model(acquisition):
    true, nominal = aberrated_setup(acquisition)
    obj = reference_object(acquisition.grid_size).astype(np.complex128)
    calibration = Calibration(pupil=true.pupil_function(), direction_sines=true.direction_sines)
    calibrated = apply_calibration(nominal, calibration)
    assert isinstance(calibrated, Acquisition) and calibrated.defocus == 0.0
    assert nominal.pupil is None and nominal.led_positions is not None  # the input is not modified
    expected = fp_intensities(obj, true)
    np.testing.assert_allclose(fp_intensities(obj, calibrated), expected, rtol=1e-12, atol=1e-12 * expected.max())
    assert np.abs(fp_intensities(obj, nominal) - expected).max() > 0.1 * expected.max()  # the mismatch it removes
    # brightness: frames b_l I_l come back as I_l; amplitude frames are divided by sqrt(b_l)
    brightness = example_calibration(acquisition).brightness
    measured = (brightness[:, None, None] * expected).astype(np.float32)
    measurement = Measurement(frames=measured, acquisition=nominal, path=Path("tile.h5"))
    corrected = apply_calibration(measurement, dataclasses.replace(calibration, brightness=brightness), "cal.h5")
    np.testing.assert_allclose(corrected.frames, expected, rtol=1e-6, atol=1e-7 * expected.max())
    assert np.array_equal(measurement.frames, measured)
    assert corrected.acquisition.pupil_function() == pytest.approx(true.pupil_function())
    assert "calibration from cal.h5 applied: pupil, direction_sines, brightness" in corrected.notes
    amplitudes = dataclasses.replace(measurement, frames=np.sqrt(measured), frame_type="amplitude")
    np.testing.assert_allclose(apply_calibration(amplitudes, Calibration(brightness=brightness)).intensities(),
                               expected, rtol=1e-5, atol=1e-6 * expected.max())


def write_calibration_result(path, acquisition, calibration):
    write_result(path, small_result(acquisition, calibration))
    return path


@pytest.mark.parametrize("calibration, dataset, words", [
    (Calibration(pupil=np.ones((8, 8))), "calibration/pupil", f"has shape (8, 8), expected ({M}, {M}) like the frames"),
    (Calibration(brightness=np.ones(9)), "calibration/brightness", f"has 9 values, expected {L} (one per frame"),
    (Calibration(brightness=np.r_[0.0, np.ones(L - 1)]), "calibration/brightness", "expected positive values"),
    (Calibration(direction_sines=np.zeros((9, 2))), "calibration/direction_sines", f"expected ({L}, 2)"),
    (Calibration(direction_sines=np.full((L, 2), 0.6)), "calibration", "leave the"),
])
def test_a_calibration_that_does_not_fit_is_refused(tmp_path, acquisition, calibration, dataset, words):
    source = write_calibration_result(tmp_path / "cal.udu.h5", acquisition, calibration)
    measurement = Measurement(frames=np.ones((L, M, M), np.float32), acquisition=acquisition, path=Path("tile.h5"))
    with pytest.raises(InputFileError) as error:
        apply_calibration(measurement, read_calibration_file(source), source)
    assert error.value.field == dataset and str(source) in str(error.value) and words in str(error.value)


def test_files_without_a_calibration_are_refused(tmp_path, acquisition):
    write_result(tmp_path / "plain.udu.h5", small_result(acquisition))
    write_measurement(tmp_path / "tile.h5", np.ones((L, M, M)), acquisition)
    for name, kind in (("plain.udu.h5", "a result without one"), ("tile.h5", "a measurement file")):
        with pytest.raises(InputFileError, match=f"calibration: missing \\({kind}\\)") as error:
            read_calibration_file(tmp_path / name)
        assert str(tmp_path / name) in str(error.value)


def test_reconstruct_with_calibration_uses_it_and_fails_in_one_line(tmp_path, acquisition, capsys):
    true, nominal = aberrated_setup(acquisition)
    obj = reference_object(acquisition.grid_size)
    brightness = example_calibration(acquisition).brightness
    frames = brightness[:, None, None] * fp_intensities(obj.astype(np.complex128), true)
    write_measurement(tmp_path / "tile.h5", frames, nominal)  # the file says: ideal pupil, nominal LEDs
    source = write_calibration_result(tmp_path / "cal.udu.h5", acquisition, Calibration(
        pupil=true.pupil_function(), direction_sines=true.direction_sines, brightness=brightness))
    seen = {}
    for name, calibration in (("with", source), ("without", None)):
        written = reconstruct_files([tmp_path / "tile.h5"], out_dir=tmp_path / name, progress=False,
                                    calibration=calibration, max_iters=60, rank=1)
        seen[name] = max(read_result(path).attrs["relative_residual"] for path in written)
    # the calibrated model fits the data (noise-free: 2e-4 after 60 iterations), the nominal one cannot (0.55)
    assert seen["with"] < 1e-3 and seen["without"] > 0.3, seen
    assert main(["reconstruct", str(tmp_path / "tile.h5"), "--calibration", str(tmp_path / "tile.h5"), "--out",
                 str(tmp_path / "r"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "tile.h5: calibration: missing (a measurement file)" in error
    assert not (tmp_path / "r" / "tile.udu.h5").exists()
