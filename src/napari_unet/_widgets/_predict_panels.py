"""The Predict dock's option panels: which model, which images, what to output. Each holds its own widgets.

A panel's ``widgets()`` are laid out by the dock in its order; the dock reads the panels' values when the
user clicks Predict.
"""

from __future__ import annotations

import html
from pathlib import Path

from magicgui.widgets import CheckBox, FileEdit, FloatSpinBox, RadioButtons, Select
from qtpy.QtWidgets import QSizePolicy

from ..errors import InputError
from ..training.config import DEFAULT_STITCH_THRESHOLD
from . import _common as c
from ._label_images import label_images, picture_images
from ._state import ModelStore, describe_model

INSTANCES_TIP = (
    "One label id per object: a model trained on instance masks separates objects along the boundaries it "
    "learnt (seeded watershed); other models split touching objects with a distance-transform watershed."
)
STITCH_TIP = (
    "Z stacks with instances: an object takes the id of the object it overlaps most in the plane "
    "before when their IoU is at least this, so one nucleus keeps one id through Z. 0 = off (ids are "
    "unique across the stack either way)."
)


class ModelChoice:
    """The model to predict with: the one in memory (trained in the Train dock) or a model file (cached)."""

    def __init__(self, store: ModelStore) -> None:
        self._store = store
        self._file_model = (None, None)  # ((path, mtime), model) of the last file loaded
        self.source = RadioButtons(
            choices=[("Model in memory", "memory"), ("Model file", "file")], value="memory", orientation="horizontal"
        )
        self.file = FileEdit(mode="r", filter="napari-unet model (*.pt *.zip)", label="Model file")
        self.info = c.wrapping_label()

    def widgets(self) -> list:
        return [c.heading("Model"), self.source, c.form(self.file), self.info]

    def model(self):
        """The model to predict with (loaded from the file if 'Model file' is chosen)."""
        if self.source.value == "memory":
            if self._store.model is None:
                raise InputError("There is no model in memory: train one in the Train widget, or choose a model file.")
            return self._store.model
        path = Path(str(self.file.value)) if self.file.value else None
        if path is None or not path.is_file():
            raise InputError("Choose a model file (.pt) to predict with, or use the model in memory.")
        from ..checkpoint import load_model

        key = (str(path), path.stat().st_mtime)
        if self._file_model[0] != key:
            model = load_model(path)
            self._file_model = (key, model)
            self.info.value = f"<small>{html.escape(describe_model(model, path.name))}</small>"
        return self._file_model[1]

    def refresh(self):
        """Say which model is chosen; return it, or None when there is none yet (or its file is unreadable)."""
        self.file.enabled = self.source.value == "file"
        model = None
        if self.source.value == "memory":
            text = self._store.description
            model = self._store.model
        else:
            path = str(self.file.value) if self.file.value else ""
            found = path and Path(path).is_file()
            text = Path(path).name if found else "choose a model file (.pt, or a .zip exported for bioimage.io)"
            if found:
                try:
                    model = self.model()
                    text = describe_model(model, Path(path).name)
                except Exception:  # an unreadable file says so when Predict is clicked
                    model = None
        self.info.value = f"<small>{html.escape(text)}</small>"
        return model


class ImageChoice:
    """The images to segment: every opened picture, or those selected (never masks opened as images)."""

    def __init__(self, viewer) -> None:
        self._viewer = viewer
        self.all = CheckBox(value=True, text="All opened images")
        self.images = Select(choices=self._choices, label="Images", allow_multiple=True)
        self.images.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.images.native.setMaximumHeight(90)
        self.all.changed.connect(self._on_all_toggled)
        self._on_all_toggled()

    def widgets(self) -> list:
        return [c.heading("Images"), self.all, c.form(self.images)]

    def _choices(self, *_) -> list:
        return [(lay.name, lay) for lay in picture_images(self._viewer)]  # not masks opened as images

    def _on_all_toggled(self, *_) -> None:
        self.images.enabled = not self.all.value

    def chosen(self) -> list:
        """The image layers to segment; an ``InputError`` that says what to open when there is none."""
        images = picture_images(self._viewer) if self.all.value else list(self.images.value)
        if not images:
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


TTA_TIP = (
    "Average the probabilities over the 8 flips and quarter turns of each plane (test-time augmentation): "
    "steadier probabilities near object outlines, at 8x the prediction time."
)


class OutputOptions:
    """What each prediction gives: instances or classes, Z linking, contours, polygons."""

    def __init__(self) -> None:
        self._defaults_for: int | None = None  # id() of the model whose defaults were last applied
        self.instances = CheckBox(value=True, text="Split touching objects (instances)", tooltip=INSTANCES_TIP)
        self.stitch = FloatSpinBox(
            value=DEFAULT_STITCH_THRESHOLD,
            min=0.0,
            max=1.0,
            step=0.05,
            label="Link through Z (IoU)",
            tooltip=STITCH_TIP,
        )
        self.tta = CheckBox(value=False, text="Average 8 flips (8x slower)", tooltip=TTA_TIP)
        self.contours = CheckBox(value=True, text="Show as contours", tooltip="Outline objects over the image")
        self.polygons = CheckBox(
            value=False, text="Add polygons (Shapes layer)", tooltip="One polygon per object, editable and exportable"
        )

    def widgets(self) -> list:
        return [c.heading("Output"), self.instances, c.form(self.stitch), self.tta, self.contours, self.polygons]

    def default_instances(self, model) -> None:
        """A model trained on instance masks predicts objects: splitting them is its default."""
        from ..meta import predicts_boundaries

        key = id(model) if model is not None else None
        if key == self._defaults_for:
            return  # the same model: keep the user's choice
        self._defaults_for = key
        from ..volume import is_volume_model

        volume = model is not None and is_volume_model(model)
        self.tta.enabled = not volume  # flips and quarter turns of planes: 2D models only
        self.tta.value = self.tta.value and not volume
        self.tta.tooltip = TTA_TIP + (" Not for a volume model (3D)." if volume else "")
        if model is not None and predicts_boundaries(model):
            self.instances.value = True
            self.instances.tooltip = INSTANCES_TIP + " This model learnt object boundaries from instance masks."
        else:
            self.instances.tooltip = INSTANCES_TIP
