"""Predict dock widget: segment chosen (or all opened) images into new Labels layers, with contours and polygons.

The dock lays out its panels (model, images, output options, export), runs ``jobs.predict.predict_job`` in a
worker thread and turns its events into layer updates on the GUI thread.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import Container, ProgressBar, PushButton
from qtpy.QtCore import QTimer

from ..jobs.events import ImageDone, ImageStarted, PlaneDone, UncertaintyDone
from ..jobs.predict import image_job, predict_job
from . import _common as c
from ._corrections import CorrectionsPanel, adopt_duplicate
from ._polygons import PolygonsAdder, PolygonsExport
from ._predict_panels import ImageChoice, ModelChoice, OutputOptions
from ._prediction_layers import PredictionLayers, objects_text
from ._state import get_store
from ._uncertainty import UncertaintyPanel
from ._worker import WorkerRunner

if TYPE_CHECKING:
    import napari.viewer


class PredictWidget(Container):
    """Segment images with the model in memory or a model file; one new Labels layer per image."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = c.unwrap_viewer(viewer)
        self._store = get_store(self._viewer)
        self._runner = WorkerRunner()
        self._refresh_throttle = c.Throttle(0.3)
        self._closing = False
        self._run = PredictionLayers(self._viewer)
        self._polygon_adder = PolygonsAdder(self._viewer)
        self._model_choice = ModelChoice(self._store)
        self._image_choice = ImageChoice(self._viewer)
        self._options = OutputOptions()
        self._export_panel = PolygonsExport(self._viewer)
        # the panels' widgets, by the names the tests and scripts use
        self._source, self._file = self._model_choice.source, self._model_choice.file
        self._model_info = self._model_choice.info
        self._all, self._images = self._image_choice.all, self._image_choice.images
        self._instances, self._stitch = self._options.instances, self._options.stitch
        self._contours, self._polygons = self._options.contours, self._options.polygons
        self._export_from, self._export = self._export_panel.source, self._export_panel.button
        self._predict = PushButton(text="Predict")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(value=0, min=0, max=1000, label="")
        self._progress.native.setTextVisible(True)
        self._progress.native.setFormat("idle")
        self._status = c.wrapping_label()
        self._corrections = CorrectionsPanel(self._viewer, self._status)
        self._uncertainty = UncertaintyPanel(self._viewer, self._status)
        self._lay_out()
        self._connect()
        c.tabify_later(self)  # docked beside another napari-unet dock: one tab each, not stacked
        self._update_model_info()

    def _lay_out(self) -> None:
        self._body = c.scrolling_body(self)  # fits a small screen: scrolls instead of growing the window
        buttons = Container(widgets=[self._predict, self._cancel], layout="horizontal", labels=False)
        self._body.extend(
            [
                *self._model_choice.widgets(),
                *self._image_choice.widgets(),
                *self._options.widgets(),
                self._uncertainty.compute,
                buttons,
                self._progress,
                self._status,
                *self._corrections.widgets(),
                c.heading("Where to paint next"),
                self._uncertainty.next,
                self._uncertainty.status,
                *self._export_panel.widgets(),
            ]
        )
        for sub in self._body:
            if isinstance(sub, Container):
                sub.margins = (0, 0, 0, 0)
        self._body.native.layout().addStretch(1)

    def _connect(self) -> None:
        self._source.changed.connect(self._update_model_info)
        self._file.changed.connect(self._update_model_info)
        self._contours.changed.connect(lambda *_: self._run.set_contours(bool(self._contours.value)))
        self._predict.changed.connect(c.guarded(self.start_prediction))
        self._cancel.changed.connect(self.cancel)
        self._export.changed.connect(c.guarded(lambda: self.export_polygons()))
        self._store.changed.connect(self._update_model_info)
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.reordered.connect(self._reset_choices)
        self.native.destroyed.connect(self._on_destroyed)

    # ------------------------------------------------------------------------------------------ choices

    @property
    def outputs(self) -> list:
        """The Labels layers made by the last run."""
        return self._run.outputs

    def _reset_choices(self, *_) -> None:
        if c.is_alive(self.native):
            self._images.reset_choices()
            self._export_from.reset_choices()
            self._corrections.reset_choices()

    def _on_layer_inserted(self, event) -> None:
        adopt_duplicate(self._viewer, event.value)  # napari's Duplicate of a prediction: a correction layer
        self._reset_choices()

    def next_unsure_region(self):
        """Centre the view on the largest unsure region not yet annotated (see 'Where to paint next')."""
        return self._uncertainty.next_unsure_region()

    def make_editable(self, prediction=None):
        """An editable copy of a prediction (default: the one chosen under 'Correct a prediction')."""
        return self._corrections.make_editable(prediction)

    def _on_layer_removed(self, event) -> None:
        if self._runner.running and self._run.involves(event.value):
            self.cancel()
        self._reset_choices()

    def _update_model_info(self, *_) -> None:
        if c.is_alive(self.native):
            self._options.default_instances(self._model_choice.refresh())

    def model(self):
        """The model to predict with (loaded from the file if 'Model file' is chosen)."""
        return self._model_choice.model()

    def chosen_images(self) -> list:
        return self._image_choice.chosen()

    # ------------------------------------------------------------------------------------------ predict

    @property
    def running(self) -> bool:
        return self._runner.running

    @property
    def busy(self) -> bool:
        """True while predicting or while polygons are still being added."""
        return self._runner.running or self._polygon_adder.busy

    def start_prediction(self) -> None:
        """One new Labels layer per image, filled plane by plane in a background thread."""
        if self._runner.running:
            return
        model = self.model()
        images = self.chosen_images()
        instances, unsure = bool(self._instances.value), bool(self._uncertainty.compute.value)
        jobs = [image_job(model, im.name, c.layer_array(im), c.channel_axis(im), instances, unsure) for im in images]
        self._uncertainty.start_run()
        self._run.start(jobs, images, int(getattr(model, "n_classes", 1)))
        self._polygon_adder.reset()
        self._set_running(True)
        c.set_progress(self._progress, 0, "starting…")
        # the first image's layers now, while the click is handled: adding a layer costs napari a few hundred
        # ms on the GUI thread, better spent at the click than while the user watches the result come in
        self._add_output(0)
        self._status.value = f"Segmenting {len(jobs)} image{'s' if len(jobs) > 1 else ''}…"
        self._runner.start(
            predict_job,
            model,
            jobs,
            instances,
            bool(self._polygons.value),
            float(self._stitch.value),
            bool(self._options.tta.value),
            on_yield=self._on_event,
            on_error=self._on_error,
            on_finish=self._on_finish,
        )

    def cancel(self) -> None:
        """Stop at once: finished images are kept, the image in progress is marked '(incomplete)'."""
        if not self._runner.running:
            return
        worker = self._runner.worker
        self._runner.abandon()
        self._run.mark_incomplete()
        # the plane in progress is still being written into the layer's array: read-only until the thread ends
        layers = list(self._run.labels)
        if worker is not None:
            worker.finished.connect(lambda: self._unlock_outputs(layers))
        if worker is None or not worker.is_running:  # checked after connecting: no end can slip between
            self._unlock_outputs(layers)
        self._run.drop_unused_shapes()
        if c.is_alive(self.native):
            self._set_running(False)
            self._progress.native.setFormat("cancelled")
            self._status.value = "Cancelled."

    def _set_running(self, running: bool) -> None:
        self._predict.enabled = not running
        self._cancel.enabled = running

    def _alive(self) -> bool:
        return not self._closing and c.is_alive(self.native)

    def _add_output(self, k: int) -> None:
        """Job ``k``'s Labels layer now, its Shapes layer in the next event-loop turn: one layer per turn."""
        instances, contours = bool(self._instances.value), bool(self._contours.value)
        self._run.add(k, instances, contours)
        if self._polygons.value:
            jobs = self._run.jobs
            QTimer.singleShot(0, lambda: self._alive() and self._run.jobs is jobs and self._run.add_shapes(k))

    # ------------------------------------------------------------------------------------------ job events

    def _on_event(self, event) -> None:
        if not self._alive():
            return
        if isinstance(event, ImageStarted):
            self._on_image_started(event)
        elif isinstance(event, PlaneDone):
            self._on_plane_done(event)
        elif isinstance(event, ImageDone):
            self._on_image_done(event)
        elif isinstance(event, UncertaintyDone):
            plane = f" plane {event.plane}/{event.n_planes}" if event.n_planes > 1 else ""
            c.set_progress(self._progress, text=f"image {event.index + 1}/{len(self._run.jobs)} · uncertainty{plane}")
            job = self._run.jobs[event.index]
            self._uncertainty.plane_done(event.index, self._run.sources[event.index], job.unsure)

    def _on_image_started(self, event: ImageStarted) -> None:
        if self._run.labels[event.index] is None:
            self._add_output(event.index)
        c.set_progress(self._progress, text=f"image {event.index + 1}/{len(self._run.jobs)}")
        status = f"Segmenting '{html.escape(self._run.jobs[event.index].name)}'…"
        if self._status.value != status:
            self._status.value = status

    def _on_plane_done(self, event: PlaneDone) -> None:
        n = len(self._run.jobs)
        done = (event.index + event.plane / event.n_planes) / n
        plane = f" · plane {event.plane}/{event.n_planes}" if event.n_planes > 1 else ""
        c.set_progress(self._progress, int(1000 * done), f"image {event.index + 1}/{n}{plane}")
        layer = self._run.labels[event.index]
        # refresh only when the plane just written is on screen, and not more often than the throttle allows;
        # not after the last plane: ImageDone follows at once and refreshes (a 2048 x 2048 labels layer with
        # contours takes napari 0.1-0.2 s of the GUI thread per refresh)
        last = event.plane == event.n_planes
        shown = layer is not None and not last and self._run.on_screen(layer, event.where)
        if shown and self._refresh_throttle.ready():
            layer.refresh(thumbnail=False)

    def _on_image_done(self, event: ImageDone) -> None:
        if self._run.finish(event.index, event.n_objects) is None:
            return
        self._store.predicted.emit()
        if self._polygons.value:
            self._run.add_shapes(event.index)  # where the turn meant for it has not come yet
            shapes, image = self._run.shapes[event.index], self._run.sources[event.index]
            if self._polygon_adder.add(shapes, event.polygons, image.name):
                QTimer.singleShot(0, self._feed_polygons)  # the first chunk in a turn of its own

    def _feed_polygons(self) -> None:
        """Fill the Shapes layers one chunk per event-loop turn, so the GUI stays responsive meanwhile."""
        if not self._alive():
            self._polygon_adder.clear()
            return
        if self._polygon_adder.feed_once():
            QTimer.singleShot(0, self._feed_polygons)

    def _unlock_outputs(self, layers=None) -> None:
        """The job no longer writes: let the user fix an incomplete result."""
        if not self._closing and c.is_alive(self.native):
            self._run.unlock(layers)

    def _on_error(self, error: BaseException) -> None:
        if not self._alive():
            return
        self._unlock_outputs()
        self._run.drop_unused_shapes()
        self._status.value = "Prediction failed: " + html.escape(c.describe(error))
        self._progress.native.setFormat("failed")
        c.report_error(c.describe(error))

    def _on_finish(self) -> None:
        if not self._alive():
            return
        self._set_running(False)
        self._unlock_outputs()
        complete = self._run.complete()
        if complete and len(complete) == len(self._run.jobs):
            self._progress.value = 1000
            self._progress.native.setFormat("done")
            names = ", ".join(f"'{html.escape(lay.name)}'{objects_text(lay)}" for lay in complete)
            self._status.value = f"Done: {names}."
        self._reset_choices()
        if complete:
            self._export_from.value = complete[-1]
            self._corrections.source.value = complete[-1]

    def _on_destroyed(self, *_) -> None:
        self._closing = True
        self._runner.abandon()

    # ------------------------------------------------------------------------------------------ export

    def export_polygons(self, path: str | Path | None = None, layer=None) -> Path | None:
        """Write one polygon per object of a Labels layer as CSV or GeoJSON (by the file's extension)."""
        return self._export_panel.export(path, layer, parent=self.native)
