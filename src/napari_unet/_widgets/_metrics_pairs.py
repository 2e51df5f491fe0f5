"""What the Metrics dock scores: prediction layers (a default choice that follows the layers until the user
chooses), each paired with a ground-truth layer, and what the hint under the table says about the pairing.
"""

from __future__ import annotations

import html
import re

import numpy as np
from magicgui.widgets import ComboBox, Select
from qtpy.QtWidgets import QSizePolicy

from .. import layer_roles as roles
from . import _common as c

AUTO = "auto"  # the ground-truth choice 'paired by name'
PREDICTION_NAME = re.compile(r"prediction(\s*\[\d+\])?\s*$", re.IGNORECASE)
WATCHED_EVENTS = ("data", "paint", "set_data")  # layer events after which the scores are stale


class PairChoice:
    """The predictions to score and their ground truth, chosen or paired by name."""

    def __init__(self, viewer) -> None:
        self._viewer = viewer
        self.auto = True  # the selection follows the default until the user changes it
        self._setting = False  # True while the selection is set here, not by the user
        self.predictions = Select(choices=self._prediction_choices, label="Predictions", allow_multiple=True)
        self.predictions.tooltip = (
            "Layers to score. Selected by default: the prediction layers napari-unet made and layers named "
            "'… prediction'; any other Labels layer can be selected too."
        )
        self.predictions.native.setMaximumHeight(80)
        self.predictions.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.truth = ComboBox(choices=self._truth_choices, label="Ground truth")
        self.truth.tooltip = "'paired by name' matches 'cells prediction' with 'cells ground truth' and the like"
        self.predictions.changed.connect(self._on_predictions_changed)

    def _prediction_choices(self, *_) -> list:
        return [(lay.name, lay) for lay in c.labels_layers(self._viewer) if roles.role(lay) != roles.PREVIEW]

    def _truth_choices(self, *_) -> list:
        return [("paired by name", AUTO)] + [(lay.name, lay) for lay in c.labels_layers(self._viewer, False)]

    def _on_predictions_changed(self, *_) -> None:
        if not self._setting:  # the user chose: keep their choice (an empty choice means the default again)
            self.auto = not self.predictions.value

    def reset_choices(self) -> None:
        """The layers changed: offer the current ones, and select the default again unless the user chose."""
        self._setting = True
        try:
            self.predictions.reset_choices()
        finally:
            self._setting = False
        self.truth.reset_choices()
        self.apply_default_selection()

    def default_predictions(self) -> list:
        """The layers scored unless the user chooses: napari-unet's finished predictions and '… prediction' layers."""
        return [
            lay
            for lay in c.labels_layers(self._viewer)
            if (roles.role(lay) == roles.PREDICTION and roles.is_complete(lay))
            or (roles.role(lay) is None and PREDICTION_NAME.search(lay.name))
        ]

    def apply_default_selection(self) -> None:
        if not self.auto:
            return
        wanted = self.default_predictions()
        if [id(x) for x in self.predictions.value] != [id(x) for x in wanted]:
            self._setting = True
            try:
                self.predictions.value = wanted
            finally:
                self._setting = False

    def pairs_and_skipped(self) -> tuple[list[tuple], list[tuple]]:
        """The (prediction, truth) pairs to score, and those left out because the two layers' shapes differ."""
        labels = c.labels_layers(self._viewer)
        predictions = list(self.predictions.value) or self.default_predictions()
        out, skipped = [], []
        for pred in predictions:
            truth = self.truth.value
            if truth == AUTO:
                truth = c.best_truth_layer(pred, labels)
            if truth is not None and truth is not pred:
                if tuple(np.shape(pred.data)) == tuple(np.shape(truth.data)):
                    out.append((pred, truth))
                else:
                    skipped.append((pred, truth))
        return out, skipped


class DataWatcher:
    """Calls ``callback`` when the data of a watched layer changes (painting, or a prediction filling in)."""

    def __init__(self, callback) -> None:
        self._callback = callback
        self._watched: list = []

    def watch(self, layers: list) -> None:
        """Watch exactly these layers (the ones scored now)."""
        self._connect(False)
        self._watched = list({id(x): x for x in layers}.values())
        self._connect(True)

    def _connect(self, on: bool) -> None:
        for layer in self._watched:
            for name in WATCHED_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    (emitter.connect if on else emitter.disconnect)(self._callback)


def pairing_hint(pairs: list, skipped: list, masks: list, as_foreground: list, auto: bool) -> str:
    """The line under the table: what was scored against what, or why nothing was, and what was left out."""
    names = ", ".join(f"'{html.escape(m.name)}'" for m in masks)
    one = len(masks) == 1
    if not pairs and masks:
        text = (
            f"No prediction with a ground truth of the same shape. {names} "
            f"{'is an Image layer' if one else 'are Image layers'} holding labels (a mask opened "
            "with File > Open): click 'Use as labels' (or right-click > Convert to Labels) to score "
            f"{'it' if one else 'them'}."
        )
    elif not pairs:
        text = (
            "No prediction with a ground truth of the same shape: predict an image that has a "
            "ground-truth Labels layer, or choose the layers above."
        )
    else:
        against = ", ".join(f"'{html.escape(p.name)}' vs '{html.escape(t.name)}'" for p, t in pairs[:3])
        more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
        how = "default choice, paired by name" if auto else "chosen"
        text = f"Scored {against}{more} ({how}). Click a row to select its layer."
    if as_foreground:
        names = ", ".join(f"'{html.escape(p.name)}'" for p in as_foreground)
        text += (
            f" Per class applies to class labels only: {names} (or its ground truth) holds one id per object, "
            "so it is scored as foreground vs background (class 1)."
        )
    if skipped:
        names = ", ".join(f"'{html.escape(p.name)}'" for p, _ in skipped)
        text += f" Not scored (shape differs from the ground truth): {names}."
    return f"<small>{text}</small>"
