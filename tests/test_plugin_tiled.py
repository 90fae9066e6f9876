"""The napari plugin with tiled results (pytest-xvfb): the reader's maps over a stitched object, and the
widget's tiled run filling its mosaic in as tiles finish, then showing what ``reconstruct --tile`` writes."""

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")

from ptycho_app.cli import main  # noqa: E402
from ptycho_app.io.results import read_result  # noqa: E402

from .test_tiled import simulate_small_field  # noqa: E402

SCREENSHOT = Path("/tmp/s17/napari_tiled.png")
#: The CLI run the widget's tiled run is compared with (64 x 64 camera pixels, 9 tiles of 32 x 32).
TILING = ["--tile", "32", "--overlap", "8", "--method", "bm", "--rank", "2", "--iters", "30"]


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A full-field measurement and its stitched BM results at rank 2 and rank 1 (CLI)."""
    folder = tmp_path_factory.mktemp("tiled")
    measurement = folder / "field.h5"
    simulate_small_field(measurement)
    assert main(["reconstruct", str(measurement), *TILING, "--no-progress", "--out", str(folder / "r2")]) == 0
    rank1 = [*TILING[:-3], "1", *TILING[-2:]]
    assert main(["reconstruct", str(measurement), *rank1, "--no-progress", "--out", str(folder / "r1")]) == 0
    return measurement, folder / "r2" / "field.bm.h5", folder / "r1" / "field.bm.h5"


def test_reader_draws_the_tile_maps_over_the_stitched_object(field, make_napari_viewer):
    _, rank2, rank1 = field
    result = read_result(rank2)
    viewer = make_napari_viewer()
    layers = viewer.open(str(rank2), plugin="ptycho-app")
    assert [layer.name for layer in layers] == ["field BM amplitude", "field BM phase",
                                                "field BM log10 lambda2/lambda1", "field BM tile residual",
                                                "field BM tile borders"]
    amplitude, _, ratio, residual, borders = layers
    pixel = 0.8125  # um: the simulator's 6.5 um camera pixel / 4x magnification / upsample 2
    assert amplitude.scale[0] == pytest.approx(pixel) and ratio.scale[0] == pytest.approx(2 * pixel)
    assert ratio.translate[0] == pytest.approx(pixel / 2)  # camera pixel 0 = object pixels 0 and 1
    assert ratio.opacity == pytest.approx(0.5) and ratio.visible and not residual.visible and not borders.visible
    assert ratio.data.shape == (64, 64) and str(ratio.colormap.name) == "magma"
    # the object pixel just past each tile's centre shows that tile's value, last (flush) row and column too
    assert result.tile_corners.tolist() == [[r, c] for r in (0, 24, 32) for c in (0, 24, 32)]
    for k, (r, c) in enumerate(result.tile_corners):
        world = amplitude.data_to_world((2 * r + 32, 2 * c + 32))
        row, col = np.round(ratio.world_to_data(world)).astype(int)
        assert ratio.data[row, col] == pytest.approx(np.log10(result.lambda_ratio.flat[k]), rel=1e-6)
        assert residual.data[row, col] == pytest.approx(result.residual_map.flat[k], rel=1e-6)
    # the borders: tile k spans object pixels 2 corner ... 2 corner + 63, edges half a pixel out
    assert len(borders.data) == 9
    for (r, c), rectangle in zip(result.tile_corners, borders.data, strict=True):
        top_left = np.asarray(amplitude.data_to_world((2 * r - 0.5, 2 * c - 0.5)))
        bottom_right = np.asarray(amplitude.data_to_world((2 * r + 63.5, 2 * c + 63.5)))
        np.testing.assert_allclose(rectangle.min(axis=0), top_left, atol=1e-9)
        np.testing.assert_allclose(rectangle.max(axis=0), bottom_right, atol=1e-9)
    # rank 1: lambda_2 does not exist, so there is no ratio layer (the residual and borders remain)
    viewer.layers.clear()
    names = [layer.name for layer in viewer.open(str(rank1), plugin="ptycho-app")]
    assert names == ["field BM amplitude", "field BM phase", "field BM tile residual", "field BM tile borders"]


def test_widget_fills_the_mosaic_tile_by_tile_then_shows_the_stitched_result(field, make_napari_viewer, qtbot,
                                                                            tmp_path):
    measurement, rank2, _ = field
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open(str(measurement), plugin="ptycho-app")
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    assert widget.form.layer.value.name == "field frames"
    form = widget.form
    form.method.value, form.rank.value, form.max_iters.value, form.device.value = "bm", 2, 30, "cpu"
    form.tile.value = 32
    assert form.overlap.value == 8  # tile // 4, as the CLI
    filled = []
    draw = widget.show_tiles

    def record(update):  # the widget's own slot, then a look at the mosaic it drew
        draw(update)
        filled.append((viewer.layers["field BM amplitude"].data > 0).sum())

    widget.show_tiles = record
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    widget.show_tiles = draw
    # one update per batched solve: the 9 tiles have 9 different illuminations; then the stitched result
    assert widget.mosaic_updates == 9 and len(filled) == 10 and widget.status.value.startswith("finished")
    assert all(a < b for a, b in zip(filled[:8], filled[1:9], strict=True))  # the mosaic fills in
    assert filled[0] == 64 * 64 and filled[8] == 128 * 128  # one 64 x 64 tile first, all pixels at the end
    stored = read_result(rank2)
    shown = viewer.layers["field BM amplitude"].data * np.exp(1j * viewer.layers["field BM phase"].data)
    error = np.linalg.norm(shown - stored.object) / np.linalg.norm(stored.object)
    assert error < 1e-5, error  # the CLI's stitched object (float32 layers)
    ratio = viewer.layers["field BM log10 lambda2/lambda1"]
    np.testing.assert_allclose(np.unique(ratio.data), np.unique(np.log10(stored.lambda_ratio)).astype(np.float32),
                               rtol=1e-4)
    # the plots: one spectrum a tile, its lambda_2 / lambda_1 that of the CLI's map
    plotted = sorted(line.get_ydata()[1] for line in widget.spectrum_axes.lines)
    np.testing.assert_allclose(plotted, np.sort(stored.lambda_ratio.ravel()), rtol=1e-6)
    assert len(widget.loss_axes.lines) == 9
    saved = widget.save(tmp_path)
    assert [p.name for p in saved] == ["field.bm.h5"]
    np.testing.assert_allclose(read_result(saved[0]).object, stored.object, rtol=0, atol=1e-4)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    from skimage.io import imsave

    image = viewer.screenshot(canvas_only=False, flash=False)
    imsave(SCREENSHOT, image, check_contrast=False)
    assert image[..., :3].std() > 20

    # Stop: a long tiled run ends at the batched solve's next update; its mosaic stays, nothing to save
    form.max_iters.value = 400  # about 0.5 s a tile
    widget.run()
    qtbot.waitUntil(lambda: widget.mosaic_updates >= 1, timeout=60_000)
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.status.value.startswith("stopped: tiles") and 1 <= widget.mosaic_updates < 9
    assert not widget.tiled_results and not widget.save_button.enabled and widget.run_button.enabled
    assert "field BM log10 lambda2/lambda1" not in viewer.layers


def test_widget_refuses_a_tile_larger_than_the_frames(field, make_napari_viewer):
    measurement, _, _ = field
    viewer = make_napari_viewer()
    viewer.open(str(measurement), plugin="ptycho-app")
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    widget.form.tile.value = 65
    widget.run()
    assert widget.worker is None and widget.status.value.startswith("error: --tile 65 must be between 1 and")
    assert widget.run_button.enabled


def test_live_mosaic_undoes_each_tiles_global_phase_through_the_overlap():
    from types import SimpleNamespace

    from napari_ptycho._widget import LiveMosaic

    rng = np.random.default_rng(3)
    truth = (1 + rng.random((12, 12))) * np.exp(1j * rng.uniform(-1, 1, (12, 12)))
    tiles = [SimpleNamespace(index=k, corner=corner) for k, corner in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)])]
    mosaic = LiveMosaic(("bm",), size=12, upsample=2)  # tiles of 4 camera pixels = 8 object pixels
    for tile in tiles:  # one tile a batch, each with its own global phase
        part = truth[2 * tile.corner[0]:2 * tile.corner[0] + 8, 2 * tile.corner[1]:2 * tile.corner[1] + 8]
        solution = SimpleNamespace(object=part * np.exp(1j * rng.uniform(-np.pi, np.pi)), eigenvalues=np.ones(1),
                                   loss=np.ones(2))
        update = mosaic.update({("bm", tile.index): solution}, tiles)
    assert update.done == 4 and update.total == 4
    np.testing.assert_allclose(update.amplitude["bm"], np.abs(truth), rtol=1e-6)
    shown = update.amplitude["bm"] * np.exp(1j * update.phase["bm"])
    offset = np.angle(np.vdot(truth, shown))  # one global phase for the whole mosaic
    np.testing.assert_allclose(shown, truth * np.exp(1j * offset), atol=1e-5)
