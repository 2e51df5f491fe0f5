"""Predict dock widget: segment chosen (or all opened) images into new Labels layers, with contours and polygons."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    ProgressBar,
    PushButton,
    RadioButtons,
    Select,
)
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy

from ..errors import InputError
from . import _colors as colors
from . import _common as c
from ._label_images import picture_images
from ._state import describe_model, get_store
from ._worker import WorkerRunner

if TYPE_CHECKING:
    import napari.viewer

POLYGON_STYLE = {"shape_type": "polygon", "edge_color": "#ffd000", "face_color": "transparent", "edge_width": 1}
MAX_SHAPES = 3000  # more polygons than this make a napari Shapes layer sluggish: export them instead
SHAPES_CHUNK = 5  # polygons added in the first event-loop turn; later turns adapt to SHAPES_TURN_SECONDS
SHAPES_TURN_SECONDS = 0.03  # GUI time per turn spent adding polygons (napari triangulates them on the GUI thread)


# ---------------------------------------------------------------------------------------------- the job


@dataclass
class Job:
    """One image to segment: its array, channel axis, and the label array the job fills plane by plane."""

    name: str
    image: object
    channel_axis: int | None
    out: np.ndarray
    n_planes: int


@dataclass(frozen=True)
class ImageStarted:
    index: int


@dataclass(frozen=True)
class PlaneDone:
    index: int  # which image
    plane: int  # planes done in this image
    n_planes: int
    where: tuple = ()  # leading (Z/T) index of the plane just written


@dataclass(frozen=True)
class ImageDone:
    index: int
    polygons: list = field(default_factory=list)  # simplified (plane index + vertices) arrays, for display
    n_objects: int | None = None  # objects in the labels (ids, or connected pieces of a semantic mask)


INSTANCES_TIP = (
    "One label id per object: a model trained on instance masks separates objects along the boundaries it "
    "learnt (seeded watershed); other models split touching objects with a distance-transform watershed."
)


def _objects_text(layer) -> str:
    n = layer.metadata.get("napari_unet_objects")
    return "" if n is None else f" ({n} object{'s' if n != 1 else ''})"


def predict_job(model, jobs: Sequence[Job], instances: bool, polygons: bool, stitch_threshold: float = 0.0) -> Iterator:
    """Fill each job's ``out`` plane by plane (core ``iter_predict``), yielding progress; no Qt, no layers.

    ``out`` arrays are created on the GUI thread and shown by the new Labels layers; only this job writes
    them, and the GUI refreshes the layers when it hears of a finished plane.
    """
    from skimage.measure import approximate_polygon

    from ..contours import Contour, label_contours
    from ..metrics import count_objects
    from ..prediction import iter_predict

    for k, job in enumerate(jobs):
        yield ImageStarted(k)
        for n, (idx, labels) in enumerate(
            iter_predict(
                model,
                job.image,
                channel_axis=job.channel_axis,
                instances=instances,
                stitch_threshold=stitch_threshold if instances else 0.0,
            ),
            start=1,
        ):
            job.out[idx] = labels
            yield PlaneDone(k, n, job.n_planes, tuple(int(i) for i in idx))
        shapes = []
        if polygons:
            contours = label_contours(job.out)
            if len(contours) <= MAX_SHAPES:  # simplified within 0.7 px: napari draws them ~10x faster
                for ct in contours:
                    shapes.append(Contour(ct.label, ct.index, approximate_polygon(ct.coords, 0.7)).napari_coords())
            else:
                shapes = [None] * len(contours)  # too many to show: the GUI says so
        yield ImageDone(k, shapes, count_objects(job.out))


# ---------------------------------------------------------------------------------------------- the widget


class PredictWidget(Container):
    """Segment images with the model in memory or a model file; one new Labels layer per image."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = c.unwrap_viewer(viewer)
        self._store = get_store(self._viewer)
        self._runner = WorkerRunner()
        self._jobs: list[Job] = []
        self._layers: list = []
        self._sources: list = []
        self._refresh_throttle = c.Throttle(0.3)
        self._file_model = (None, None)  # (path, model) cache
        self._closing = False
        self.outputs: list = []  # Labels layers made by the last run
        self._pending_polygons: list = []  # (Shapes layer, polygons still to add)
        self._shapes: list = []  # the Shapes layer of each job, or None
        self._shapes_chunk = float(SHAPES_CHUNK)

        self._source = RadioButtons(
            choices=[("Model in memory", "memory"), ("Model file", "file")], value="memory", orientation="horizontal"
        )
        self._file = FileEdit(mode="r", filter="napari-unet model (*.pt *.zip)", label="Model file")
        self._model_info = c.wrapping_label()
        self._all = CheckBox(value=True, text="All opened images")
        self._images = Select(choices=self._image_choices, label="Images", allow_multiple=True)
        self._images.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._images.native.setMaximumHeight(90)
        self._instances = CheckBox(value=True, text="Split touching objects (instances)", tooltip=INSTANCES_TIP)
        self._stitch = FloatSpinBox(
            value=0.0,
            min=0.0,
            max=1.0,
            step=0.05,
            label="Link through Z (IoU)",
            tooltip="Z stacks with instances: an object takes the id of the object it overlaps most in the plane "
            "before when their IoU is at least this, so one nucleus keeps one id through Z. 0 = off (ids are "
            "unique across the stack either way).",
        )
        self._contours = CheckBox(value=True, text="Show as contours", tooltip="Outline objects over the image")
        self._polygons = CheckBox(
            value=False, text="Add polygons (Shapes layer)", tooltip="One polygon per object, editable and exportable"
        )
        self._predict = PushButton(text="Predict")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(value=0, min=0, max=1000, label="")
        self._progress.native.setTextVisible(True)
        self._progress.native.setFormat("idle")
        self._status = c.wrapping_label()
        self._export_from = ComboBox(choices=self._labels_choices, label="Polygons of")
        self._export = PushButton(text="Export polygons…", tooltip="Write one polygon per object as CSV or GeoJSON")

        self._body = c.scrolling_body(self)  # fits a small screen: scrolls instead of growing the window
        self._body.extend(
            [
                c.heading("Model"),
                self._source,
                c.form(self._file),
                self._model_info,
                c.heading("Images"),
                self._all,
                c.form(self._images),
                c.heading("Output"),
                self._instances,
                c.form(self._stitch),
                self._contours,
                self._polygons,
                Container(widgets=[self._predict, self._cancel], layout="horizontal", labels=False),
                self._progress,
                self._status,
                c.heading("Export"),
                c.form(self._export_from),
                self._export,
            ]
        )
        for sub in self._body:
            if isinstance(sub, Container):
                sub.margins = (0, 0, 0, 0)
        self._body.native.layout().addStretch(1)

        self._source.changed.connect(self._update_model_info)
        self._file.changed.connect(self._update_model_info)
        self._all.changed.connect(self._on_all_toggled)
        self._contours.changed.connect(self._on_contours_toggled)
        self._predict.changed.connect(c.guarded(self.start_prediction))
        self._cancel.changed.connect(self.cancel)
        self._export.changed.connect(c.guarded(lambda: self.export_polygons()))
        self._store.changed.connect(self._update_model_info)
        layers = self._viewer.layers
        layers.events.inserted.connect(self._reset_choices)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.reordered.connect(self._reset_choices)
        self.native.destroyed.connect(self._on_destroyed)
        c.tabify_later(self)  # docked beside another napari-unet dock: one tab each, not stacked
        self._on_all_toggled()
        self._update_model_info()

    # ------------------------------------------------------------------------------------------ choices

    def _image_choices(self, *_) -> list:
        return [(lay.name, lay) for lay in picture_images(self._viewer)]  # not masks opened as images

    def _labels_choices(self, *_) -> list:
        layers = c.labels_layers(self._viewer)
        # predictions first, newest first: the usual thing to export
        layers.sort(key=lambda lay: (c.role(lay) != c.PREDICTION, -self._viewer.layers.index(lay)))
        return [(lay.name, lay) for lay in layers]

    def _reset_choices(self, *_) -> None:
        if c.is_alive(self.native):
            self._images.reset_choices()
            self._export_from.reset_choices()

    def _on_all_toggled(self, *_) -> None:
        self._images.enabled = not self._all.value

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if self._runner.running and any(layer is x for x in self._sources + self._layers):
            self.cancel()
        self._reset_choices()

    def _on_contours_toggled(self, *_) -> None:
        for layer in self.outputs:
            if layer in self._viewer.layers:
                layer.contour = 1 if self._contours.value else 0

    def _update_model_info(self, *_) -> None:
        if not c.is_alive(self.native):
            return
        self._file.enabled = self._source.value == "file"
        model = None
        if self._source.value == "memory":
            text = self._store.description
            model = self._store.model
        else:
            path = str(self._file.value) if self._file.value else ""
            found = path and Path(path).is_file()
            text = Path(path).name if found else "choose a model file (.pt, or a .zip exported for bioimage.io)"
            if found:
                try:
                    model = self.model()
                    text = describe_model(model, Path(path).name)
                except Exception:  # an unreadable file says so when Predict is clicked
                    model = None
        self._model_info.value = f"<small>{html.escape(text)}</small>"
        self._default_instances(model)

    def _default_instances(self, model) -> None:
        """A model trained on instance masks predicts objects: splitting them is its default."""
        from ..meta import predicts_boundaries

        key = id(model) if model is not None else None
        if key == getattr(self, "_defaults_for", None):
            return  # the same model: keep the user's choice
        self._defaults_for = key
        if model is not None and predicts_boundaries(model):
            self._instances.value = True
            self._instances.tooltip = INSTANCES_TIP + " This model learnt object boundaries from instance masks."
        else:
            self._instances.tooltip = INSTANCES_TIP

    # ------------------------------------------------------------------------------------------ predict

    def model(self):
        """The model to predict with (loaded from the file if 'Model file' is chosen)."""
        if self._source.value == "memory":
            if self._store.model is None:
                raise InputError("There is no model in memory: train one in the Train widget, or choose a model file.")
            return self._store.model
        path = Path(str(self._file.value)) if self._file.value else None
        if path is None or not path.is_file():
            raise InputError("Choose a model file (.pt) to predict with, or use the model in memory.")
        from ..checkpoint import load_model

        key = (str(path), path.stat().st_mtime)
        if self._file_model[0] != key:
            model = load_model(path)
            self._file_model = (key, model)
            self._model_info.value = f"<small>{html.escape(describe_model(model, path.name))}</small>"
        return self._file_model[1]

    def chosen_images(self) -> list:
        images = picture_images(self._viewer) if self._all.value else list(self._images.value)
        if not images:
            from ._label_images import label_images

            masks = label_images(self._viewer)
            if masks:
                raise InputError(
                    f"No image to segment: '{masks[0].name}' holds labels (a mask opened as an image), not a "
                    "picture to segment; open the image itself (File > Open)."
                )
            raise InputError(
                "No image to segment: open an image (File > Open), or tick 'All opened images' / select images."
            )
        return images

    @property
    def running(self) -> bool:
        return self._runner.running

    def start_prediction(self) -> None:
        """One new Labels layer per image, filled plane by plane in a background thread."""
        if self._runner.running:
            return
        from ..prediction import output_shape

        model = self.model()
        images = self.chosen_images()
        jobs = []
        for image in images:
            arr = c.layer_array(image)
            axis = c.channel_axis(image)
            shape = output_shape(model, arr, axis)
            n_planes = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            dtype = np.int32 if self._instances.value else np.uint8
            jobs.append(Job(image.name, arr, axis, np.zeros(shape, dtype), n_planes))
            # an early, clear error for a wrong channel count (the core checks it again per plane)
            channels = arr.shape[-1] if axis == -1 else 1
            if channels != model.in_channels:
                raise InputError(
                    f"'{image.name}' has {channels} channel(s) but the model was trained on {model.in_channels}: "
                    "choose images like the training images."
                )
        self._jobs = jobs
        self._n_classes = int(getattr(model, "n_classes", 1))
        self._sources = images
        self._layers = [None] * len(jobs)
        self._shapes = [None] * len(jobs)
        self._shapes_chunk = float(SHAPES_CHUNK)
        self.outputs = []
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
            bool(self._instances.value),
            bool(self._polygons.value),
            float(self._stitch.value),
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
        for layer in self._layers:
            if layer is not None and layer.metadata.get("napari_unet_complete") is False:
                layer.name = c.unique_name(self._viewer, f"{layer.name} (incomplete)")
                layer.refresh()
        # the plane in progress is still being written into the layer's array: read-only until the thread ends
        layers = list(self._layers)
        if worker is not None:
            worker.finished.connect(lambda: self._unlock_outputs(layers))
        if worker is None or not worker.is_running:  # checked after connecting: no end can slip between
            self._unlock_outputs(layers)
        self._drop_unused_shapes()
        if c.is_alive(self.native):
            self._set_running(False)
            self._progress.native.setFormat("cancelled")
            self._status.value = "Cancelled."

    def _set_running(self, running: bool) -> None:
        self._predict.enabled = not running
        self._cancel.enabled = running

    def _alive(self) -> bool:
        return not self._closing and c.is_alive(self.native)

    def _on_event(self, event) -> None:
        if not self._alive():
            return
        n = len(self._jobs)
        if isinstance(event, ImageStarted):
            if self._layers[event.index] is None:
                self._add_output(event.index)
            c.set_progress(self._progress, text=f"image {event.index + 1}/{n}")
            status = f"Segmenting '{html.escape(self._jobs[event.index].name)}'…"
            if self._status.value != status:
                self._status.value = status
        elif isinstance(event, PlaneDone):
            done = (event.index + event.plane / event.n_planes) / n
            plane = f" · plane {event.plane}/{event.n_planes}" if event.n_planes > 1 else ""
            c.set_progress(self._progress, int(1000 * done), f"image {event.index + 1}/{n}{plane}")
            layer = self._layers[event.index]
            # refresh only when the plane just written is on screen, and not more often than the throttle allows;
            # not after the last plane: ImageDone follows at once and refreshes (a 2048 x 2048 labels layer with
            # contours takes napari 0.1-0.2 s of the GUI thread per refresh)
            last = event.plane == event.n_planes
            if layer is not None and not last and self._shows(layer, event.where) and self._refresh_throttle.ready():
                layer.refresh(thumbnail=False)
        elif isinstance(event, ImageDone):
            layer = self._layers[event.index]
            if layer is not None:
                layer.metadata["napari_unet_complete"] = True
                if event.n_objects is not None:
                    layer.metadata["napari_unet_objects"] = event.n_objects
                layer.editable = True
                layer.refresh()  # the thumbnail too, once
                self._store.predicted.emit()
                if self._polygons.value:
                    self._add_polygons(event.index, event.polygons)

    def _shows(self, layer, where: tuple) -> bool:
        """True if the plane at leading index ``where`` of ``layer`` is (possibly) visible now."""
        if not where or not layer.visible:
            return layer.visible
        try:
            viewer = self._viewer
            if viewer.dims.ndisplay != 2 or len(viewer.dims.displayed) != 2:
                return True
            point = np.asarray(layer.world_to_data(viewer.dims.point), float)
            lead = layer.ndim - 2
            displayed = {ax - (viewer.dims.ndim - layer.ndim) for ax in viewer.dims.displayed}
            if displayed != {lead, lead + 1}:
                return True  # a cut through the stack shows every plane
            return tuple(int(round(x)) for x in point[:lead]) == tuple(where)
        except Exception:  # when in doubt, refresh
            return True

    def _add_output(self, k: int) -> None:
        job, image = self._jobs[k], self._sources[k]
        layer = self._viewer.add_labels(
            job.out,
            name=c.unique_name(self._viewer, f"{image.name} prediction"),
            scale=image.scale,
            translate=image.translate,
            opacity=0.8,
            metadata={
                c.ROLE_KEY: c.PREDICTION,
                "napari_unet_source": image.name,
                "napari_unet_complete": False,
                "napari_unet_instances": bool(self._instances.value),
            },
        )
        if not self._instances.value:  # classes in the palette of the strokes, legend and preview
            layer.colormap = colors.class_colormap(max(1, getattr(self, "_n_classes", 1)))
        layer.contour = 1 if self._contours.value else 0
        layer.editable = False  # the job writes planes into its array: no painting until the image is done
        self._layers[k] = layer
        self.outputs.append(layer)
        if self._polygons.value:
            self._shapes[k] = self._viewer.add_shapes(
                None,
                ndim=len(job.out.shape),
                name=c.unique_name(self._viewer, f"{image.name} polygons"),
                scale=image.scale,
                translate=image.translate,
                metadata={c.ROLE_KEY: c.POLYGONS, "napari_unet_source": image.name},
                **POLYGON_STYLE,
            )
            self._viewer.layers.selection.active = layer

    def _add_polygons(self, k: int, polygons: list) -> None:
        """Fill the image's Shapes layer (added with its Labels layer) in small chunks between GUI events."""
        image, layer = self._sources[k], self._shapes[k]
        if layer is None or layer not in self._viewer.layers:
            return
        if polygons and polygons[0] is None:
            self._viewer.layers.remove(layer)
            c.report_warning(
                f"'{image.name}': {len(polygons)} objects are too many polygons to show smoothly; "
                "use 'Export polygons…' to write them to a file."
            )
            return
        if polygons:
            # hidden while it fills: napari then neither redraws the canvas nor the layer list's thumbnail for
            # each chunk (under software OpenGL one redraw costs more than adding the chunk)
            layer.visible = False
            self._pending_polygons.append((layer, polygons))
            self._feed_polygons()

    @property
    def busy(self) -> bool:
        """True while predicting or while polygons are still being added."""
        return self._runner.running or bool(self._pending_polygons)

    def _feed_polygons(self) -> None:
        """Add one chunk of polygons, sized so one turn costs about ``SHAPES_TURN_SECONDS``, then yield to Qt."""
        if not self._alive():
            self._pending_polygons.clear()
            return
        while self._pending_polygons:
            layer, rest = self._pending_polygons[0]
            if not rest or layer not in self._viewer.layers:
                self._pending_polygons.pop(0)
                if layer in self._viewer.layers:
                    layer.visible = True  # one redraw, with every polygon
                continue
            n = max(1, int(self._shapes_chunk))
            start = time.perf_counter()
            layer.add(rest[:n], **POLYGON_STYLE)
            spent = time.perf_counter() - start
            # next chunk: as many polygons as fit in the time budget at the rate just seen (within 2x)
            self._shapes_chunk = float(np.clip(n * SHAPES_TURN_SECONDS / max(spent, 1e-4), n / 2, 2 * n))
            self._pending_polygons[0] = (layer, rest[n:])
            QTimer.singleShot(0, self._feed_polygons)
            return

    def _drop_unused_shapes(self) -> None:
        """Remove the (still empty) Shapes layers of images that were not completed: cancel or failure."""
        for k, shapes in enumerate(self._shapes):
            layer = self._layers[k] if k < len(self._layers) else None
            complete = layer is not None and layer.metadata.get("napari_unet_complete")
            if shapes is not None and not complete and shapes in self._viewer.layers and not len(shapes.data):
                self._viewer.layers.remove(shapes)
            if not complete:
                self._shapes[k] = None

    def _unlock_outputs(self, layers=None) -> None:
        """The job no longer writes: let the user fix an incomplete result."""
        if self._closing or not c.is_alive(self.native):
            return
        for layer in self._layers if layers is None else layers:
            if layer is not None and layer in self._viewer.layers:
                layer.editable = True

    def _on_error(self, error: BaseException) -> None:
        if not self._alive():
            return
        self._unlock_outputs()
        self._drop_unused_shapes()
        self._status.value = "Prediction failed: " + html.escape(c.describe(error))
        self._progress.native.setFormat("failed")
        c.report_error(c.describe(error))

    def _on_finish(self) -> None:
        if not self._alive():
            return
        self._set_running(False)
        self._unlock_outputs()
        complete = [lay for lay in self.outputs if lay.metadata.get("napari_unet_complete")]
        if complete and len(complete) == len(self._jobs):
            self._progress.value = 1000
            self._progress.native.setFormat("done")
            names = ", ".join(f"'{html.escape(lay.name)}'{_objects_text(lay)}" for lay in complete)
            self._status.value = f"Done: {names}."
        self._reset_choices()
        if complete:
            self._export_from.value = complete[-1]

    def _on_destroyed(self, *_) -> None:
        self._closing = True
        self._runner.abandon()

    # ------------------------------------------------------------------------------------------ export

    def export_polygons(self, path: str | Path | None = None, layer=None) -> Path | None:
        """Write one polygon per object of a Labels layer as CSV or GeoJSON (by the file's extension)."""
        from ..contours import label_contours, write_contours

        layer = layer if layer is not None else self._export_from.value
        if layer is None:
            raise InputError("There is no Labels layer to export: predict first.")
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                self.native,
                "Export polygons",
                f"{layer.name}.geojson",
                "GeoJSON (*.geojson);;CSV, one row per vertex (*.csv)",
            )
            if not path:
                return None
        contours = label_contours(np.asarray(layer.data))
        write_contours(contours, path)
        c.report_info(f"Wrote {len(contours)} polygons of '{layer.name}' to {path}.")
        return Path(path)
