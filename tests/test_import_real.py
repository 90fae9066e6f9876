"""Getting real data in: image/HDF5 sources, LED grids, the geometry check, exposure, background,
saturation masks (issue 11). Small synthetic files written to tmp_path with the libraries read with."""

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import scipy.io
import tifffile
import torch

from ptycho_app.cli import main
from ptycho_app.io.geometry_check import check_geometry, transform_points
from ptycho_app.io.images import corner_background, frame_files, natural_key
from ptycho_app.io.measurement import read_measurement
from ptycho_app.lifting.losses import LOSSES
from ptycho_app.physics import Acquisition
from ptycho_app.simulation import default_acquisition, led_array, reference_object, simulate_frames

OPTICS = ["--na", "0.08", "--magnification", "4", "--camera-pixel", "6.5e-6", "--wavelength", "532e-9"]


def grid(leds=4):
    return ["--leds", str(leds), "--pitch", "4e-3", "--distance", "80e-3"]


def write_pngs(folder, values, size=16, names=None):
    """One uint16 PNG per value (constant frames with a marker pixel), named led_1.png, led_2.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"led_{i + 1}.png" for i in range(len(values))]
    for name, value in zip(names, values, strict=True):
        frame = np.full((size, size), value, dtype=np.uint16)
        iio.imwrite(folder / name, frame)
    return folder


def one_line_error(capsys, argv):
    code = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert code == 2 and len(err) == 1, err
    return err[0]


# ---- sources and frame order -------------------------------------------------------------------


def test_natural_key_orders_numbers_by_value():
    assert sorted(["a10.png", "a2.png", "a1.png"], key=natural_key) == ["a1.png", "a2.png", "a10.png"]


def test_folder_of_pngs_is_imported_in_natural_order(tmp_path, capsys):
    folder = write_pngs(tmp_path / "frames", [100 + 10 * i for i in range(16)])
    out = tmp_path / "m.h5"
    assert main(["import", str(folder), *grid(4), *OPTICS, "--out", str(out)]) == 0
    m = read_measurement(out)
    assert m.frames[:, 3, 5].tolist() == [100 + 10 * i for i in range(16)]  # led_10 after led_9, not after led_1
    assert m.frame_type == "intensity"
    expected = default_acquisition(leds_per_side=4, frame_size=16, upsample=m.acquisition.upsample)
    np.testing.assert_allclose(m.acquisition.direction_sines, expected.direction_sines, atol=1e-12)
    assert "led_1.png ... led_16.png" in capsys.readouterr().out


def test_frame_order_file_sets_the_order(tmp_path):
    folder = write_pngs(tmp_path / "frames", [100 + 10 * i for i in range(16)])
    order = tmp_path / "order.csv"
    order.write_text("file,comment\n" + "".join(f"led_{i}.png,x\n" for i in range(16, 0, -1)))
    out = tmp_path / "m.h5"
    assert main(["import", str(folder), "--frame-order", str(order), *grid(4), *OPTICS, "--out", str(out)]) == 0
    assert read_measurement(out).frames[:, 0, 0].tolist() == [100 + 10 * i for i in range(15, -1, -1)]


def test_glob_picks_only_matching_files(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(9):
        tifffile.imwrite(folder / f"img{i + 1}.tif", np.full((16, 16), 7.0 * (i + 1), dtype=np.float32))
    write_pngs(folder, [1, 2], names=["other1.png", "other2.png"])
    assert [p.name for p in frame_files(str(folder / "*.tif"))] == [f"img{i + 1}.tif" for i in range(9)]
    out = tmp_path / "m.h5"
    assert main(["import", str(folder / "*.tif"), *grid(3), *OPTICS, "--out", str(out)]) == 0
    np.testing.assert_array_equal(read_measurement(out).frames[:, 8, 8], 7.0 * np.arange(1, 10))


def test_multipage_tiff_stack(tmp_path):
    stack = np.random.default_rng(1).uniform(1, 100, (9, 20, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "stack.tif"), *grid(3), *OPTICS, "--crop", "16", "--out", str(out)]) == 0
    np.testing.assert_array_equal(read_measurement(out).frames, stack[:, 2:18, :])  # central 16 rows


@pytest.mark.parametrize("key", [None, "section0/ptychogram"])
def test_hdf5_frames_in_a_group(tmp_path, key):
    frames = np.random.default_rng(2).uniform(1, 10, (9, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "pytables.h5", "w") as f:
        f.create_group("section0").create_dataset("ptychogram", data=frames)
        f["section0/other"] = np.zeros((3, 4))
    out = tmp_path / "m.h5"
    argv = ["import", str(tmp_path / "pytables.h5"), *grid(3), *OPTICS, "--out", str(out)]
    assert main(argv + (["--frames-key", key] if key else [])) == 0
    np.testing.assert_array_equal(read_measurement(out).frames, frames)


# ---- LED geometry ------------------------------------------------------------------------------


def test_grid_flags_give_the_simulations_geometry(tmp_path):
    write_pngs(tmp_path / "f", [5] * 25)
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "f"), "--leds", "5", "--pitch", "3e-3", "--distance", "70e-3",
                 "--order", "spiral", "--center-offset", "0.0005", "-0.001", "--rotation", "7", *OPTICS,
                 "--out", str(out)]) == 0
    positions = led_array(5, 3e-3, (0.0005, -0.001), 7, "spiral")
    a = read_measurement(out).acquisition
    np.testing.assert_allclose(a.led_positions, positions, atol=1e-15)
    assert a.led_distance == 70e-3


def test_led_order_file_picks_grid_leds(tmp_path):
    write_pngs(tmp_path / "f", [5] * 4)
    order = tmp_path / "leds.csv"
    order.write_text("row,col\n1,1\n0,2\n2,0\n1,2\n")
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "f"), *grid(3), "--led-order", str(order), *OPTICS, "--out", str(out)]) == 0
    np.testing.assert_allclose(read_measurement(out).acquisition.led_positions,
                               led_array(3, 4e-3)[[4, 2, 6, 5]], atol=1e-15)


def test_mat_file_takes_an_led_grid(tmp_path):
    stack = np.random.default_rng(3).uniform(1, 2, (16, 16, 9)).astype(np.float32)
    scipy.io.savemat(tmp_path / "d.mat", {"imlow_HDR": stack, "wlength": 532e-9})
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "d.mat"), "--frame-type", "intensity", *grid(3), "--na", "0.08",
                 "--magnification", "4", "--camera-pixel", "6.5e-6", "--out", str(out)]) == 0
    m = read_measurement(out)
    np.testing.assert_array_equal(m.frames, stack.transpose(2, 0, 1))
    np.testing.assert_allclose(m.acquisition.direction_sines,
                               default_acquisition(leds_per_side=3).direction_sines, atol=1e-12)


# ---- geometry check ----------------------------------------------------------------------------


def offset_grid(**flips):
    positions = led_array(7, 4e-3, (1.2e-3, 2.6e-3))
    return transform_points(positions, **flips)


def acquisition_for(positions):
    return Acquisition(wavelength=532e-9, na=0.08, magnification=4, camera_pixel=6.5e-6, frame_size=8, upsample=4,
                       led_positions=positions, led_distance=80e-3)


@pytest.mark.parametrize("flips, flags", [({}, "no flag"), ({"flip_x": True}, "--flip-x"),
                                          ({"swap": True, "flip_y": True}, "--swap-xy --flip-y")])
def test_geometry_check_finds_the_flip_applied(flips, flags):
    truth = acquisition_for(offset_grid(**flips))
    frames = simulate_frames(reference_object(truth.grid_size), truth)
    given = acquisition_for(offset_grid())  # what the user said: the array as given
    check = check_geometry(given, frames)
    assert check.best.flags == flags and len(check.tied) == 1
    # 0.988: two frames just inside the NA are dark in these 8 x 8 frames (windows at whole pixels)
    assert check.best.score > 0.98 and check.best.score - check.candidates[1].score > 0.02
    assert flags == "no flag" or check.best.score - check.given.score > 0.15
    text = check.recommendation()
    assert (f"pass {flags}" in text) if flags != "no flag" else ("no flag needed" in text)
    assert len(check.candidates) == 8


def test_geometry_check_uses_exposure_tables_but_not_exposures_set_by_the_geometry_it_checks():
    truth = acquisition_for(offset_grid(flip_x=True))
    frames = simulate_frames(reference_object(truth.grid_size), truth)
    taken = np.where(truth.bright_field, 0.01, 0.1)  # the camera's exposures: 10x on dark-field frames
    raw = frames * taken[:, None, None] + 100.0
    given = acquisition_for(offset_grid())
    table = check_geometry(given, raw, exposure=taken, background=np.full((8, 8), 100.0))
    assert table.best.flags == "--flip-x" and table.best.score > 0.98 and not table.note
    # exposures derived from the GIVEN bright-field set would make it fit itself: left out, with a note
    split = np.where(given.bright_field, 0.01, 0.1)
    left_out = check_geometry(given, raw, exposure=split, exposure_follows_geometry=True)
    assert "left out" in left_out.note
    assert [c.score for c in left_out.candidates] == [c.score for c in check_geometry(given, raw).candidates]
    biased = check_geometry(given, raw, exposure=split, exposure_follows_geometry=False)
    assert biased.given.score > 0.99  # what using them would do: the wrong geometry looks perfect


def test_geometry_check_on_a_centred_array_cannot_tell():
    a = acquisition_for(led_array(5, 4e-3))
    check = check_geometry(a, simulate_frames(reference_object(a.grid_size), a))
    assert len(check.tied) == 8 and "cannot tell" in check.recommendation()


def test_check_geometry_flags_on_import_and_info(tmp_path, capsys):
    truth = acquisition_for(offset_grid(flip_x=True))
    frames = simulate_frames(reference_object(truth.grid_size), truth)
    folder = tmp_path / "f"
    folder.mkdir()
    for i, frame in enumerate(frames):
        tifffile.imwrite(folder / f"f{i}.tif", frame)
    argv = ["import", str(folder), "--leds", "7", "--pitch", "4e-3", "--distance", "80e-3", "--center-offset",
            "0.0012", "0.0026", *OPTICS, "--check-geometry"]
    assert main(argv + ["--out", str(tmp_path / "a.h5")]) == 0
    assert "geometry: pass --flip-x (score 0.988, as given scores 0.814)" in capsys.readouterr().out
    assert main(argv + ["--flip-x", "--out", str(tmp_path / "b.h5")]) == 0
    assert "geometry: the geometry as given fits (score 0.988)" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "a.h5"), "--check-geometry"]) == 0
    assert "geometry: pass --flip-x" in capsys.readouterr().out


# ---- exposure, background, saturation ----------------------------------------------------------


def test_exposure_and_dark_frame_are_undone_by_intensities(tmp_path):
    rng = np.random.default_rng(4)
    truth = rng.uniform(0, 50, (9, 16, 16))
    exposure = rng.uniform(0.5, 2, 9)
    dark = rng.uniform(90, 110, (16, 16))
    raw = truth * exposure[:, None, None] + dark
    tifffile.imwrite(tmp_path / "stack.tif", raw.astype(np.float32))
    np.save(tmp_path / "dark.npy", dark)
    rows = "".join(f"{i},{e:.17g}\n" for i, e in enumerate(exposure))
    (tmp_path / "exposure.csv").write_text("frame,seconds\n" + rows)
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "stack.tif"), *grid(3), *OPTICS, "--exposure-table",
                 str(tmp_path / "exposure.csv"), "--background", str(tmp_path / "dark.npy"), "--out", str(out)]) == 0
    m = read_measurement(out)
    np.testing.assert_allclose(m.frames, raw.astype(np.float32))  # stored as measured
    np.testing.assert_allclose(m.exposure, exposure)
    np.testing.assert_allclose(m.intensities(), truth, atol=2e-4)


def test_dark_field_exposure_scales_only_dark_field_frames(tmp_path):
    a = default_acquisition(leds_per_side=3, led_pitch=8e-3)  # centre LED bright-field, the 8 others dark-field
    raw = np.where(a.bright_field[:, None, None], 30.0, 30.0 * 4) * np.ones((9, 16, 16))
    tifffile.imwrite(tmp_path / "s.tif", raw.astype(np.float32))
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "s.tif"), *grid(3)[:2], "--pitch", "8e-3", "--distance", "80e-3", *OPTICS,
                 "--exposure", "0.5",
                 "--dark-field-exposure", "2", "--out", str(out)]) == 0
    m = read_measurement(out)
    assert a.bright_field.sum() == 1
    np.testing.assert_allclose(m.exposure, np.where(a.bright_field, 0.5, 2.0))
    np.testing.assert_allclose(m.intensities(), 60.0)


def test_corner_background_uses_dark_field_corners():
    frames = np.full((3, 16, 16), 500.0)
    frames[1] = frames[2] = 10.0
    frames[1, 4:12, 4:12] = 200.0
    frames[2, :, :] += np.arange(16)[None, :] * 0  # flat dark frame, level 10
    level = corner_background(frames, np.array([True, False, False]))
    np.testing.assert_allclose(level, [10.0, 10.0, 10.0])


def test_saturation_mask_is_stored_and_reaches_the_solver(tmp_path, monkeypatch):
    raw = np.random.default_rng(5).uniform(0, 4095, (9, 16, 16)).astype(np.float32)
    raw[0, :3, :3] = 4095
    tifffile.imwrite(tmp_path / "s.tif", raw)
    out = tmp_path / "m.h5"
    assert main(["import", str(tmp_path / "s.tif"), *grid(3), *OPTICS, "--saturation", "4095", "--out",
                 str(out)]) == 0
    m = read_measurement(out)
    assert m.saturation_level == 4095
    np.testing.assert_array_equal(m.mask(), raw < 4095)
    seen = {}

    import ptycho_app.batch as batch

    def capture(operator, b, options, **kwargs):
        seen["mask"] = kwargs["mask"]
        return None, True

    monkeypatch.setattr(batch, "run_to_end", capture)
    with pytest.raises(batch.Interrupted):
        batch.solve_group([batch.Input(out, m, "x")], batch.SolverOptions(max_iters=1), tmp_path / "r",
                          progress=False)
    np.testing.assert_array_equal(seen["mask"].numpy(), (raw < 4095)[None])


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("overwrite", [False, True])
def test_masked_loss_gradient_matches_autograd(name, overwrite):
    g = torch.Generator().manual_seed(0)
    q = torch.rand(2, 6, 4, 4, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(2, 6, 4, 4, generator=g, dtype=torch.float64) + 0.1
    mask = torch.rand(2, 6, 4, 4, generator=g) > 0.3
    loss = LOSSES[name]().bind(b, mask=mask)
    block = slice(2, 5)
    qb = q[:, block].clone().requires_grad_(True)
    value, weight = loss.value_and_weight(qb, b[:, block], block)
    (grad,) = torch.autograd.grad(value.sum(), qb)
    torch.testing.assert_close(weight, grad)
    assert bool((weight[~mask[:, block]] == 0).all()) and bool((weight[mask[:, block]] != 0).all())
    # the masked value is the closed-form elementwise loss summed over the kept measurements only
    eps = 1e-6 * b.flatten(1).mean(1)[:, None, None, None]
    qs, bs = q[:, block], b[:, block]
    terms = {"intensity": 0.5 * (qs - bs) ** 2, "amplitude": 0.5 * ((qs + eps).sqrt() - bs.sqrt()) ** 2,
             "poisson": qs - bs - bs * torch.log((qs + eps) / bs)}[name]
    expected = (terms * mask[:, block]).flatten(1).sum(1)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-10, atol=1e-12)
    assert float((terms * ~mask[:, block]).sum()) > 0.01  # the masked terms would have counted
    if overwrite:  # the operators' in-place path gives the same
        v2, w2 = loss.value_and_weight(q[:, block].clone(), b[:, block], block, overwrite=True)
        torch.testing.assert_close(v2, value.detach())
        torch.testing.assert_close(w2, weight)


def test_iterate_loss_leaves_masked_pixels_out():
    from ptycho_app.lifting import LiftedFP
    from ptycho_app.solvers import SolverOptions, iterate

    a = default_acquisition(frame_size=8, upsample=4, leds_per_side=3)
    b = torch.as_tensor(simulate_frames(reference_object(a.grid_size), a), dtype=torch.float64)[None]
    mask = torch.ones_like(b, dtype=torch.bool)
    mask[0, 0, :2] = False
    b_bad = b.clone()
    b_bad[~mask] = 1e6  # saturated garbage
    operator = LiftedFP(a, dtype=torch.complex128)
    options = SolverOptions(max_iters=1, yield_every=1, loss="intensity")
    state = next(iter(iterate(operator, b_bad, options, mask=mask)))
    q = operator.measure(state.U, state.physical_weights())
    expected = 0.5 * float((((q - b_bad) * mask).square()).sum())
    unmasked = 0.5 * float(((q - b_bad).square()).sum())
    np.testing.assert_allclose(float(state.losses[0, 0]), expected, rtol=1e-6)
    assert unmasked > 10 * expected


@pytest.mark.parametrize("loss", ["intensity", "amplitude"])
def test_relative_residual_leaves_masked_pixels_out(loss):
    """The relative residual (iterations and the rank-one object's) is ``||(q - b) m|| / ||b m||``:
    saturated garbage under the mask does not reach it (it did before: the residual then read ~1e3)."""
    from ptycho_app.lifting import LiftedFP
    from ptycho_app.session import rank_one_residual
    from ptycho_app.solvers import SolverOptions, iterate

    a = default_acquisition(frame_size=8, upsample=4, leds_per_side=3)
    b = torch.as_tensor(simulate_frames(reference_object(a.grid_size), a), dtype=torch.float64)[None]
    mask = torch.ones_like(b, dtype=torch.bool)
    mask[0, :3, :2] = False
    b_bad = b.clone()
    b_bad[~mask] = 1e6
    operator = LiftedFP(a, dtype=torch.complex128)
    options = SolverOptions(max_iters=3, yield_every=1, loss=loss, rank=1)
    *_, state = iterate(operator, b_bad, options, mask=mask)
    q = operator.measure(state.U, state.physical_weights())
    expected = float(torch.linalg.vector_norm((q - b_bad) * mask) / torch.linalg.vector_norm(b_bad * mask))
    assert expected < 1.0
    np.testing.assert_allclose(float(state.relative_residual[0]), expected, rtol=1e-6)
    x_residual = float(rank_one_residual(operator, b_bad, state, mask)[0])
    assert x_residual == pytest.approx(expected, rel=1e-6)  # rank 1: X is x x^*


# ---- errors speak CLI ------------------------------------------------------------------------------


def test_missing_folder(tmp_path, capsys):
    line = one_line_error(capsys, ["import", tmp_path / "nope", *grid(3), *OPTICS, "--out", tmp_path / "m.h5"])
    assert "nope: no such file or folder" in line


def test_mixed_frame_sizes(tmp_path, capsys):
    write_pngs(tmp_path / "f", [1, 2, 3])
    iio.imwrite(tmp_path / "f" / "led_4.png", np.zeros((12, 16), dtype=np.uint16))
    line = one_line_error(capsys, ["import", tmp_path / "f", *grid(2), *OPTICS, "--out", tmp_path / "m.h5"])
    assert "led_4.png: frame size 12 x 16 differs from led_1.png's 16 x 16" in line


def test_unreadable_image(tmp_path, capsys):
    write_pngs(tmp_path / "f", [1, 2, 3])
    (tmp_path / "f" / "led_4.png").write_bytes(b"not a png at all")
    line = one_line_error(capsys, ["import", tmp_path / "f", *grid(2), *OPTICS, "--out", tmp_path / "m.h5"])
    assert "led_4.png: cannot be read as an image" in line


@pytest.mark.parametrize("extra, expected", [
    (["--leds", "3"], "missing --pitch, --distance"),
    (["--leds", "3", "--pitch", "4e-3", "--distance", "80e-3"], "4 frames, but the LED grid (--leds) has 9 LEDs"),
    ([], "illumination: no illumination: pass --leds, --pitch and --distance"),
    (["--flip-x"], "--flip-y, --flip-x and --swap-xy apply to an LED grid"),
    (["--leds", "2", "--pitch", "-1", "--distance", "80e-3"], "--pitch"),
])
def test_geometry_errors_name_the_flags(tmp_path, capsys, extra, expected):
    write_pngs(tmp_path / "f", [1, 2, 3, 4])
    line = one_line_error(capsys, ["import", tmp_path / "f", *extra, *OPTICS, "--out", tmp_path / "m.h5"])
    assert expected in line


def test_missing_wavelength_names_the_flag(tmp_path, capsys):
    write_pngs(tmp_path / "f", [1, 2, 3, 4])
    line = one_line_error(capsys, ["import", tmp_path / "f", *grid(2), "--na", "0.08", "--magnification", "4",
                                   "--camera-pixel", "6.5e-6", "--out", tmp_path / "m.h5"])
    assert "--wavelength" in line and "wavelength=" not in line
    scipy.io.savemat(tmp_path / "d.mat", {"imlow_HDR": np.ones((16, 16, 4)), "kx": np.zeros(4), "ky": np.zeros(4)})
    line = one_line_error(capsys, ["import", tmp_path / "d.mat", "--frame-type", "intensity", "--kx-key", "kx",
                                   "--ky-key", "ky", "--na", "0.08", "--magnification", "4", "--pixel-size", "1e-6",
                                   "--out", tmp_path / "m.h5"])
    assert "pass --wavelength (metres)" in line and "wavelength=" not in line


def test_mat_needs_frame_type(tmp_path, capsys):
    scipy.io.savemat(tmp_path / "d.mat", {"imlow_HDR": np.ones((16, 16, 4)), "wlength": 5e-7})
    line = one_line_error(capsys, ["import", tmp_path / "d.mat", *grid(2), "--na", "0.08", "--magnification", "4",
                                   "--pixel-size", "1e-6", "--out", tmp_path / "m.h5"])
    assert "--frame-type is required for a .mat file" in line
