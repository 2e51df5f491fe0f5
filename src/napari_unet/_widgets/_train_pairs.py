"""The Train dock's image / annotation rows: one row per picture in the viewer, with the Labels layer holding
its annotations, chosen automatically or by the user (``PairingMemory`` keeps the user's choices)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

from magicgui.widgets import CheckBox, ComboBox, Container, Label

from .. import layer_roles as roles
from . import _common as c
from ._corrections import adopt_duplicate
from ._label_images import picture_images
from ._pairing import PairingMemory

NONE = "—"


class PairRow(Container):
    """One image and the Labels layer holding its annotations."""

    def __init__(self, image, choices: list, chosen) -> None:
        use = CheckBox(value=chosen is not None, text=image.name, tooltip="Train on this image")
        use.native.setText(image.name)  # as the user wrote it (magicgui turns underscores into spaces)
        annotations = ComboBox(
            choices=[(NONE, None)] + [(lay.name, lay) for lay in choices],
            value=chosen,
            tooltip="The Labels layer with the annotations of this image (same shape as the image)",
        )
        use.native.setMinimumWidth(80)
        super().__init__(layout="horizontal", labels=False, widgets=[use, annotations])
        self.margins = (0, 0, 0, 0)
        self.image_layer = image
        self.use = use
        self.annotations = annotations


class PairsPanel(Container):
    """The rows, rebuilt whenever layers are added, renamed, reordered or removed (not while ``locked``)."""

    def __init__(self, viewer, on_change: Callable[[], None]) -> None:
        super().__init__(labels=False, layout="vertical")
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._on_change = on_change  # the pairing changed: the annotations panel guesses and explains again
        self.rows: list[PairRow] = []
        self.locked = False  # while training runs the rows stay as they are
        self._memory = PairingMemory()  # the pairings the user chose, kept across rebuilds of the rows
        self._refreshing = False
        layers = viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.reordered.connect(self._on_layers_changed)
        for layer in layers:  # renamed layers: the rows show the new names
            layer.events.name.connect(self._on_layer_renamed)

    def refresh(self) -> None:
        """Rebuild the rows from the viewer's layers, keeping the user's choices."""
        if self.locked or not c.is_alive(self.native):
            return
        labels = c.labels_layers(self._viewer, include_plugin=False)
        selected = list(self._viewer.layers.selection)
        self.clear()
        self.rows = []
        self._refreshing = True
        try:
            for image in picture_images(self._viewer):  # not masks opened as images
                shape = c.layer_spatial_shape(image)
                fitting = [lay for lay in labels if tuple(lay.data.shape) == shape]
                use, chosen = self._memory.choice(image, fitting, selected)
                row = PairRow(image, fitting, chosen)
                row.use.value = use
                # the Qt signal: magicgui's `changed` stays silent when the value becomes None ("—")
                row.annotations.native.currentIndexChanged.connect(functools.partial(self._on_row_changed, row))
                row.use.changed.connect(functools.partial(self._on_row_changed, row))
                self.rows.append(row)
                self.append(row)
            if not self.rows:
                self.append(Label(value="<i>Open an image first (File > Open Sample > U-Net).</i>"))
        finally:
            self._refreshing = False
        self._pairing_changed()

    def pairs(self) -> list[tuple]:
        """The (image layer, labels layer) pairs ticked for training."""
        return [
            (r.image_layer, r.annotations.value) for r in self.rows if r.use.value and r.annotations.value is not None
        ]

    def set_pairs(self, pairs: list[tuple]) -> None:
        """Tick exactly these (image, labels) pairs."""
        wanted = {id(img): lab for img, lab in pairs}
        for r in self.rows:
            if id(r.image_layer) in wanted:  # the layer first: a ticked row without one is unticked
                r.annotations.value = wanted[id(r.image_layer)]
            r.use.value = id(r.image_layer) in wanted

    def choose(self, image, labels) -> None:
        """Pair ``image`` with ``labels`` and tick it (a new scribble layer)."""
        for r in self.rows:
            if r.image_layer is image:
                r.annotations.value = labels
                r.use.value = True

    def first_ticked_image(self):
        return next((r.image_layer for r in self.rows if r.use.value), None)

    def annotation_layer(self):
        """The annotation layer the legend describes: the first chosen, else the first offered in a row."""
        pairs = self.pairs()
        if pairs:
            return pairs[0][1]
        return next((r.annotations.value for r in self.rows if r.annotations.value is not None), None)

    def _on_row_changed(self, row: PairRow, *_) -> None:
        if not self._refreshing:  # the user's choice (or a script's): kept across rebuilds
            self._memory.remember(row.image_layer, row.use.value, row.annotations.value)
        self._pairing_changed()

    def _pairing_changed(self) -> None:
        for r in self.rows:
            if r.annotations.value is None and r.use.value:
                r.use.value = False
        self._on_change()

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None) if event is not None else None
        if layer is not None and getattr(event, "type", "") == "inserted":
            layer.events.name.connect(self._on_layer_renamed)
            adopt_duplicate(self._viewer, layer)  # napari's Duplicate of a prediction: a correction layer
        if roles.role(layer) in roles.OUTPUT_ROLES:
            return  # previews, predictions and polygons are never training inputs: no need to rebuild the rows
        self.refresh()

    def _on_layer_renamed(self, event=None) -> None:
        if roles.role(getattr(event, "source", None)) not in roles.OUTPUT_ROLES:
            self.refresh()

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        with contextlib.suppress(Exception):
            layer.events.name.disconnect(self._on_layer_renamed)
        self._memory.forget(layer)
        if roles.role(layer) not in roles.OUTPUT_ROLES:
            self.refresh()
