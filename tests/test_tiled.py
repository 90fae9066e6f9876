"""``reconstruct --tile``: tiles solved with their own illumination, stitched into one result per method."""

import numpy as np
import pytest
import torch

from ptycho_app.analysis import relative_error
from ptycho_app.analysis.metrics import align_global_phase
from ptycho_app.cli import main
from ptycho_app.io.measurement import read_measurement, write_measurement
from ptycho_app.io.results import read_result
from ptycho_app.physics import Acquisition, direction_sines_from_leds
from ptycho_app.simulation import led_array, reference_object
from ptycho_app.stitching import coverage
from ptycho_app.tiled import TileSolution, check_tiling, cut_tiles, group_tiles, tile_maps
from ptycho_app.tiling import full_field_intensities

FIELD, TILE, OVERLAP, UPSAMPLE = 64, 32, 8, 2
OPTICS = dict(wavelength=532e-9, na=0.08, magnification=4.0, camera_pixel=6.5e-6, upsample=UPSAMPLE)


def field_acquisition(distance=60e-3, subpixel=True) -> Acquisition:
    """64 x 64 camera pixels, 5 x 5 LEDs 4 mm apart ``distance`` below the field's centre."""
    return Acquisition(frame_size=FIELD, led_positions=led_array(5, 4e-3), led_distance=distance,
                       subpixel=subpixel, **OPTICS)


@pytest.fixture(scope="module")
def field_file(tmp_path_factory):
    """A simulated full-field measurement (exact spherical waves, no tiling in the simulator).

    The object is periodic with the tile's period (every 32-pixel tile is a cyclic shift of one
    image), so each tile's periodic FP model is exact up to the illumination: the test measures the
    pipeline (per-tile sines, stitching, phase alignment), not the tile-edge error of a natural
    object (measured 0.51 with ``reference_object(128)``, reflect-padded: light from outside a
    32-pixel tile enters through the point-spread function).
    """
    obj = np.tile(reference_object(TILE * UPSAMPLE), (FIELD // TILE, FIELD // TILE))
    acquisition = field_acquisition()
    frames = full_field_intensities(obj, acquisition, FIELD, dtype=torch.complex128, pad=16, pad_mode="wrap")
    path = tmp_path_factory.mktemp("tiled") / "field.h5"
    write_measurement(path, frames, acquisition, ground_truth=obj)
    return path


def test_tiled_reconstruct_stitches_the_full_field(field_file, tmp_path):
    out = tmp_path / "out"
    code = main(["reconstruct", str(field_file), "--tile", str(TILE), "--overlap", str(OVERLAP), "--method", "bm",
                 "--rank", "1", "--iters", "150", "--out", str(out), "--no-progress"])
    assert code == 0
    result = read_result(out / "field.bm.h5")
    size = FIELD * UPSAMPLE
    assert result.tiled and result.attrs["tiled"] and result.attrs["tile"] == TILE
    assert result.object.shape == (size, size) and result.reference.shape == (size, size)
    assert result.tile_corners.shape == (9, 2) and result.tile_eigenvalues.shape == (9, 1)
    assert result.lambda_ratio.shape == (3, 3) and np.all(np.isnan(result.lambda_ratio))  # rank 1
    assert result.residual_map.shape == (3, 3) and np.all(result.residual_map < 0.15)  # measured 0.08-0.11
    error = relative_error(result.object, result.reference)
    assert error < 0.13  # measured 0.089
    # overlap strips against single-tile pixels, 4 camera pixels at the field's edge (the FFT's wrap) left out
    aligned = align_global_phase(result.object, result.reference)
    miss, energy = np.abs(aligned - result.reference) ** 2, np.abs(result.reference) ** 2
    covered = coverage(result.tile_corners * UPSAMPLE, TILE * UPSAMPLE, (size, size))
    inside = np.zeros((size, size), dtype=bool)
    edge = 4 * UPSAMPLE
    inside[edge:-edge, edge:-edge] = True

    def strip_error(where):
        return np.sqrt(miss[where].sum() / energy[where].sum())

    seams, interiors = strip_error(inside & (covered > 1)), strip_error(inside & (covered == 1))
    assert seams < 1.5 * interiors  # measured 0.083 and 0.094


def test_info_describes_a_tiled_result(field_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", str(field_file), "--tile", str(TILE), "--overlap", str(OVERLAP), "--method", "udu",
                 "--rank", "2", "--iters", "20", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", str(out / "field.udu.h5")]) == 0
    text = capsys.readouterr().out
    result = read_result(out / "field.udu.h5")
    assert "9 tiles of 32 camera pixels (3 x 3), overlap 8, margin 16; the eigenvalues" in text
    ratio = result.lambda_ratio
    assert f"lambda_2 / lambda_1 from {ratio.min():.2e} to {ratio.max():.2e}" in text
    residual = result.residual_map
    assert f"relative residual from {residual.min():.3g} to {residual.max():.3g}" in text


def test_tiles_with_identical_windows_share_a_solve(tmp_path):
    near = read_measurement_of(tmp_path / "near.h5", field_acquisition())
    far = read_measurement_of(tmp_path / "far.h5", field_acquisition(distance=1e3, subpixel=False))
    corners = check_tiling(near, near.path, TILE, OVERLAP)
    assert len(group_tiles(cut_tiles(near, corners, TILE), 16)) == 9  # each tile its own sub-pixel windows
    tiles = cut_tiles(far, corners, TILE)
    assert [len(g) for g in group_tiles(tiles, 16)] == [9]  # 1 km away: the same whole-pixel windows
    assert [len(g) for g in group_tiles(tiles, 4)] == [4, 4, 1]
    assert tiles[4].frames.shape == (25, TILE, TILE)


def read_measurement_of(path, acquisition):
    """Write constant frames with ``acquisition`` and read them back."""
    write_measurement(path, np.ones((acquisition.n_frames, FIELD, FIELD)), acquisition)
    return read_measurement(path)


def test_tile_maps():
    solutions = [TileSolution(eigenvalues=np.array([4.0, v]), object=None, residual=0.1 * k, loss=None, U=None,
                              d=None, attrs={}) for k, v in enumerate([1.0, 2.0, 0.0, 3.0])]
    eigenvalues, ratio, residual = tile_maps(solutions, 2, 2)
    assert eigenvalues.shape == (4, 2)
    np.testing.assert_allclose(ratio, [[0.25, 0.5], [0.0, 0.75]])
    np.testing.assert_allclose(residual, [[0.0, 0.1], [0.2, 0.3]])


@pytest.mark.parametrize("flags, named", [(["--tile", "80"], "--tile"),
                                          (["--tile", "32", "--overlap", "32"], "--overlap"),
                                          (["--overlap", "8"], "--overlap"),
                                          (["--tile", "32", "--calibration", "c.h5"], "--calibration"),
                                          (["--tile-margin", "8"], "--tile-margin"),
                                          (["--tile", "32", "--tile-margin", "-1"], "--tile-margin"),
                                          (["--tile", "32", "--workers", "2"], "--workers")])
def test_tiled_refusals(tmp_path, capsys, flags, named):
    path = tmp_path / "m.h5"
    write_measurement(path, np.ones((25, FIELD, FIELD)), field_acquisition())
    assert main(["reconstruct", str(path), *flags, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    message = capsys.readouterr().err.strip()
    assert named in message and len(message.splitlines()) == 1
    assert not list(tmp_path.glob("out/*.h5"))


def test_tiled_refuses_direction_sines_only(tmp_path, capsys):
    sines = direction_sines_from_leds(led_array(5, 4e-3), 60e-3)
    acquisition = Acquisition(frame_size=FIELD, direction_sines=sines, **OPTICS)
    path = tmp_path / "sines.h5"
    write_measurement(path, np.ones((25, FIELD, FIELD)), acquisition)
    assert main(["reconstruct", str(path), "--tile", "32", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    message = capsys.readouterr().err.strip()
    assert "--tile" in message and "direction sines" in message and len(message.splitlines()) == 1


def simulate_small_field(path):
    """The tiled tests' full field, written to ``path``: 64 x 64 camera pixels, upsample 2, 5 x 5 LEDs
    60 mm below (``ptycho-app simulate``); returns ``path``."""
    assert main(["simulate", "--field", "64", "--upsample", "2", "--leds", "5", "--distance", "0.06",
                 "--out", str(path)]) == 0
    return path


def test_margin_lets_a_natural_object_tile(tmp_path):
    """A natural object (not periodic with the tile): without a margin every tile's periodic model
    wraps the object around its edges and the light entering from outside cannot be explained
    (stitched error 0.51, residuals up to 0.23); with the default 16-pixel unmeasured margin the
    stitched error is 0.097 and every tile's residual (over its measured pixels) 0.021."""
    path = tmp_path / "field.h5"
    simulate_small_field(path)
    errors, residuals = {}, {}
    for margin in ("0", "16"):
        out = tmp_path / f"margin{margin}"
        assert main(["reconstruct", str(path), "--tile", "32", "--overlap", "8", "--tile-margin", margin,
                     "--method", "bm", "--rank", "1", "--out", str(out), "--no-progress"]) == 0
        result = read_result(out / "field.bm.h5")
        assert result.attrs["tile_margin"] == int(margin)
        errors[margin] = relative_error(result.object, result.reference)
        residuals[margin] = float(result.residual_map.max())
    assert errors["0"] > 0.4 and residuals["0"] > 0.15  # measured 0.506, 0.229
    assert errors["16"] < 0.15 and residuals["16"] < 0.05  # measured 0.097, 0.021


def test_stop_ends_a_batched_solve_at_its_next_update(tmp_path, monkeypatch):
    """napari's Stop: a threading.Event set while a tile is being solved ends that solve at its next
    update (as Ctrl-C does), long before its 20000 iterations (measured: at iteration 50, its first
    update); nothing is stored for it."""
    import threading

    import ptycho_app.tiled as tiled
    from ptycho_app.batch import Input, Interrupted
    from ptycho_app.session import RunOptions
    from ptycho_app.tile_store import TileStore

    path = tmp_path / "field.h5"
    simulate_small_field(path)
    item = Input(path, read_measurement(path), "")
    stop, reached = threading.Event(), []
    original = tiled.run_to_end

    def run_then_remember(*args, **kwargs):
        on_update = kwargs["on_update"]

        def update(state):
            if state.iteration >= 10:
                stop.set()  # what the widget's Stop button does, here from the solver's own thread
            on_update(state)

        state, interrupted = original(*args, **{**kwargs, "on_update": update})
        reached.append((state.iteration, interrupted))
        return state, interrupted

    monkeypatch.setattr(tiled, "run_to_end", run_then_remember)
    store = TileStore(tmp_path / "store")
    with pytest.raises(Interrupted):
        tiled.reconstruct_tiled(item, 32, 8, RunOptions(method="bm"), 0, {"rank": 1, "max_iters": 20000},
                                progress=False, store=store, stop=stop)
    assert len(reached) == 1 and reached[0][1] and reached[0][0] < 100  # stopped at its next update
    assert store.count() == 0
