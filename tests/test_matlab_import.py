"""MATLAB FP importer: synthetic files with known content, error messages, and the real blood-smear data."""

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from ptycho_app.io.errors import InputFileError
from ptycho_app.io.matlab import MatlabImport, read_illumination_csv, read_matlab_fp

M, L = 16, 9
WAVELENGTH, DEFOCUS = 500e-9, -20e-6
PIXEL_SIZE, MAGNIFICATION, NA = 1e-6, 4.0, 0.1
# kx_na, ky_na of frame j (MATLAB index j along the third axis): minus the direction sines
KX = np.array([0.0, 0.05, -0.1, 0.0, 0.05, -0.1, 0.0, 0.05, -0.1])
KY = np.array([0.0, 0.0, 0.0, -0.2, -0.2, -0.2, 0.3, 0.3, 0.3])
OPTICS = dict(na=NA, magnification=MAGNIFICATION, pixel_size=PIXEL_SIZE)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fpm_bloodsmear_uconn"


def smallest_upsample(sines, wavelength, pixel_size, m):
    """Smallest u >= 2 with every window [c - m//2, c - m//2 + m) inside [0, u*m), by the conventions' formula."""
    dk = 1.0 / (m * pixel_size)
    shifts = np.round(np.asarray(sines) / (wavelength * dk)).astype(int)
    for u in range(2, 100):
        n = u * m
        top_left = n // 2 + shifts - m // 2
        if top_left.min() >= 0 and (top_left + m).max() <= n:
            return u
    raise AssertionError("no upsample fits")


def write_csv(path, rows, header=("frame", "led_dx", "led_dy", "kx_na", "ky_na")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def synthetic(tmp_path):
    """A v5 .mat in MATLAB (M, M, L) layout and a CSV listing the frames in shuffled order."""
    rng = np.random.default_rng(7)
    stack = rng.uniform(0.5, 2.0, size=(M, M, L)).astype(np.float32)
    mat = tmp_path / "sample.mat"
    scipy.io.savemat(mat, {"imlow_HDR": stack, "wlength": WAVELENGTH, "z": DEFOCUS, "aberration": 0.0})
    order = rng.permutation(L)
    assert not np.array_equal(order, np.arange(L))
    rows = [(j, 0, 0, KX[j], KY[j]) for j in order]
    illumination = write_csv(tmp_path / "illumination_sample.csv", rows)
    return mat, illumination, stack, order


def assert_input_error(excinfo, path, field):
    message = str(excinfo.value)
    assert isinstance(excinfo.value, InputFileError)
    assert Path(path).name in message, message
    assert field in message, message
    return message


# ---- synthetic files with known content --------------------------------------------------


def test_frames_are_transposed_and_reordered_by_frame_column(synthetic):
    mat, illumination, stack, order = synthetic
    result = read_matlab_fp(mat, illumination, **OPTICS)
    assert isinstance(result, MatlabImport)
    assert result.frames.dtype == np.float32 and result.frames.shape == (L, M, M)
    for row, j in enumerate(order):
        np.testing.assert_array_equal(result.frames[row], stack[:, :, j])
    assert result.frame_type == "intensity"


def test_direction_sines_are_minus_k_and_optics_come_from_the_file(synthetic):
    mat, illumination, _, order = synthetic
    acq = read_matlab_fp(mat, illumination, **OPTICS).acquisition
    expected = -np.stack([KY[order], KX[order]], axis=1)
    np.testing.assert_allclose(acq.direction_sines, expected, rtol=0, atol=0)
    assert acq.wavelength == WAVELENGTH and acq.defocus == DEFOCUS and acq.pupil is None
    assert acq.camera_pixel == pytest.approx(PIXEL_SIZE * MAGNIFICATION, rel=1e-15)
    assert acq.frame_size == M and acq.na == NA
    # a frame lit with ky_na = -0.2 has s_y = +0.2: window 0.2 / (500e-9 * 62500) = 6.4 -> 6 rows below centre
    row = int(np.flatnonzero((KY[order] == -0.2) & (KX[order] == 0.0))[0])
    assert tuple(acq.window_shifts[row]) == (6, 0)


def test_upsample_is_the_smallest_that_fits(synthetic):
    mat, illumination, _, _ = synthetic
    result = read_matlab_fp(mat, illumination, **OPTICS)
    # by hand: dk = 1/(16 um) = 62500 /m; s_y = -0.3 -> shift round(-9.6) = -10 rows;
    # u = 2: 32//2 - 10 - 8 = -2 < 0 (leaves); u = 3: 24 - 10 - 8 = 6 >= 0 and 24 + 6 - 8 + 16 = 38 <= 48
    assert result.acquisition.upsample == 3
    assert smallest_upsample(-np.stack([KY, KX], 1), WAVELENGTH, PIXEL_SIZE, M) == 3
    assert any("upsample: 3" in note for note in result.notes)
    assert any("'imlow_HDR'" in note and "(16, 16, 9)" in note for note in result.notes)
    assert any("-1 * (ky_na, kx_na)" in note for note in result.notes)
    assert any("intensity" in note and "declared" in note for note in result.notes)
    assert read_matlab_fp(mat, illumination, upsample=5, **OPTICS).acquisition.grid_size == 5 * M


@pytest.mark.parametrize("crop, start", [(8, 4), (9, 4)])
def test_crop_keeps_the_central_block(synthetic, crop, start):
    mat, illumination, stack, order = synthetic
    result = read_matlab_fp(mat, illumination, crop=crop, **OPTICS)
    expected = stack[start : start + crop, start : start + crop, :].transpose(2, 0, 1)[order]
    np.testing.assert_array_equal(result.frames, expected)
    assert result.acquisition.frame_size == crop
    sines = -np.stack([KY[order], KX[order]], axis=1)
    assert result.acquisition.upsample == smallest_upsample(sines, WAVELENGTH, PIXEL_SIZE, crop)


def test_arguments_override_the_file_and_camera_pixel(synthetic):
    mat, illumination, _, _ = synthetic
    result = read_matlab_fp(
        mat,
        illumination,
        wavelength=600e-9,
        defocus=0.0,
        na=NA,
        magnification=2.0,
        camera_pixel=3e-6,
        frame_type="amplitude",
    )
    acq = result.acquisition
    assert (acq.wavelength, acq.defocus, acq.camera_pixel, acq.magnification) == (600e-9, 0.0, 3e-6, 2.0)
    assert result.frame_type == "amplitude"


def test_kx_ky_inside_the_mat_and_a_complex_pupil(tmp_path):
    rng = np.random.default_rng(3)
    stack = rng.uniform(size=(M, M, L))
    pupil = np.exp(1j * rng.uniform(-1, 1, size=(M, M)))
    mat = tmp_path / "inside.mat"
    scipy.io.savemat(mat, {"Iall": stack, "kx": KX[None, :], "ky": KY[:, None], "wavelength": WAVELENGTH, "ab": pupil})
    result = read_matlab_fp(mat, pupil_key="ab", **OPTICS)
    np.testing.assert_array_equal(result.frames, stack.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_allclose(result.acquisition.direction_sines, -np.stack([KY, KX], 1), rtol=0, atol=0)
    np.testing.assert_array_equal(result.acquisition.pupil, pupil)
    assert result.acquisition.defocus == 0.0
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, pupil_key="ab", crop=8, **OPTICS)
    assert_input_error(excinfo, mat, "ab")


def test_matlab_v73_hdf5_file_is_transposed_back(tmp_path, synthetic):
    _, illumination, stack, order = synthetic
    mat = tmp_path / "v73.mat"
    with h5py.File(mat, "w", userblock_size=512) as handle:  # MATLAB writes its text header in the userblock
        handle["imlow_HDR"] = stack.T  # MATLAB v7.3 stores (M, M, L) as (L, M, M) with each frame transposed
        handle["imlow_HDR"].attrs["MATLAB_class"] = np.bytes_("single")
        handle["wlength"] = np.array([[WAVELENGTH]])
    result = read_matlab_fp(mat, illumination, **OPTICS)
    np.testing.assert_array_equal(result.frames, stack.transpose(2, 0, 1)[order])
    assert result.acquisition.wavelength == WAVELENGTH
    assert any("v7.3" in note for note in result.notes)


def test_read_illumination_csv_without_frame_column(tmp_path):
    path = write_csv(tmp_path / "k.csv", list(zip(KX, KY, strict=True)), header=("kx_na", "ky_na"))
    frame_index, k = read_illumination_csv(path, "kx_na", "ky_na")
    np.testing.assert_array_equal(frame_index, np.arange(L))
    np.testing.assert_array_equal(k, np.stack([KY, KX], axis=1))


# ---- errors: one line naming the file and the field --------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nothing_here.mat"
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(missing, **OPTICS)
    assert "not found" in assert_input_error(excinfo, missing, "nothing_here.mat")


@pytest.mark.parametrize("content", [b"this is not a MATLAB file" * 20, b""])
def test_garbage_bytes(tmp_path, content):
    path = tmp_path / "garbage.mat"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(path, **OPTICS)
    assert "not a readable MATLAB" in assert_input_error(excinfo, path, "garbage.mat")


def test_truncated_mat(tmp_path, synthetic):
    mat, illumination, _, _ = synthetic
    cut = tmp_path / "cut.mat"
    cut.write_bytes(mat.read_bytes()[:600])
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(cut, illumination, **OPTICS)
    assert_input_error(excinfo, cut, "cut.mat")


def test_missing_frames_variable(tmp_path, synthetic):
    _, illumination, _, _ = synthetic
    mat = tmp_path / "noframes.mat"
    scipy.io.savemat(mat, {"wlength": WAVELENGTH, "flat": np.zeros((4, 4))})
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, **OPTICS)
    assert "flat (4, 4)" in assert_input_error(excinfo, mat, "frames")
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, frames_key="stack", **OPTICS)
    assert "flat, wlength" in assert_input_error(excinfo, mat, "stack")


def test_ambiguous_frames_lists_the_candidates(tmp_path, synthetic):
    _, illumination, stack, _ = synthetic
    mat = tmp_path / "two.mat"
    scipy.io.savemat(mat, {"a": stack, "b": stack, "wlength": WAVELENGTH})
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, **OPTICS)
    message = assert_input_error(excinfo, mat, "frames")
    assert "a (16, 16, 9)" in message and "b (16, 16, 9)" in message and "frames_key" in message
    assert read_matlab_fp(mat, illumination, frames_key="b", **OPTICS).frames.shape == (L, M, M)


def test_csv_row_count_mismatch(tmp_path, synthetic):
    mat, _, _, _ = synthetic
    short = write_csv(tmp_path / "short.csv", [(j, 0, 0, KX[j], KY[j]) for j in range(L - 1)])
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, short, **OPTICS)
    message = assert_input_error(excinfo, short, "rows")
    assert f"{L - 1} illumination rows" in message and f"holds {L} frames" in message and mat.name in message


def test_missing_csv_column(tmp_path, synthetic):
    mat, _, _, _ = synthetic
    path = write_csv(tmp_path / "nocol.csv", [(j, KX[j], KY[j]) for j in range(L)], header=("frame", "kx", "ky_na"))
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, path, **OPTICS)
    assert "frame, kx, ky_na" in assert_input_error(excinfo, path, "kx_na")


def test_csv_frame_column_must_be_a_permutation(tmp_path, synthetic):
    mat, _, _, _ = synthetic
    path = write_csv(tmp_path / "onebased.csv", [(j + 1, 0, 0, KX[j], KY[j]) for j in range(L)])
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, path, **OPTICS)
    assert "1-based" in assert_input_error(excinfo, path, "frame")


def test_nan_in_frames(tmp_path, synthetic):
    _, illumination, stack, _ = synthetic
    bad = stack.copy()
    bad[3, 4, 5] = np.nan
    mat = tmp_path / "nan.mat"
    scipy.io.savemat(mat, {"imlow_HDR": bad, "wlength": WAVELENGTH})
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, **OPTICS)
    assert "NaN" in assert_input_error(excinfo, mat, "imlow_HDR")


def test_non_square_frames(tmp_path, synthetic):
    _, illumination, stack, _ = synthetic
    mat = tmp_path / "rect.mat"
    scipy.io.savemat(mat, {"imlow_HDR": stack[:12], "wlength": WAVELENGTH})
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, **OPTICS)
    assert "square" in assert_input_error(excinfo, mat, "imlow_HDR")


def test_wavelength_in_nanometres(tmp_path, synthetic):
    _, illumination, stack, _ = synthetic
    mat = tmp_path / "nm.mat"
    scipy.io.savemat(mat, {"imlow_HDR": stack, "wlength": 532.0})
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, **OPTICS)
    assert "nanometres" in assert_input_error(excinfo, mat, "wlength")


def test_missing_wavelength(tmp_path, synthetic):
    _, illumination, stack, _ = synthetic
    mat = tmp_path / "nowl.mat"
    scipy.io.savemat(mat, {"imlow_HDR": stack})
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, **OPTICS)
    assert_input_error(excinfo, mat, "wavelength")


@pytest.mark.parametrize("pixels", [dict(camera_pixel=4e-6, pixel_size=1e-6), dict()])
def test_exactly_one_pixel_size(synthetic, pixels):
    mat, illumination, _, _ = synthetic
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, na=NA, magnification=MAGNIFICATION, **pixels)
    assert_input_error(excinfo, mat, "camera_pixel/pixel_size")


def test_upsample_too_small_is_reported(synthetic):
    mat, illumination, _, _ = synthetic
    with pytest.raises(InputFileError) as excinfo:
        read_matlab_fp(mat, illumination, upsample=2, **OPTICS)
    assert "increase upsample" in assert_input_error(excinfo, mat, "acquisition")


# ---- the real blood-smear data -----------------------------------------------------------


def real_data(stem):
    if not DATA.is_dir():
        pytest.skip(f"real FPM data not found: {DATA} absent (shared/ is not checked out beside the repository)")
    return DATA / f"{stem}.mat", DATA / f"illumination_{stem}.csv"


def test_bloodsmear_red():
    mat, illumination = real_data("bloodsmear_red")
    result = read_matlab_fp(mat, illumination, na=0.1, magnification=2, pixel_size=1.845e-6, upsample=4)
    acq = result.acquisition
    assert result.frames.shape == (225, 128, 128) and result.frames.dtype == np.float32
    assert acq.wavelength == pytest.approx(630e-9, rel=1e-12)
    assert acq.defocus == pytest.approx(-55e-6, rel=1e-12)
    assert (acq.upsample, acq.grid_size, acq.na, acq.magnification) == (4, 512, 0.1, 2)
    assert acq.pixel_size_lr == pytest.approx(1.845e-6, rel=1e-12)
    assert acq.pupil is None

    with open(illumination, newline="") as handle:
        table = list(csv.DictReader(handle))
    kx = np.array([float(row["kx_na"]) for row in table])
    ky = np.array([float(row["ky_na"]) for row in table])
    bright = np.hypot(kx, ky) < 0.1
    assert 0 < acq.bright_field.sum() == bright.sum() < 225
    np.testing.assert_array_equal(acq.bright_field, bright)
    ratio = result.frames[bright].mean() / result.frames[~bright].mean()
    assert ratio > 50, ratio

    # without upsample: the smallest factor that fits every window, computed independently
    auto = read_matlab_fp(mat, illumination, na=0.1, magnification=2, pixel_size=1.845e-6).acquisition
    assert auto.upsample == smallest_upsample(-np.stack([ky, kx], 1), 630e-9, 1.845e-6, 128)


def test_blood_aberration_pupil():
    mat, illumination = real_data("blood_aberration")
    result = read_matlab_fp(mat, illumination, na=0.1, magnification=2, pixel_size=1.845e-6)
    pupil = result.acquisition.pupil
    assert pupil is not None and pupil.shape == (128, 128) and np.iscomplexobj(pupil)
    np.testing.assert_array_equal(pupil, scipy.io.loadmat(mat)["aberration"].astype(np.complex128))
    assert result.acquisition.defocus == 0.0
