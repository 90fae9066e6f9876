"""The napari plugin under Xvfb (pytest-xvfb): manifest, reader, sample, and a live run of the widget."""

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")

from ptycho_app.cli import main  # noqa: E402
from ptycho_app.io.results import read_result  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_manifest_validates_and_napari_finds_the_contributions():
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("ptycho-app")
    npe2.PluginManifest.validate(manifest)
    assert [r.command for r in manifest.contributions.readers] == ["ptycho-app.get_reader"]
    assert [s.key for s in manifest.contributions.sample_data] == ["fp_simulation"]
    assert [w.display_name for w in manifest.contributions.widgets] == ["FP reconstruction"]
    readers = [r.command for r in manager.iter_compatible_readers(["x.h5"])]
    assert "ptycho-app.get_reader" in readers


def test_reader_opens_measurements_and_results(tmp_path, make_napari_viewer):
    measurement = tmp_path / "tile.h5"
    assert main(["simulate", "--out", str(measurement), "--frame-size", "16", "--upsample", "2", "--leds", "5"]) == 0
    assert main(["reconstruct", str(measurement), "--method", "udu", "--iters", "20", "--no-progress",
                 "--out", str(tmp_path / "r")]) == 0
    viewer = make_napari_viewer()
    frames = viewer.open(str(measurement), plugin="ptycho-app")
    assert frames[0].data.shape == (25, 16, 16) and frames[0].scale[1] == pytest.approx(1.625)  # um at the sample
    result_layers = viewer.open(str(tmp_path / "r" / "tile.udu.h5"), plugin="ptycho-app")
    assert [layer.name for layer in result_layers] == ["tile UDU amplitude", "tile UDU phase"]
    stored = read_result(tmp_path / "r" / "tile.udu.h5").object
    np.testing.assert_allclose(result_layers[0].data, np.abs(stored))
    assert result_layers[0].scale[0] == pytest.approx(1.625 / 2)


def wait_for_worker(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_live_reconstruction_updates_layers_spectra_and_stops(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("ptycho-app", "fp_simulation")
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    assert widget.form.layer.value.name == "simulated frames"
    widget.form.max_iters.value, widget.form.update_every.value, widget.form.device.value = 600, 100, "cpu"
    seen = []
    draw = widget.show_update

    def record(update):  # the widget's own slot, then a look at the layers it updated
        draw(update)
        seen.append({name: (id(viewer.layers[name]), viewer.layers[name].data.copy())
                     for name in ("simulated BM amplitude", "simulated UDU phase")})

    widget.show_update = record
    widget.run()
    wait_for_worker(qtbot, widget)
    widget.show_update = draw
    assert widget.last_update.iteration == 600 and len(seen) == 6
    for name in ("simulated BM amplitude", "simulated BM phase", "simulated UDU amplitude", "simulated UDU phase"):
        assert viewer.layers[name].data.shape == (64, 64)
    # updated in place: the same layer objects, new data at every update
    for name in seen[0]:
        assert len({ids for ids, _ in (s[name] for s in seen)}) == 1
        for before, after in zip(seen[:-1], seen[1:], strict=True):
            assert not np.allclose(before[name][1], after[name][1])
    # the spectrum plot holds the current eigenvalues of both solvers
    for method, view in widget.last_update.methods.items():
        expected = np.maximum(view.eigenvalues / view.eigenvalues[0], 1e-17)
        np.testing.assert_allclose(widget.current_eigenvalues()[method], expected)
    udu = widget.last_update.methods["udu"].eigenvalues
    assert udu[1] / udu[0] < 1e-3  # UDU's spectrum already falls, as the CLI shows
    written = widget.save(tmp_path)
    assert sorted(p.name for p in written) == ["simulated.bm.h5", "simulated.udu.h5"]
    assert read_result(tmp_path / "simulated.udu.h5").iterations == 600
    # screenshot of the whole window after the run, kept as an artifact
    image = viewer.screenshot(canvas_only=False, flash=False)
    ARTIFACTS.mkdir(exist_ok=True)
    from skimage.io import imsave

    imsave(ARTIFACTS / "napari-live-run.png", image, check_contrast=False)
    import json

    (ARTIFACTS / "napari-live-run.json").write_text(json.dumps({
        "update_draw_seconds": widget.update_seconds, "solver_seconds": widget.last_update.seconds,
        "iterations": widget.last_update.iteration, "updates": len(seen)}, indent=1))
    grey = image[..., :3].mean(axis=2)
    assert image.shape[0] > 400 and grey.std() > 20 and len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 500
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    assert canvas.std() > 20 and (canvas.mean(axis=2) > 30).mean() > 0.3  # the reconstructions, not black

    # Stop: a long run ends between iterations and keeps its last state
    widget.form.max_iters.value, widget.form.update_every.value = 1_000_000, 20
    widget.run()
    qtbot.waitUntil(lambda: widget.last_update is not None and widget.last_update.iteration >= 40, timeout=60_000)
    widget.stop()
    wait_for_worker(qtbot, widget, timeout=30_000)
    assert 40 <= widget.last_update.iteration < 1_000_000 and widget.status.value.startswith("stopped")
    assert widget.save_button.enabled
    stopped = widget.save(tmp_path / "stopped")
    assert all(read_result(p).attrs["interrupted"] for p in stopped)

    # a second run (BM only) replaces the first run's layers and curves
    widget.form.method.value, widget.form.max_iters.value = "bm", 40
    widget.run()
    wait_for_worker(qtbot, widget)
    assert "simulated UDU amplitude" not in viewer.layers and "simulated BM amplitude" in viewer.layers
    assert list(widget.current_eigenvalues()) == ["bm"] and widget.last_update.iteration == 40


def test_errors_become_notifications_not_a_frozen_viewer(make_napari_viewer, tmp_path, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    bad = tmp_path / "bad.h5"
    bad.write_text("not HDF5")
    widget.form.file.value = bad
    widget.run()
    assert widget.worker is None and widget.status.value.startswith("error:") and "bad.h5" in widget.status.value
    widget.form.file.value = ""
    widget.run()  # no layer, no file
    assert widget.worker is None and "choose a measurement layer" in widget.status.value


def test_divergence_becomes_a_notification(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("ptycho-app", "fp_simulation")
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    widget.form.preset.value = "paper"  # plain gradient descent: a too-large step diverges
    widget.form.method.value, widget.form.step.value, widget.form.device.value = "bm", 2.0, "cpu"
    widget.form.max_iters.value, widget.form.update_every.value = 2000, 10
    widget.run()
    wait_for_worker(qtbot, widget, timeout=60_000)
    assert widget.status.value.startswith("error:") and "non-finite" in widget.status.value
    assert widget.run_button.enabled and not widget.stop_button.enabled


def test_closing_the_widget_stops_its_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("ptycho-app", "fp_simulation")
    dock, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    widget.form.max_iters.value, widget.form.update_every.value, widget.form.device.value = 1_000_000, 20, "cpu"
    widget.run()
    qtbot.waitUntil(lambda: widget.last_update is not None, timeout=60_000)
    widget.close()
    wait_for_worker(qtbot, widget, timeout=30_000)
    assert widget.last_update.iteration < 1_000_000


def test_tiles_are_labelled_with_a_scale_bar_and_the_slider_follows_the_frames(make_napari_viewer, qtbot):
    from matplotlib.ticker import MaxNLocator
    from napari._qt.widgets.qt_dims import QtDims

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("ptycho-app", "fp_simulation")
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    sliders = viewer.window._qt_window.findChild(QtDims)
    assert sliders.isVisible()  # the frames are shown: their slider too
    widget.form.max_iters.value, widget.form.update_every.value, widget.form.device.value = 40, 20, "cpu"
    widget.run()
    wait_for_worker(qtbot, widget)
    labels = viewer.layers["simulated tile labels"]
    assert list(labels.text.values) == ["BM amplitude", "BM phase", "UDU amplitude", "UDU phase"]
    for text, (y, x) in zip(labels.text.values, labels.data, strict=True):
        tile = viewer.layers[f"simulated {text}"]
        (top, left), (bottom, right) = tile.extent.world
        assert y < top and left < x < right  # above its tile, centred
    units = [str(unit) for unit in viewer.layers["simulated BM phase"].units]
    assert viewer.canvas.overlays.scale_bar.visible and units == ["micrometer", "micrometer"]
    assert not sliders.isVisible()  # the frames were hidden by the run: no slider for them
    viewer.layers["simulated frames"].visible = True
    assert sliders.isVisible()
    viewer.layers["simulated frames"].visible = False
    assert not sliders.isVisible()
    # the plots: labelled axes, the eigenvalue index on integer ticks
    assert widget.spectrum_axes.get_xlabel() == "eigenvalue index k" and widget.loss_axes.get_xlabel() == "iteration"
    assert isinstance(widget.spectrum_axes.xaxis.get_major_locator(), MaxNLocator)
    widget.canvas.draw()
    ticks = widget.spectrum_axes.get_xticks()
    assert len(ticks) > 1 and np.all(ticks == np.round(ticks))
    image = viewer.screenshot(canvas_only=False, flash=False)
    ARTIFACTS.mkdir(exist_ok=True)
    from skimage.io import imsave

    imsave(ARTIFACTS / "napari-tiles.png", image, check_contrast=False)
    # a second run (BM only) labels only its tiles
    widget.form.method.value = "bm"
    widget.run()
    wait_for_worker(qtbot, widget)
    assert list(viewer.layers["simulated tile labels"].text.values) == ["BM amplitude", "BM phase"]


def test_a_long_error_wraps_in_the_dock_and_goes_whole_to_a_notification(make_napari_viewer, tmp_path,
                                                                          monkeypatch):
    import napari.utils.notifications

    shown = []
    monkeypatch.setattr(napari.utils.notifications, "show_error", shown.append)
    viewer = make_napari_viewer(show=True)
    dock, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    width = dock.minimumSizeHint().width()
    folder = tmp_path.joinpath(*[f"a_long_folder_name_of_many_characters_{k}" for k in range(8)])
    folder.mkdir(parents=True)
    bad = folder / "bad.h5"
    bad.write_text("not HDF5")
    widget.form.file.value = bad
    widget.run()
    assert widget.worker is None and widget.status.value.startswith("error:") and str(bad) in widget.status.value
    assert len(widget.status.value) > 400 and dock.minimumSizeHint().width() == width  # the dock did not widen
    assert widget.status.native.wordWrap() and widget.status.native.toolTip() == widget.status.value
    assert len(shown) == 1 and str(bad) in shown[0]


def test_run_turns_any_failure_to_read_the_file_into_a_notification(make_napari_viewer, tmp_path, monkeypatch):
    import napari.utils.notifications

    import ptycho_app.io.measurement

    shown = []
    monkeypatch.setattr(napari.utils.notifications, "show_error", shown.append)

    def damaged(path, *args, **kwargs):
        raise KeyError("Unable to synchronously open object (bad symbol table)")

    monkeypatch.setattr(ptycho_app.io.measurement, "read_measurement", damaged)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("ptycho-app", "FP reconstruction")
    (tmp_path / "damaged.h5").write_bytes(b"")
    widget.form.file.value = tmp_path / "damaged.h5"
    widget.run()
    assert widget.worker is None and widget.run_button.enabled
    assert len(shown) == 1 and "bad symbol table" in shown[0] and widget.status.value.startswith("error:")


def test_the_reader_turns_bad_files_into_notifications(make_napari_viewer, tmp_path, monkeypatch):
    import h5py
    import napari.utils.notifications

    shown = []
    monkeypatch.setattr(napari.utils.notifications, "show_error", shown.append)
    viewer = make_napari_viewer()
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not HDF5")
    incomplete = tmp_path / "incomplete.h5"
    with h5py.File(incomplete, "w") as f:
        f["ptychogram"] = np.ones((4, 8, 8), dtype=np.float32)  # no optics
    for path in (not_hdf5, incomplete):
        assert viewer.open(str(path), plugin="ptycho-app") == []
    assert len(viewer.layers) == 0 and len(shown) == 2
    assert all(line.startswith("ptycho-app: cannot open ") and "\n" not in line for line in shown)
    assert "text.h5" in shown[0] and "incomplete.h5" in shown[1] and "wavelength" in shown[1]
