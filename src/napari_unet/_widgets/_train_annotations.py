"""What the annotations are and how to paint them: 'Labels are' (guessed from the painted shapes), the hint
under it, the legend, 'New scribble layer' and '+ class'. The conventions themselves live in ``labels``."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtCore import QTimer

from .. import layer_roles as roles
from ..errors import InputError
from ..labels import (
    MODE_HELP,
    NOTHING_PAINTED,
    PAINT_FIRST,
    SCRIBBLE_FIRST_CLASS,
    SCRIBBLES_SHORT,
    annotation_hint,
    label_guess,
    label_meanings,
    legend_items,
    scribble_color,
)
from . import _colors as colors
from . import _common as c
from ._train_pairs import PairsPanel
from ._worker import WorkerRunner

# up to this many annotation pixels 'Labels are' is guessed on the GUI thread (< 20 ms); larger, in a worker
SYNC_GUESS_PIXELS = 1024 * 1024
MODES = [("choose…", None), ("scribbles (sparse)", "sparse"), ("complete masks (dense)", "dense")]


class AnnotationsPanel(Container):
    """'Labels are', its hint, the legend and the scribble buttons, for the layers the rows pair."""

    def __init__(self, viewer, pairs: PairsPanel, multiclass: Callable[[], bool], message) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._pairs = pairs
        self._multiclass = multiclass  # whether dense labels are class ids (an advanced setting)
        self.mode = ComboBox(choices=MODES, value="sparse", label="Labels are", tooltip=MODE_HELP)
        self.hint = c.wrapping_label()
        self.new_layer = PushButton(
            text="New scribble layer",
            tooltip=f"Add an empty Labels layer over the image, ready to paint: {SCRIBBLES_SHORT}",
        )
        self.add_class_button = PushButton(text="+ class", tooltip="Offer one more class to paint (next label value)")
        self.legend = c.wrapping_label()
        self.legend.native.setToolTip(MODE_HELP)
        buttons = Container(widgets=[self.new_layer, self.add_class_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend([c.form(self.mode), self.hint, buttons, self.legend])

        self._n_labels: dict[int, int] = {}  # id(layer) -> highest scribble label offered in the legend
        self._guessed_for: tuple[int, ...] = ()
        self._guess_runner = WorkerRunner()  # guesses 'Labels are' from large layers off the GUI thread
        self.guess_pending: tuple | None = None
        self._guess_reason = ""  # why the mode was guessed (or why it could not be)
        self._hint_layers: list = []  # annotation layers whose painting updates the hint
        self._hint_timer = QTimer()
        self._hint_timer.setSingleShot(True)
        self._hint_timer.setInterval(300)
        self._hint_timer.timeout.connect(self.update_hint)

        self.new_layer.changed.connect(c.guarded(self.new_scribble_layer, message))
        self.add_class_button.changed.connect(c.guarded(self.add_class, message))
        self.mode.native.currentIndexChanged.connect(self.update_legend)  # also when set to "choose…"

    def set_running(self, running: bool) -> None:
        self.new_layer.enabled = self.mode.enabled = self.add_class_button.enabled = not running

    def abandon(self) -> None:
        """The dock is closing: drop a guess still running."""
        self._guess_runner.abandon()

    # ------------------------------------------------------------------------------------------ the guess

    def pairing_changed(self) -> None:
        """The chosen annotation layers changed: guess 'Labels are' again, follow their painting, explain."""
        chosen = [lab for _, lab in self._pairs.pairs()]
        guessed_for = tuple(id(lab) for lab in chosen)
        plain = [lab for lab in chosen if roles.role(lab) != roles.CORRECTIONS]  # corrections: complete masks
        if plain and guessed_for != self._guessed_for:
            # guess only when the chosen annotation layers change, so a user's explicit choice sticks
            self._guess_mode(plain, guessed_for)
        self._guessed_for = guessed_for
        for lab in self._hint_layers:
            with contextlib.suppress(Exception):
                lab.events.paint.disconnect(self._hint_soon)
        self._hint_layers = chosen
        for lab in chosen:
            lab.events.paint.connect(self._hint_soon)
        self.update_legend()

    def _guess_mode(self, chosen: list, key: tuple[int, ...]) -> None:
        """Guess 'Labels are' from the chosen layers: at once on small ones, in a worker thread on large ones
        (a 2048 x 2048 plane takes 0.1-0.3 s, more on a busy machine), so choosing a layer never stalls napari.
        A late guess is dropped if the choice or the mode changed meanwhile (the user's choice sticks)."""
        arrays = [np.asarray(lab.data) for lab in chosen]
        self._guess_runner.abandon()
        self.guess_pending = None
        if sum(a.size for a in arrays) <= SYNC_GUESS_PIXELS:
            self._apply_guess(_guess_or_none(arrays))
            return
        mode_before = self.mode.value

        def job():
            yield _guess_or_none(arrays)

        def done(guess) -> None:
            if c.is_alive(self.native) and self._guessed_for == key and self.mode.value == mode_before:
                self._apply_guess(guess)
                self.update_hint()

        def finished() -> None:
            self.guess_pending = None

        self.guess_pending = (arrays, key, mode_before)
        self._guess_runner.start(job, on_yield=done, on_error=lambda e: None, on_finish=finished)

    def settle_guess(self) -> None:
        """Train clicked while a guess still runs: finish it here (once), so training uses the guessed mode."""
        if self.guess_pending is None:
            return
        arrays, key, mode_before = self.guess_pending
        self._guess_runner.abandon()
        self.guess_pending = None
        if self._guessed_for == key and self.mode.value == mode_before:
            self._apply_guess(_guess_or_none(arrays))

    def _apply_guess(self, guess) -> None:
        if guess is not None and guess.reason != NOTHING_PAINTED:
            self.mode.value = None if guess.mode == "ask" else guess.mode  # ask: left unset, with a hint
            self._guess_reason = guess.reason
        elif guess is not None:
            self._guess_reason = ""

    # ------------------------------------------------------------------------------------------ hint and legend

    def _hint_soon(self, *_) -> None:
        """After painting: the hint counts the painted pixels once the strokes pause (not per stroke)."""
        self._hint_timer.start()

    def update_hint(self, *_) -> None:
        """What the chosen mode means for the chosen layers, and what to do next; agrees with 'Labels are'."""
        if not c.is_alive(self.native):
            return
        chosen = [lab for _, lab in self._pairs.pairs()]
        plain = [lab for lab in chosen if roles.role(lab) != roles.CORRECTIONS]
        if plain:
            text = annotation_hint(self.mode.value, [np.asarray(lab.data) for lab in plain], self._guess_reason)
        else:
            text = "" if chosen else "Tick an image and choose its annotation layer, or add one:"
        corrected = [lab.name for lab in chosen if roles.role(lab) == roles.CORRECTIONS]
        if corrected:
            text += (
                f" {', '.join(corrected)}: a corrected prediction, trained as complete masks where reviewed (the "
                "objects edited, the planes marked reviewed in the Predict dock), whatever 'Labels are' says."
            )
        self.hint.value = "<small>" + html.escape(text) + "</small>"

    def update_legend(self, *_) -> None:
        self.update_hint()
        layer = self._pairs.annotation_layer()
        mode = self.mode.value
        if layer is not None and roles.role(layer) == roles.CORRECTIONS:
            items = ["0 = background, each other value = one object (where reviewed)"]
        elif mode is None:
            items = ["choose what the labels are above"]
        else:
            items = [
                f"{self._swatch(layer, v)} {html.escape(text)}" if v else html.escape(text)
                for v, text in legend_items(mode, self._n_labels_of(layer), self._multiclass())
            ]
        name = html.escape(layer.name) if layer is not None else "the annotation layer"
        self.legend.value = f"<small><b>{name}</b>: " + " &nbsp; ".join(items) + "</small>"

    def _n_labels_of(self, layer) -> int:
        """The highest label the legend shows: offered scribble classes, or the layer's highest class id."""
        if self.mode.value == "sparse":
            return self._n_labels.get(id(layer), max(2, _max_label(layer))) if layer is not None else 2
        if not self._multiclass():
            return 1  # binary or instance masks: the legend names no class, so no need to scan the layer
        return max(1, _max_label(layer)) if layer is not None else 1

    @staticmethod
    def _swatch(layer, value: int) -> str:
        color = colors.hex_color(layer, value) if layer is not None else scribble_color(value)
        return f"<span style='color:{color}'>&#9632;</span>"

    # ------------------------------------------------------------------------------------------ scribbles

    def _target_image(self):
        image = self._pairs.first_ticked_image()
        if image is not None:
            return image
        from napari.layers import Image

        active = self._viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        images = c.image_layers(self._viewer)
        if not images:
            raise InputError("Open an image first (File > Open, or File > Open Sample > U-Net), then add scribbles.")
        return images[0]

    def new_scribble_layer(self):
        """Add an empty scribble layer over the image being trained on, in paint mode with label 2."""
        image = self._target_image()
        shape = c.layer_spatial_shape(image)
        layer = self._viewer.add_labels(
            np.zeros(shape, np.uint8),
            name=c.unique_name(self._viewer, f"{image.name} strokes"),
            scale=image.scale,
            translate=image.translate,
            colormap=colors.scribble_colormap(SCRIBBLE_FIRST_CLASS),
            metadata={roles.ROLE_KEY: roles.SCRIBBLES},
            opacity=0.9,
        )
        self._n_labels[id(layer)] = SCRIBBLE_FIRST_CLASS
        _set_features(layer, SCRIBBLE_FIRST_CLASS)
        layer.brush_size = max(3, min(shape[-2:]) // 100)
        layer.selected_label = SCRIBBLE_FIRST_CLASS
        layer.mode = "paint"
        self._viewer.layers.selection.active = layer
        self._pairs.choose(image, layer)
        self.mode.value = "sparse"
        self.update_legend()
        c.report_info(f"{PAINT_FIRST.capitalize()} (press 1 or 2 to switch label, P to paint).")
        return layer

    def add_class(self) -> None:
        """Offer one more scribble label (a new class) and select it for painting."""
        layer = self._pairs.annotation_layer()
        if layer is None:
            raise InputError("Choose or add an annotation layer first ('New scribble layer').")
        if self.mode.value == "sparse":
            n = self._n_labels.get(id(layer), max(2, _max_label(layer))) + 1
            self._n_labels[id(layer)] = n
            if roles.role(layer) == roles.SCRIBBLES:
                layer.colormap = colors.scribble_colormap(n)
                _set_features(layer, n)
            layer.selected_label = n
        else:  # complete masks: classes are 1..max, the next one is max + 1
            layer.selected_label = _max_label(layer) + 1
        self._viewer.layers.selection.active = layer
        self.update_legend()


def _guess_or_none(arrays):
    """The guess, or None where it fails (an odd array): the mode is then left as it is."""
    try:
        return label_guess(arrays)
    except Exception:
        return None


def _max_label(layer) -> int:
    if layer is None:
        return 0
    data = layer.data
    return int(data.max()) if np.size(data) else 0


def _set_features(layer, n_labels: int) -> None:
    """Name every scribble value in the layer's features, shown in the status bar under the cursor."""
    import pandas as pd

    meanings = label_meanings("sparse", n_labels)
    try:
        layer.features = pd.DataFrame({"index": list(meanings), "meaning": list(meanings.values())})
    except Exception:  # features are a nicety
        c.log.debug("could not set features", exc_info=True)
