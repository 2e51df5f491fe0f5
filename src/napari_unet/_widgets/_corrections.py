"""'Correct a prediction' in the Predict dock: an editable copy of a prediction, paired with its image in the
Train dock as complete masks where the user reviewed it; merge and split as one click each.

The arrays work (what was edited, merge, split) is ``corrections``; this module only handles layers. A
correction layer keeps its starting point and the pixels marked reviewed in its metadata (``layer_roles``),
so the Train dock turns it into an ``Annotation(labels, mode="dense", reviewed=...)`` with no other state.
"""

from __future__ import annotations

import html
import uuid

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, SpinBox
from qtpy.QtCore import QTimer

from .. import layer_roles as roles
from ..annotation import Annotation
from ..corrections import editable_copy, mark_plane, merge_labels, reviewed_mask, split_label
from ..errors import InputError
from . import _common as c

MAKE_TIP = (
    "Copy the chosen prediction into a new Labels layer you can edit with napari's tools (paint, erase, fill), "
    "paired with its image in the Train dock. Only what you review trains as complete masks: the objects you "
    "edit (with a few pixels around them) and the planes you mark reviewed; the rest is left unannotated."
)
REMOVE_TIP = (
    "To remove a wrong object: napari's fill bucket with label 0 (or the eraser). To add a missed one: paint "
    "it with a new label (the layer controls' 'new' button)."
)
MARK_TIP = "Count the whole plane on screen (the whole image in 2D) as reviewed: its objects and background train."
MAX_ID = 2**31 - 1


def is_correction(layer) -> bool:
    return roles.role(layer) == roles.CORRECTIONS


def make_correction_layer(viewer, prediction):
    """A new editable Labels layer copied from ``prediction`` (never the prediction itself), selected."""
    image_name = prediction.metadata.get(roles.SOURCE_KEY) or prediction.name.removesuffix(" prediction")
    data = editable_copy(prediction.data)
    layer = viewer.add_labels(
        data,
        name=c.unique_name(viewer, f"{image_name} corrections"),
        scale=prediction.scale,
        translate=prediction.translate,
        opacity=0.7,
        metadata=_correction_metadata(image_name, data),
    )
    layer.contour = 0
    layer.selected_label = int(data.max(initial=0)) + 1  # painting adds a new object
    prediction.visible = False  # one layer to look at: the one being corrected
    viewer.layers.selection.active = layer
    return layer


def _correction_metadata(image_name: str, data: np.ndarray) -> dict:
    return {
        roles.ROLE_KEY: roles.CORRECTIONS,
        roles.SOURCE_KEY: image_name,
        roles.ORIGINAL_KEY: data.copy(),
        roles.MARKED_KEY: np.zeros(data.shape, bool),
    }


def tag_prediction(layer) -> None:
    """Give a prediction layer its own token, so napari's Duplicate of it can be told apart (``adopt``)."""
    layer.metadata[roles.TOKEN_KEY] = uuid.uuid4().hex


def adopt_duplicate(viewer, layer) -> bool:
    """napari's Duplicate copies a prediction's tag, and a prediction is never trained on: a duplicate (a layer
    with another layer's token) becomes a correction layer instead, and the user is told. True if adopted."""
    token = layer.metadata.get(roles.TOKEN_KEY) if roles.role(layer) == roles.PREDICTION else None
    if token is None or not any(o is not layer and o.metadata.get(roles.TOKEN_KEY) == token for o in viewer.layers):
        return False
    image_name = layer.metadata.get(roles.SOURCE_KEY) or layer.name
    for key in (roles.TOKEN_KEY, roles.COMPLETE_KEY, roles.INSTANCES_KEY, roles.OBJECTS_KEY):
        layer.metadata.pop(key, None)
    layer.metadata.update(_correction_metadata(image_name, np.asarray(layer.data)))
    c.report_info(
        f"'{layer.name}' is a copy of a prediction: it is now a correction layer the Train dock offers. Only the "
        "objects you edit and the planes you mark reviewed (Predict dock) train as complete masks."
    )
    return True


def training_labels(layer):
    """What the Train dock hands the core for an annotation layer: a copy of its data, or for a correction
    layer a dense ``Annotation`` whose reviewed mask is what the user edited or marked."""
    data = np.array(layer.data, copy=True)
    if not is_correction(layer):
        return data
    return Annotation(data, mode="dense", reviewed=reviewed_of(layer, data))


def reviewed_of(layer, data: np.ndarray | None = None) -> np.ndarray:
    """The pixels of a correction layer that count as reviewed now."""
    data = np.asarray(layer.data) if data is None else data
    original = layer.metadata.get(roles.ORIGINAL_KEY)
    marked = layer.metadata.get(roles.MARKED_KEY)
    if marked is None or np.shape(marked) != data.shape:
        marked = None
    if original is None or np.shape(original) != data.shape:  # its starting point lost: only what was marked
        return np.zeros(data.shape, bool) if marked is None else np.asarray(marked, bool)
    return reviewed_mask(original, data, marked)


def one_class_note(model, labels: list, config) -> str | None:
    """What the dock says when a one-class model is continued on instance masks (corrections of a prediction
    usually are): it stays a one-class model, and how to get a boundary model instead."""
    from ..labels import is_instance_labels
    from ..meta import learns_boundaries

    if model is None or learns_boundaries(model) or config.multiclass or config.instances is False:
        return None
    dense = [e.labels for e in labels if isinstance(e, Annotation) and e.mode == "dense"]
    if config.mode == "dense":
        dense += [e for e in labels if not isinstance(e, Annotation)]
    if not any(is_instance_labels(np.asarray(lab)) for lab in dense):
        return None
    return (
        "The model in memory predicts one foreground class, so these instance masks train its foreground (objects "
        "are then split by a distance watershed). To learn object boundaries from them, untick 'Continue from the "
        "model in memory' and train a new model."
    )


def current_plane(viewer, layer) -> tuple[int, ...]:
    """The leading (Z/T) indices of ``layer`` shown now; () for a 2D layer."""
    lead = layer.ndim - 2
    if lead <= 0:
        return ()
    point = np.asarray(layer.world_to_data(viewer.dims.point), float)[:lead]
    shape = layer.data.shape[:lead]
    return tuple(int(np.clip(round(x), 0, s - 1)) for x, s in zip(point, shape, strict=True))


def _apply(layer, edited: np.ndarray) -> None:
    """Write the changed pixels through napari's history: one Ctrl-Z undoes the whole merge or split."""
    changed = np.nonzero(np.asarray(layer.data) != edited)
    if changed[0].size:
        layer.data_setitem(changed, edited[changed])


class CorrectionsPanel:
    """The 'Correct a prediction' section: the prediction to copy, the copy's review, merge and split."""

    def __init__(self, viewer, message) -> None:
        self._viewer = viewer
        self.source = ComboBox(label="Prediction", choices=self._predictions, tooltip=MAKE_TIP)
        self.make = PushButton(text="Correct this prediction", tooltip=MAKE_TIP)
        self.mark = PushButton(text="Mark plane reviewed", tooltip=MARK_TIP)
        self.keep = SpinBox(label="Merge", min=0, max=MAX_ID, tooltip="The object that stays (its id)")
        self.absorb = SpinBox(label="into it", min=0, max=MAX_ID, tooltip="The object merged into the first")
        self.merge = PushButton(text="Merge", tooltip="One object from two: the second id becomes the first")
        self.split_id = SpinBox(label="Split", min=0, max=MAX_ID, tooltip="The object to split, in this plane")
        self.split = PushButton(
            text="Split in two", tooltip="Cut the object in two along the narrowest place between its widest parts"
        )
        self.status = c.wrapping_label()
        self.status.native.setToolTip(REMOVE_TIP)
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.update_status)
        self._watched: list = []
        self.make.changed.connect(c.guarded(lambda: self.make_editable(), message))
        self.mark.changed.connect(c.guarded(lambda: self.mark_plane_reviewed(), message))
        self.merge.changed.connect(c.guarded(lambda: self.merge_objects(), message))
        self.split.changed.connect(c.guarded(lambda: self.split_object(), message))
        viewer.layers.selection.events.active.connect(self._on_active)

    def widgets(self) -> list:
        row = Container(widgets=[self.mark], layout="horizontal", labels=False)
        merge = Container(widgets=[self.keep, self.absorb, self.merge], layout="horizontal")
        split = Container(widgets=[self.split_id, self.split], layout="horizontal")
        for box in (row, merge, split):
            box.margins = (0, 0, 0, 0)
        return [c.heading("Correct a prediction"), c.form(self.source), self.make, row, merge, split, self.status]

    def _predictions(self, *_) -> list:
        return [
            (lay.name, lay)
            for lay in self._viewer.layers
            if roles.role(lay) == roles.PREDICTION and roles.is_complete(lay)
        ]

    def reset_choices(self) -> None:
        self.source.reset_choices()

    def target(self):
        """The correction layer the buttons act on: the selected one, else the last one in the viewer."""
        active = self._viewer.layers.selection.active
        if active is not None and is_correction(active):
            return active
        layer = next((lay for lay in reversed(self._viewer.layers) if is_correction(lay)), None)
        if layer is None:
            raise InputError("There is no correction layer: choose a prediction and click 'Correct this prediction'.")
        return layer

    def make_editable(self, prediction=None):
        """The one click: an editable copy of ``prediction`` (default: the chosen one)."""
        prediction = prediction if prediction is not None else self.source.value
        if prediction is None:
            raise InputError("There is no finished prediction to correct: click Predict first.")
        layer = make_correction_layer(self._viewer, prediction)
        self._watch(layer)
        c.report_info(f"Fix '{layer.name}' with napari's tools; {REMOVE_TIP[0].lower()}{REMOVE_TIP[1:]}")
        self.update_status()
        return layer

    def mark_plane_reviewed(self, layer=None) -> None:
        layer = layer if layer is not None else self.target()
        marked = layer.metadata.get(roles.MARKED_KEY)
        if marked is None or marked.shape != layer.data.shape:
            marked = layer.metadata[roles.MARKED_KEY] = np.zeros(layer.data.shape, bool)
        mark_plane(marked, current_plane(self._viewer, layer))
        self.update_status()

    def merge_objects(self, keep: int | None = None, absorb: int | None = None, layer=None) -> None:
        layer = layer if layer is not None else self.target()
        keep = int(self.keep.value if keep is None else keep)
        absorb = int(self.absorb.value if absorb is None else absorb)
        edited = np.array(layer.data, copy=True)
        merge_labels(edited, keep, absorb)
        _apply(layer, edited)
        self.update_status()

    def split_object(self, label: int | None = None, layer=None) -> int:
        layer = layer if layer is not None else self.target()
        label = int(self.split_id.value if label is None else label)
        edited = np.array(layer.data, copy=True)
        new = split_label(edited[current_plane(self._viewer, layer)], label, int(np.max(edited)) + 1)
        _apply(layer, edited)
        self.split_id.value = new
        self.update_status()
        return new

    def _on_active(self, *_) -> None:
        active = self._viewer.layers.selection.active
        if active is not None and is_correction(active):
            self._watch(active)
            self.keep.value = max(0, int(active.selected_label))
            self.update_status()

    def _watch(self, layer) -> None:
        if not any(layer is w for w in self._watched):
            self._watched.append(layer)
            layer.events.paint.connect(lambda *_: self._timer.start())
            layer.events.data.connect(lambda *_: self._timer.start())

    def update_status(self) -> None:
        """How much of the selected correction layer counts as reviewed."""
        if not c.is_alive(self.status.native):
            return
        try:
            layer = self.target()
        except InputError:
            self.status.value = f"<small>{html.escape(REMOVE_TIP)}</small>"
            return
        reviewed = reviewed_of(layer)
        share = reviewed.mean() if reviewed.size else 0.0
        self.status.value = (
            f"<small><b>{html.escape(layer.name)}</b>: {100 * share:.{1 if share < 0.1 else 0}f}% reviewed "
            f"({int(reviewed.sum()):,} pixels train as complete masks; the rest is not annotated). "
            f"{html.escape(REMOVE_TIP)}</small>"
        )
