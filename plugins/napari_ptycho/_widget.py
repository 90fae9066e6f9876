"""The "FP reconstruction" dock widget: BM, UDU or both, live, in a worker thread.

The worker runs :func:`ptycho_app.live.live_reconstruction` (plain parameters in, plain data
out); this widget only updates layers and plots when an update arrives, so the viewer stays
responsive.  The form is built from the options dataclasses (``RunOptions``, ``SolverOptions``):
choices, defaults and help texts (tooltips) live there; choosing a preset sets the solver fields.
With "both", BM and UDU run in one batched solve and their layers sit side by side (BM left, UDU
right; amplitude above phase).

A "tile" above 0 runs a tiled reconstruction of a full-field measurement instead
(:func:`ptycho_app.tiled.reconstruct_tiled`, as ``reconstruct --tile T --overlap V``): a mosaic per
method fills in as each batched solve of tiles finishes (each tile pasted with its global phase
matched to the tiles already there), and the stitched result replaces it at the end, with its
per-tile maps (as the reader shows them).  Stop ends a tiled run at the batched solve's next update
(the tiles it was solving are lost; the mosaic of those finished stays).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtWidgets import QFileDialog, QSizePolicy, QVBoxLayout, QWidget

from . import LAYER_KEY, UNITS

COLORS = {"bm": "tab:blue", "udu": "tab:orange"}

#: RunOptions fields on the form (all of them).
RUN_FIELDS = ("method", "preset", "device", "precision")
#: SolverOptions fields on the form (the CLI has all; these are the ones a viewer session changes).
SOLVER_FIELDS = ("rank", "loss", "precondition", "momentum", "init", "step", "step_d", "xi", "radius", "max_iters",
                 "seed", "pupil", "calibrate")
#: Fields whose 0 means "the default for the method and loss".
OPTIONAL_FIELDS = ("step", "step_d")
LABELS = {"max_iters": "iterations", "step": "step (0: default)", "step_d": "step_d (0: default)"}
#: Lines of the status text shown; the rest is cut (the tooltip and the notification hold it all).
STATUS_LINES = 4
#: Gap between the tiles, as a fraction of the object size.
TILE_GAP = 0.12


def tile_origin(row: int, column: int, size: float) -> tuple[float, float]:
    """``(y, x)`` of the top-left pixel of the tile at ``row, column`` (``size``: the tile's side, um)."""
    return row * (1 + TILE_GAP) * size, column * (1 + TILE_GAP) * size


def option_widgets():
    """Form widgets for :data:`RUN_FIELDS` and :data:`SOLVER_FIELDS`, built from the options dataclasses
    (choices, defaults and help texts, shown as tooltips, live there)."""
    from dataclasses import fields

    from ptycho_app.session import PROBLEM_METHODS, RunOptions
    from ptycho_app.solvers.options import fields_by_name

    run_fields = {f.name: f for f in fields(RunOptions)}
    solver_fields = fields_by_name()
    widgets = []
    for name in (*RUN_FIELDS, *SOLVER_FIELDS):
        f = run_fields.get(name) or solver_fields[name]
        common = {"name": name, "label": LABELS.get(name, name.replace("_", " ")), "tooltip": f.metadata["help"]}
        offered = {"method": PROBLEM_METHODS["fp"], "device": ("auto", "cpu", "cuda")}  # FP: no uv / udv
        choices = offered.get(name, f.metadata.get("choices"))
        if choices:
            widgets.append(ComboBox(choices=list(choices), value=f.default, **common))
        elif isinstance(f.default, int) and not isinstance(f.default, bool):
            low = 0 if name == "seed" else 1
            widgets.append(SpinBox(value=f.default, min=low, max=2**31 - 1, **common))
        else:
            widget = FloatSpinBox(value=f.default or 0.0, min=0.0, max=1e6, step=1e-3, **common)
            widget.native.setDecimals(6)
            widgets.append(widget)
    return widgets


class ReconstructionError(Exception):
    """A solver error, re-raised as a plain Exception: napari's generator workers swallow
    RuntimeErrors (taking them for a deleted Qt object) and would never report them."""


def guarded_reconstruction(measurement, **parameters):
    """:func:`ptycho_app.live.live_reconstruction`, with RuntimeErrors (divergence) made reportable."""
    from ptycho_app.live import live_reconstruction

    try:
        yield from live_reconstruction(measurement, **parameters)
    except RuntimeError as error:
        raise ReconstructionError(str(error)) from error


class TilingStopped(Exception):
    """Raised from the ``on_tiles`` callback to end a tiled run after the widget's Stop."""


@dataclass
class MosaicUpdate:
    """The live mosaic after one batched solve of tiles (plain data, from the worker thread).

    Attributes
    ----------
    amplitude, phase : dict
        ``method -> (Nf, Nf) float32`` (0 where no tile is solved yet).
    done, total : int
        Tiles solved so far (per method) and in all.
    eigenvalues, losses : dict
        ``method -> list`` over the tiles of this batch: their eigenvalues ``(r,)`` and loss histories
        ``(I + 1,)``.
    """

    amplitude: dict
    phase: dict
    done: int
    total: int
    eigenvalues: dict
    losses: dict


@dataclass
class TiledDone:
    """The end of a tiled run: ``method -> Result`` (:func:`ptycho_app.tiled.reconstruct_tiled`)."""

    results: dict


class LiveMosaic:
    """Tiles pasted into a preallocated object grid as they finish, for the live view.

    Each tile is multiplied by the global phase that best matches the pixels already pasted where it
    lands (mean phase 0 when there are none), then pasted over them: a rough, fast view; the stitched
    result (phase synchronization and feathering) comes at the end.

    Parameters
    ----------
    methods : tuple of str
    size : int
        ``Nf``, the object's side (high-resolution pixels).
    upsample : int
        Object pixels per camera pixel.
    """

    def __init__(self, methods, size: int, upsample: int):
        self.objects = {m: np.zeros((size, size), dtype=np.complex128) for m in methods}
        self.filled = {m: np.zeros((size, size), dtype=bool) for m in methods}
        self.upsample = upsample
        self.tiles = set()

    def paste(self, method: str, corner, tile: np.ndarray):
        """Paste one tile's object ``(upsample T, upsample T)`` at its camera-pixel ``corner``."""
        top, left = (int(c) * self.upsample for c in corner)
        region = np.s_[top:top + tile.shape[0], left:left + tile.shape[1]]
        seen = self.filled[method][region]
        reference = np.vdot(tile[seen], self.objects[method][region][seen]) if seen.any() else np.conj(tile.mean())
        self.objects[method][region] = tile * np.exp(1j * np.angle(reference))
        self.filled[method][region] = True

    def update(self, finished: dict, tiles: list) -> MosaicUpdate:
        """Paste ``{(method, tile index): TileSolution}`` (tile positions from ``tiles``) and return the views."""
        corners = {t.index: t.corner for t in tiles}
        eigenvalues, losses = {m: [] for m in self.objects}, {m: [] for m in self.objects}
        for (method, index), solution in finished.items():
            self.paste(method, corners[index], np.asarray(solution.object))
            self.tiles.add(index)
            eigenvalues[method].append(np.asarray(solution.eigenvalues))
            losses[method].append(np.asarray(solution.loss))
        return MosaicUpdate({m: np.abs(o).astype(np.float32) for m, o in self.objects.items()},
                            {m: np.angle(o).astype(np.float32) for m, o in self.objects.items()},
                            len(self.tiles), len(tiles), eigenvalues, losses)


def tiled_reconstruction(measurement, name, tile, overlap, stop, method="both", preset=None, device="auto",
                         precision="single", update_every=None, seed=0, **options):
    """Yield a :class:`MosaicUpdate` after each batched solve of tiles, then :class:`TiledDone`.

    :func:`ptycho_app.tiled.reconstruct_tiled` runs in a thread of its own; its ``on_tiles`` callback
    pastes the finished tiles into a :class:`LiveMosaic` and hands the views to this generator (which
    runs in napari's worker thread) through a queue.  Setting ``stop`` (a :class:`threading.Event`)
    ends the run after the batch being solved; the generator then returns without a result.

    Parameters
    ----------
    measurement : Measurement
        Full-field frames with LED positions.
    name : str
        The measurement's name (the input's stem when it has no file).
    tile, overlap : int
        Camera pixels, as ``reconstruct --tile --overlap``.
    stop : threading.Event
    method, preset, device, precision : str
        :class:`~ptycho_app.session.RunOptions` fields.
    update_every : int
        Unused (the mosaic is updated per batched solve).
    seed : int
        Tile ``k`` starts from ``seed + k``, as in the CLI.
    **options
        :class:`~ptycho_app.solvers.SolverOptions` fields over the preset's (None: the preset's).

    Raises
    ------
    ValueError, InputFileError
        Bad tile or overlap, or a file without LED positions (before any solving).
    """
    from ptycho_app.batch import Input, Interrupted
    from ptycho_app.io.measurement import file_sha256
    from ptycho_app.session import RunOptions
    from ptycho_app.tiled import check_tiling, reconstruct_tiled

    run = RunOptions(method=method, device=device, precision=precision,
                     **({"preset": preset} if preset is not None else {}))
    source = Path(measurement.path) if measurement.path is not None else Path(f"{name}.h5")
    sha = file_sha256(source) if measurement.path is not None and source.exists() else ""
    item = Input(source, measurement, sha)
    check_tiling(measurement, source, tile, overlap)
    a = measurement.acquisition
    mosaic = LiveMosaic(run.methods(), a.grid_size, a.upsample)
    messages = queue.Queue()

    def on_tiles(finished, tiles):
        messages.put(("tiles", mosaic.update(finished, tiles)))
        if stop.is_set():
            raise TilingStopped

    def solve():
        try:
            messages.put(("done", reconstruct_tiled(item, tile, overlap, run, int(seed or 0), options,
                                                    progress=False, on_tiles=on_tiles, stop=stop)))
        except (TilingStopped, Interrupted):
            messages.put(("stopped", None))
        except BaseException as error:  # noqa: BLE001 (handed to the worker, which reports it)
            messages.put(("error", error))

    threading.Thread(target=solve, name=f"ptycho-tiled {name}", daemon=True).start()
    while True:
        kind, payload = messages.get()
        if kind == "tiles":
            yield payload
        elif kind == "done":
            yield TiledDone(payload)
            return
        elif kind == "stopped":
            return
        elif isinstance(payload, RuntimeError):  # napari's workers swallow RuntimeErrors
            raise ReconstructionError(str(payload)) from payload
        else:
            raise payload


class StatusLabel(Label):
    """The status line: long texts (errors, paths) wrap and are cut to :data:`STATUS_LINES` lines
    instead of widening the dock; the tooltip holds the whole text (errors also go whole to a
    notification)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        label = self.native
        label.setWordWrap(True)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        label.setMaximumHeight(STATUS_LINES * label.fontMetrics().lineSpacing() + 4)
        label.setToolTip(self.value)

    @property
    def value(self) -> str:
        return Label.value.fget(self)

    @value.setter
    def value(self, text):
        Label.value.fset(self, text)
        self.native.setToolTip(str(text))


class ReconstructionWidget(QWidget):
    """Dock widget: pick a measurement, set the solver, Run / Stop / Save; live layers and spectra."""

    def __init__(self, napari_viewer):
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.worker = None
        self.last_update = None
        self.measurement = None
        self.update_seconds = []  # time spent drawing each update (for the record)
        self.run_layers = {}  # (method, kind) -> the layers this widget created for the current run
        self.run_parameters = {}
        self.outcome = "idle"  # running, stopped, finished or error
        self.stop_event = None  # a tiled run's Stop (see tiled_reconstruction)
        self.mosaic_updates = 0  # mosaic updates drawn in the current tiled run
        self.tiled_status = None  # the current tiled run's progress text
        self.tiled_results = {}  # method -> stitched Result of the last tiled run
        self.form = Container(widgets=[
            ComboBox(name="layer", label="measurement layer", choices=self._measurement_layers),
            FileEdit(name="file", label="or file", mode="r", filter="*.h5 *.hdf5", value=""),
            *option_widgets(),
            SpinBox(name="update_every", label="update interval", value=50, min=1, max=100_000,
                    tooltip="redraw the layers and plots every this many iterations"),
            SpinBox(name="tile", label="tile (0: none)", value=0, min=0, max=100_000,
                    tooltip="reconstruct --tile T: cut the full frames into T x T camera-pixel tiles, solve each "
                            "with its own illumination and stitch (needs LED positions; 0: one problem, no tiles)"),
            SpinBox(name="overlap", label="overlap", value=0, min=0, max=100_000,
                    tooltip="reconstruct --overlap V: least overlap of neighbouring tiles, camera pixels "
                            "(set to tile // 4, the CLI's default, when the tile changes)"),
        ])
        self.form.tile.changed.connect(lambda tile: setattr(self.form.overlap, "value", tile // 4))
        self.form.preset.changed.connect(self.apply_preset)
        self.apply_preset(self.form.preset.value)
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.save_button = PushButton(text="Save results", enabled=False)
        self.status = StatusLabel(value="idle")
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.save_button.changed.connect(lambda: self.save())
        controls = Container(widgets=[self.run_button, self.stop_button, self.save_button], layout="horizontal",
                             labels=False)
        self.figure = Figure(figsize=(4, 5), tight_layout=True)
        self.spectrum_axes = self.figure.add_subplot(2, 1, 1)
        self.loss_axes = self.figure.add_subplot(2, 1, 2)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(320)
        self._label_axes()
        self.lines = {}
        layout = QVBoxLayout(self)
        for widget in (self.form.native, controls.native, self.status.native, self.canvas):
            layout.addWidget(widget)
        self.viewer.layers.events.inserted.connect(self.form.layer.reset_choices)
        self.viewer.layers.events.removed.connect(self.form.layer.reset_choices)
        self.form.layer.reset_choices()
        scale_bar = self.viewer.canvas.overlays.scale_bar if hasattr(self.viewer, "canvas") else self.viewer.scale_bar
        scale_bar.visible = True  # in um: the layers' units
        self.viewer.layers.events.connect(self._sync_frame_slider)
        self._sync_frame_slider()

    # ---- inputs -------------------------------------------------------------------------------
    def _measurement_layers(self, *_):
        return [layer for layer in self.viewer.layers if LAYER_KEY in layer.metadata]

    def apply_preset(self, preset):
        """Set the solver fields to the preset's values (the step fields to 0: the default for the loss)."""
        from ptycho_app.solvers import SolverOptions

        values = SolverOptions.preset(preset).to_dict()
        for name in SOLVER_FIELDS:
            widget = getattr(self.form, name)
            value = values[name]
            widget.value = 0.0 if name in OPTIONAL_FIELDS else value

    def parameters(self) -> dict:
        """The run and solver parameters as plain values (what the worker gets; never widgets)."""
        values = {name: getattr(self.form, name).value for name in (*RUN_FIELDS, *SOLVER_FIELDS, "update_every")}
        for name in OPTIONAL_FIELDS:
            values[name] = values[name] or None  # 0: the default for the method and loss
        return values

    def selected_measurement(self):
        """The chosen file (if any) or layer's measurement, and a name for its layers."""
        from ptycho_app.io.measurement import read_measurement

        path = str(self.form.file.value or "")
        if path not in ("", ".") and not Path(path).is_dir():  # an empty FileEdit reads as the cwd
            return read_measurement(path), Path(path).stem
        layer = self.form.layer.value
        if layer is None:
            raise ValueError("choose a measurement layer (File > Open Sample > Simulated FP acquisition) or a file")
        return layer.metadata[LAYER_KEY], layer.name.removesuffix(" frames")

    # ---- running --------------------------------------------------------------------------------
    def run(self):
        """Start a reconstruction in a worker thread (errors become notifications)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if self.worker is not None:
            return
        try:
            self.measurement, self.name = self.selected_measurement()
        except Exception as error:  # noqa: BLE001 (any failure to read the chosen file: a notification)
            show_error(f"FP reconstruction: {error}")
            self.status.value = f"error: {error}"
            return
        self.last_update = None
        self.update_seconds = []
        self._clear_previous_run()
        self.run_parameters = self.parameters()
        self.outcome = "running"
        tile, overlap = self.form.tile.value, self.form.overlap.value
        if tile:
            from ptycho_app.tiled import check_tiling

            try:  # a bad tile or a file without LED positions: refused before the worker starts
                check_tiling(self.measurement, self.measurement.path or self.name, tile, overlap)
            except Exception as error:  # noqa: BLE001 (ValueError, InputFileError: a notification)
                self.outcome = "error"
                show_error(f"FP reconstruction: {error}")
                self.status.value = f"error: {error}"
                return
            self.stop_event = threading.Event()
            self.worker = create_worker(tiled_reconstruction, self.measurement, self.name, tile, overlap,
                                        self.stop_event, **self.run_parameters, _start_thread=False,
                                        _ignore_errors=True)
            self.worker.yielded.connect(self.show_tiles)
        else:
            self.worker = create_worker(guarded_reconstruction, self.measurement, **self.run_parameters,
                                        _start_thread=False, _ignore_errors=True)  # errors: show_error
            self.worker.yielded.connect(self.show_update)
        self.worker.errored.connect(self.show_error)
        self.worker.finished.connect(self.finished)
        self.run_button.enabled, self.stop_button.enabled, self.save_button.enabled = False, True, False
        self.status.value = "starting..."
        self.worker.start()

    def _clear_previous_run(self):
        """A new run replaces the previous run's layers and curves (save results first to keep them)."""
        for layer in self.run_layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.run_layers = {}
        self.stop_event, self.mosaic_updates, self.tiled_status, self.tiled_results = None, 0, None, {}
        for axes in (self.spectrum_axes, self.loss_axes):
            axes.cla()
        self._label_axes()
        self.lines = {}
        self.canvas.draw_idle()

    def stop(self):
        """End the run at the next update (between iterations); the last state stays and can be saved.

        A tiled run ends at the next update of the batched solve in progress (its tiles are lost); the
        mosaic of the tiles finished stays (nothing to save)."""
        if self.worker is None:
            return
        self.outcome = "stopped"
        if self.stop_event is not None:
            self.stop_event.set()  # the generator returns once the solver thread has stopped
            self.status.value = "stopping at the next update..."
        else:
            self.worker.quit()
            self.status.value = "stopping at the next update..."

    def finished(self):
        self.worker = None
        self.run_button.enabled, self.stop_button.enabled = True, False
        self.save_button.enabled = self.last_update is not None or bool(self.tiled_results)
        if self.outcome == "running":
            self.outcome = "finished"
        if self.outcome in ("finished", "stopped") and self.last_update is not None:
            self.status.value = f"{self.outcome}: {self.progress_text(self.last_update)}"
        elif self.outcome in ("finished", "stopped") and self.tiled_status is not None:
            self.status.value = f"{self.outcome}: {self.tiled_status}"

    def show_error(self, error):
        from napari.utils.notifications import show_error

        self.outcome = "error"
        show_error(f"FP reconstruction: {error}")
        self.status.value = f"error: {error}"

    def closeEvent(self, event):  # noqa: N802 (Qt's name)
        """Closing the widget ends its run and its connections to the viewer."""
        if self.stop_event is not None:
            self.stop_event.set()
        if self.worker is not None:
            self.worker.quit()
        for emitter in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            emitter.disconnect(self.form.layer.reset_choices)
        self.viewer.layers.events.disconnect(self._sync_frame_slider)
        super().closeEvent(event)

    @staticmethod
    def progress_text(update) -> str:
        losses = ", ".join(f"{m.upper()} {v.losses[-1]:.3e}" for m, v in update.methods.items())
        residuals = ", ".join(f"{m.upper()} {v.relative_residual:.2e} (shown x x^*: {v.relative_residual_rank1:.2e})"
                              for m, v in update.methods.items())
        return (f"iteration {update.iteration}: loss {losses}; relative residual of X {residuals}; "
                f"{update.seconds:.1f} s")

    # ---- drawing --------------------------------------------------------------------------------
    def show_update(self, update):
        """Update layers in place (added on the first update), the spectra and the loss curves."""
        started = time.perf_counter()
        self.last_update = update
        a = self.measurement.acquisition
        pixel = a.pixel_size_hr * 1e6
        N = a.grid_size
        added = False
        for column, (method, view) in enumerate(update.methods.items()):
            for row, (kind, image) in enumerate((("amplitude", view.amplitude), ("phase", view.phase))):
                name = f"{self.name} {method.upper()} {kind}"
                layer = self.run_layers.get((method, kind))
                if layer is not None and layer in self.viewer.layers:
                    layer.data = image
                    if kind == "amplitude":  # the amplitude grows from the small start: follow it
                        layer.contrast_limits = (0.0, max(float(image.max()), 1e-12))
                else:
                    options = {"colormap": "twilight", "contrast_limits": (-np.pi, np.pi)} if kind == "phase" else {
                        "colormap": "gray", "contrast_limits": (0.0, max(float(image.max()), 1e-12))}
                    self.run_layers[(method, kind)] = self.viewer.add_image(
                        image, name=name, scale=(pixel, pixel), units=UNITS,
                        translate=tile_origin(row, column, N * pixel), **options)
                    added = True
        added = self._show_pupils(update, N * pixel) or added
        if added:
            for layer in self.viewer.layers:
                if LAYER_KEY in layer.metadata:
                    layer.visible = False  # the frames would sit under the reconstructions
            self._add_tile_labels(list(update.methods), N * pixel, pixel)
            self.viewer.reset_view()
        self._plot(update)
        if self.outcome == "running":
            self.status.value = self.progress_text(update)
        self.update_seconds.append(time.perf_counter() - started)

    def show_tiles(self, update):
        """A tiled run's update: the mosaic layers (one amplitude and one phase per method, added on the
        first update) take the new views; at the end the stitched objects replace them and each method's
        maps are added over its amplitude (:func:`~napari_ptycho._reader.tiled_layers`)."""
        started = time.perf_counter()
        a = self.measurement.acquisition
        pixel = a.pixel_size_hr * 1e6
        size = a.grid_size * pixel
        if isinstance(update, TiledDone):
            self.tiled_results = update.results
            views = {m: (np.abs(r.object), np.angle(r.object)) for m, r in update.results.items()}
            worst = max(float(np.nanmax(r.residual_map)) for r in update.results.values())
            self.tiled_status = (f"{len(update.results[next(iter(views))].tile_corners)} tiles stitched; "
                                 f"largest tile residual {worst:.2e}")
        else:
            self.mosaic_updates += 1
            views = {m: (update.amplitude[m], update.phase[m]) for m in update.amplitude}
            self.tiled_status = f"tiles {update.done}/{update.total} solved"
            self._plot_tiles(update)
        added = False
        for column, (method, (amplitude, phase)) in enumerate(views.items()):
            for row, (kind, image) in enumerate((("amplitude", amplitude), ("phase", phase))):
                layer = self.run_layers.get((method, kind))
                limits = (0.0, max(float(image.max()), 1e-12)) if kind == "amplitude" else (-np.pi, np.pi)
                if layer is not None and layer in self.viewer.layers:
                    layer.data = image
                    layer.contrast_limits = limits
                    continue
                self.run_layers[(method, kind)] = self.viewer.add_image(
                    image, name=f"{self.name} {method.upper()} {kind}", scale=(pixel, pixel), units=UNITS,
                    translate=tile_origin(row, column, size), contrast_limits=limits,
                    colormap="gray" if kind == "amplitude" else "twilight")
                added = True
        if isinstance(update, TiledDone):
            self._add_tile_maps(update.results, size, pixel)
        if added:
            for layer in self.viewer.layers:
                if LAYER_KEY in layer.metadata:
                    layer.visible = False  # the frames would sit under the mosaic
            self._add_tile_labels(list(views), size, pixel)
            self.viewer.reset_view()
        if self.outcome == "running":
            self.status.value = self.tiled_status
        self.update_seconds.append(time.perf_counter() - started)

    def _add_tile_maps(self, results, size, pixel):
        """Each method's per-tile maps and tile borders over its stitched amplitude (the reader's layers)."""
        from ._reader import tiled_layers

        active = self.viewer.layers.selection.active
        for column, (method, result) in enumerate(results.items()):
            origin = np.asarray(tile_origin(0, column, size))
            for data, options, kind in tiled_layers(result, f"{self.name} {method.upper()}", pixel):
                options = {**options, "translate": tuple(np.asarray(options["translate"]) + origin)}
                add = self.viewer.add_image if kind == "image" else self.viewer.add_shapes
                self.run_layers[("maps", method, options["name"])] = add(data, **options)
        self.viewer.layers.selection.active = active  # keep the user's layer selected

    def _show_pupils(self, update, size) -> bool:
        """Live pupil layers (amplitude above phase) in a column right of the objects, for each method
        whose run recovers a pupil (``SolverView.pupil``); returns whether a layer was added.

        The pupil is drawn at the objects' tile size (its axes are spatial frequencies, not um); its
        phase is shown inside the support only (0 outside)."""
        from ptycho_app.calibration.summary import pupil_phase

        added = False
        methods = list(update.methods)
        for column, (method, view) in enumerate(update.methods.items(), start=len(methods)):
            if view.pupil is None:
                continue
            phase = np.nan_to_num(pupil_phase(view.pupil), nan=0.0)
            bound = max(float(np.abs(phase).max()), 1e-3)
            images = (("pupil amplitude", np.abs(view.pupil), (0.0, max(float(np.abs(view.pupil).max()), 1e-12))),
                      ("pupil phase", phase, (-bound, bound)))
            for row, (kind, image, limits) in enumerate(images):
                layer = self.run_layers.get((method, kind))
                if layer is not None and layer in self.viewer.layers:
                    layer.data = image
                    layer.contrast_limits = limits
                    continue
                M = image.shape[0]
                self.run_layers[(method, kind)] = self.viewer.add_image(
                    image, name=f"{self.name} {method.upper()} {kind}", scale=(size / M, size / M), units=UNITS,
                    translate=tile_origin(row, column, size), contrast_limits=limits,
                    colormap="gray" if kind == "pupil amplitude" else "PiYG")
                added = True
        return added

    def _add_tile_labels(self, methods, size, pixel):
        """A text-only points layer naming each tile ("BM amplitude"...), centred above it."""
        positions, text = [], []
        for column, method in enumerate(methods):
            for row, kind in enumerate(("amplitude", "phase")):
                top, left = tile_origin(row, column, size)
                positions.append((top - pixel / 2 - TILE_GAP * size / 2, left - pixel / 2 + size / 2))
                text.append(f"{method.upper()} {kind}")
        active = self.viewer.layers.selection.active
        self.run_layers[("labels", None)] = self.viewer.add_points(
            np.asarray(positions), name=f"{self.name} tile labels", units=UNITS, size=0, face_color="transparent",
            border_width=0, features={"tile": text},
            text={"string": "{tile}", "color": "white", "size": 12, "anchor": "center"})
        self.viewer.layers.selection.active = active  # keep the user's layer selected

    def _sync_frame_slider(self, event=None):
        """Show the frame slider only while a visible layer has frames (napari keeps it for hidden ones)."""
        if event is not None and event.type not in ("visible", "inserted", "removed"):
            return
        from napari._qt.widgets.qt_dims import QtDims  # napari has no public switch for its sliders

        sliders = self.window().findChild(QtDims)  # None until the widget is docked in the viewer's window
        if sliders is not None:
            sliders.setVisible(any(layer.visible and layer.ndim > 2 for layer in self.viewer.layers))

    def showEvent(self, event):  # noqa: N802 (Qt's name)
        """Once docked, the frame slider follows the layers' visibility."""
        super().showEvent(event)
        self._sync_frame_slider()

    def _label_axes(self):
        """Axis labels; the eigenvalue index on integer ticks."""
        from matplotlib.ticker import MaxNLocator

        self.spectrum_axes.set_xlabel("eigenvalue index k")
        self.spectrum_axes.set_ylabel(r"$\lambda_k / \lambda_1$")
        self.spectrum_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        self.loss_axes.set_xlabel("iteration")
        self.loss_axes.set_ylabel("loss")

    def _plot(self, update):
        for method, view in update.methods.items():
            values = np.maximum(view.eigenvalues / max(view.eigenvalues[0], 1e-300), 1e-17)
            if method not in self.lines:
                color = COLORS.get(method)
                spectrum, = self.spectrum_axes.semilogy([], [], "o-", color=color, label=method.upper())
                loss, = self.loss_axes.loglog([], [], color=color, label=method.upper())
                self.lines[method] = (spectrum, loss)
            spectrum, loss = self.lines[method]
            spectrum.set_data(np.arange(1, len(values) + 1), values)
            loss.set_data(np.arange(1, len(view.losses) + 1), view.losses)
        self.spectrum_axes.set_title("eigenvalues of X / lambda_1")
        self.loss_axes.set_title("loss")
        self._redraw_plots()

    def _plot_tiles(self, update):
        """Add each newly solved tile's spectrum and loss as one thin line (one colour per method)."""
        for method in update.eigenvalues:
            color = COLORS.get(method)
            for values, losses in zip(update.eigenvalues[method], update.losses[method], strict=True):
                label = None if method in self.lines else f"{method.upper()} (one line a tile)"
                ratios = np.maximum(values / max(values[0], 1e-300), 1e-17)
                spectrum, = self.spectrum_axes.semilogy(np.arange(1, len(ratios) + 1), ratios, "o-", color=color,
                                                        alpha=0.5, lw=1, ms=3, label=label)
                loss, = self.loss_axes.loglog(np.arange(1, len(losses) + 1), losses, color=color, alpha=0.5, lw=1,
                                              label=label)
                self.lines.setdefault(method, (spectrum, loss))
        self.spectrum_axes.set_title("each tile's eigenvalues / lambda_1")
        self.loss_axes.set_title("loss of each tile")
        self._redraw_plots()

    def _redraw_plots(self):
        """Rescale both plots to their lines, refresh the legends and redraw."""
        for axes in (self.spectrum_axes, self.loss_axes):
            axes.relim()
            axes.autoscale_view()
            axes.legend(loc="upper right", fontsize="small")
        self.canvas.draw_idle()

    def current_eigenvalues(self) -> dict:
        """``method -> eigenvalues / lambda_1`` as drawn in the spectrum plot."""
        return {method: lines[0].get_ydata() for method, lines in self.lines.items()}

    # ---- saving ---------------------------------------------------------------------------------
    def save(self, folder=None) -> list:
        """Write the last update in the CLI's result layout (``<folder>/<name>.<method>.h5``)."""
        from napari.utils.notifications import show_error, show_info

        from ptycho_app.live import save_live_results

        if self.last_update is None and not self.tiled_results:
            return []
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save results to folder")
            if not folder:
                return []
        try:
            if self.tiled_results:
                written = self._save_tiled(folder)
            else:
                written = save_live_results(self.last_update, self.measurement, folder, name=self.name,
                                            interrupted=self.outcome != "finished")
        except (ValueError, OSError) as error:
            show_error(f"FP reconstruction: cannot save: {error}")
            return []
        show_info("saved " + ", ".join(p.name for p in written))
        return written

    def _save_tiled(self, folder) -> list:
        """Write the last tiled run's stitched results as ``reconstruct --tile`` does
        (``<folder>/<name>.<method>.h5``)."""
        from ptycho_app.io.results import result_path, write_result

        written = []
        for method, result in self.tiled_results.items():
            path = result_path(folder, Path(f"{self.name}.h5"), method)
            write_result(path, result)
            written.append(path)
        return written
