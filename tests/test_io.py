"""Measurement and result files: PtyLab's layout both ways, extras, and every bad-input case."""

import h5py
import numpy as np
import pytest

from ptycho_app.io.errors import InputFileError
from ptycho_app.io.measurement import (
    NegativeFramesWarning,
    acquisition_key,
    led_positions_for,
    read_measurement,
    write_measurement,
)
from ptycho_app.io.results import Result, read_result, write_result
from ptycho_app.physics import Acquisition, direction_sines_from_leds, fp_intensities
from ptycho_app.simulation import default_acquisition


@pytest.fixture
def measurement_file(tmp_path, small_acquisition, small_object):
    path = tmp_path / "sample.h5"
    frames = fp_intensities(small_object, small_acquisition)
    write_measurement(path, frames, small_acquisition, ground_truth=small_object)
    return path


def test_round_trip_keeps_frames_geometry_and_truth(measurement_file, small_acquisition, small_object):
    m = read_measurement(measurement_file)
    np.testing.assert_allclose(m.frames, fp_intensities(small_object, small_acquisition).astype(np.float32))
    a = m.acquisition
    np.testing.assert_allclose(a.direction_sines, small_acquisition.direction_sines, rtol=1e-12)
    assert (a.wavelength, a.na, a.magnification, a.camera_pixel, a.frame_size, a.upsample) == (
        532e-9, 0.08, 4.0, 6.5e-6, 16, 2)
    np.testing.assert_allclose(m.ground_truth, small_object.astype(np.complex64))
    assert m.frame_type == "intensity" and m.notes == []
    assert acquisition_key(a) == acquisition_key(small_acquisition)


def test_file_has_ptylab_layout(measurement_file, small_acquisition):
    with h5py.File(measurement_file, "r") as f:
        assert f["ptychogram"].dtype == np.float32 and f["ptychogram"].shape == (25, 16, 16)
        np.testing.assert_array_equal(f["encoder"][()], small_acquisition.led_positions)
        assert f["wavelength"][()] == 532e-9 and f["dxd"][()] == 6.5e-6
        assert f["zled"][()] == 80e-3 and f["magnification"][()] == 4.0 and f["NA"][()] == 0.08


def test_minimal_ptylab_file_with_transposed_encoder(tmp_path, small_acquisition, small_object):
    """A file as PtyLab writes it (no extras, encoder (2, L) off-centre): mean-centred and transposed,
    upsampling chosen as the smallest that fits."""
    path = tmp_path / "ptylab.h5"
    frames = fp_intensities(small_object, small_acquisition)
    with h5py.File(path, "w") as f:
        f["ptychogram"] = frames.astype(np.float32)
        f["encoder"] = (small_acquisition.led_positions + [1e-3, -2e-3]).T
        f["wavelength"], f["dxd"], f["zled"] = 532e-9, 6.5e-6, 80e-3
        f["magnification"], f["NA"] = 4.0, 0.08
    m = read_measurement(path)
    np.testing.assert_allclose(m.acquisition.led_positions, small_acquisition.led_positions, atol=1e-15)
    # largest window shift: 2 LEDs * 4 mm at 80 mm -> s = 0.0995 -> 0.0995 / (532e-9 * dk) px
    dk = 1 / (16 * 6.5e-6 / 4)
    shift = np.round(0.008 / np.hypot(0.008, 0.08) / (532e-9 * dk))
    expected = int(np.ceil((shift + 8) / 8))  # N / 2 >= shift + M / 2 with N = 16 * upsample
    assert m.acquisition.upsample == expected and "smallest" in m.notes[0]


def test_direction_sines_acquisition_writes_equivalent_led_positions(tmp_path, small_acquisition):
    sines = small_acquisition.direction_sines * 0.9
    acquisition = Acquisition(wavelength=532e-9, na=0.08, magnification=4.0, camera_pixel=6.5e-6, frame_size=16,
                              upsample=2, direction_sines=sines)
    positions, distance = led_positions_for(acquisition)
    np.testing.assert_allclose(direction_sines_from_leds(positions, distance), sines, rtol=1e-12)
    path = tmp_path / "sines.h5"
    write_measurement(path, np.ones((25, 16, 16)), acquisition, frame_type="amplitude")
    m = read_measurement(path)
    np.testing.assert_allclose(m.acquisition.direction_sines, sines, rtol=1e-12)
    assert m.frame_type == "amplitude"
    np.testing.assert_array_equal(m.intensities(), np.ones((25, 16, 16)))


def test_pupil_and_defocus_round_trip(tmp_path):
    pupil = np.exp(1j * np.linspace(0, 1, 64)).reshape(8, 8)
    acquisition = default_acquisition(frame_size=8, upsample=4, leds_per_side=3, defocus=5e-6)
    acquisition = Acquisition(**{**acquisition.__dict__, "pupil": pupil})
    path = tmp_path / "pupil.h5"
    write_measurement(path, np.ones((9, 8, 8)), acquisition)
    a = read_measurement(path).acquisition
    np.testing.assert_allclose(a.pupil, pupil, rtol=1e-6)
    assert a.defocus == 5e-6
    np.testing.assert_allclose(a.pupil_function(), acquisition.pupil_function(), atol=1e-6)


def test_small_negatives_are_clipped_with_a_warning(tmp_path, small_acquisition, small_object):
    frames = fp_intensities(small_object, small_acquisition)
    frames[3, 0, :4] = -1e-3
    path = tmp_path / "background.h5"
    write_measurement(path, frames, small_acquisition)
    with pytest.warns(NegativeFramesWarning, match="clipped 4 negative values"):
        m = read_measurement(path)
    assert m.frames.min() == 0 and m.frames[3, 0, :4].tolist() == [0, 0, 0, 0]


def edit(path, name, value=None, delete=False, rename=None):
    with h5py.File(path, "r+") as f:
        if rename:
            f.move(name, rename)
            return
        if name in f:
            del f[name]
        if not delete:
            f[name] = value


BAD_CASES = {
    "missing frames": (lambda p: edit(p, "ptychogram", delete=True), "ptychogram: missing"),
    "misnamed frames": (lambda p: edit(p, "ptychogram", rename="Ptychogram"), "ptychogram: missing"),
    "2-D frames": (lambda p: edit(p, "ptychogram", np.ones((16, 16), np.float32)), "ptychogram: expected 3 axes"),
    "non-square frames": (lambda p: edit(p, "ptychogram", np.ones((25, 16, 8), np.float32)), "square frames"),
    "string frames": (lambda p: edit(p, "ptychogram", np.array([b"a", b"b"] * 4).reshape(2, 2, 2)),
                      "ptychogram: expected real numbers"),
    "NaN frames": (lambda p: edit(p, "ptychogram", np.full((25, 16, 16), np.nan, np.float32)), "NaN/Inf"),
    "negative frame": (lambda p: edit(p, "ptychogram", -np.ones((25, 16, 16), np.float32)),
                       "negative throughout"),
    "LEDs vs frames": (lambda p: edit(p, "encoder", np.zeros((24, 2))), "25 frames in ptychogram but encoder"),
    "missing encoder": (lambda p: edit(p, "encoder", delete=True), "encoder: missing"),
    "zero wavelength": (lambda p: edit(p, "wavelength", 0.0), "wavelength: must be positive"),
    "negative wavelength": (lambda p: edit(p, "wavelength", -5e-7), "wavelength: must be positive"),
    "NA >= 1": (lambda p: edit(p, "NA", 1.2), "NA: must lie in (0, 1)"),
    "missing NA": (lambda p: edit(p, "NA", delete=True), "NA: missing"),
    "array wavelength": (lambda p: edit(p, "wavelength", np.ones(3)), "wavelength: expected a real scalar"),
    "Inf pixel": (lambda p: edit(p, "dxd", np.inf), "dxd: expected a finite number"),
    "bad frame type": (lambda p: edit(p, "frame_type", "photons"), "frame_type: expected one of"),
    "bad truth shape": (lambda p: edit(p, "ground_truth", np.ones((8, 8), np.complex64)), "ground_truth"),
    "orientation": (lambda p: edit(p, "orientation", 3), "orientation 3 is not supported"),
    "too-small upsample": (lambda p: edit(p, "upsample", 1), "increase upsample"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_measurement_files_raise_one_clear_error(case, measurement_file):
    damage, expected = BAD_CASES[case]
    damage(measurement_file)
    with pytest.raises(InputFileError) as error:
        read_measurement(measurement_file)
    message = str(error.value)
    assert message.startswith(str(measurement_file)) and expected in message and "\n" not in message


def test_unreadable_files(tmp_path, measurement_file):
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(measurement_file.read_bytes()[:2000])
    for path, expected in ((tmp_path / "absent.h5", "no such file"), (text, "not a readable HDF5 file"),
                           (truncated, "not a readable HDF5 file"), (tmp_path, "is a folder")):
        with pytest.raises(InputFileError, match=expected):
            read_measurement(path)


def test_result_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    result = Result(eigenvalues=np.array([3.0, 1e-3, 0.0]), loss=np.linspace(2, 1, 11),
                    U=(rng.standard_normal((16, 3)) + 1j * rng.standard_normal((16, 3))).astype(np.complex64),
                    d=np.array([1.0, 0.5, 0.0]), attrs={"method": "udu", "rank": 3, "options": {"xi": 1e-3}},
                    object=np.ones((4, 4), np.complex64), spectrum=np.zeros((4, 4), np.complex64))
    path = tmp_path / "x.udu.h5"
    write_result(path, result)
    back = read_result(path)
    np.testing.assert_array_equal(back.U, result.U)
    np.testing.assert_array_equal(back.loss, result.loss)
    assert back.method == "udu" and back.attrs["rank"] == 3 and "app_version" in back.attrs
    assert back.iterations == 10 and back.reference is None
    assert not list(tmp_path.glob("*.part"))


def test_results_written_before_0_2_name_the_method_solver(tmp_path):
    """Files of version 0.1 store the method as attribute 'solver'; they read as before."""
    old = Result(eigenvalues=np.array([1.0]), loss=np.ones(3), U=np.ones((4, 1), np.complex64), d=np.ones(1),
                 attrs={"solver": "bm"})
    write_result(tmp_path / "old.bm.h5", old)
    assert read_result(tmp_path / "old.bm.h5").method == "bm"


def test_measurement_file_is_not_a_result(measurement_file):
    with pytest.raises(InputFileError, match="a measurement file"):
        read_result(measurement_file)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, small_acquisition):
    import os

    from ptycho_app.io import atomic_path

    target = tmp_path / "out.h5"
    write_measurement(target, np.ones((25, 16, 16)), small_acquisition)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="frames have shape"):
        write_measurement(target, np.ones((3, 16, 16)), small_acquisition)  # fails before opening
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half written")
        raise KeyboardInterrupt
    assert target.read_bytes() == before and not list(tmp_path.glob("*.part"))
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "shared.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644
