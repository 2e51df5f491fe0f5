"""Train dock widget: pick images and their annotations, train in the background with a live preview, save."""

from __future__ import annotations

import contextlib
import copy
import functools
import html
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QTimer

from ..errors import InputError
from . import _colors as colors
from . import _common as c
from ._label_images import picture_images
from ._pairing import PairingMemory
from ._plot import CurvePlot
from ._state import describe_model, get_store
from ._train_job import Inbox, Notice, Preview, Round, Tick, View, train_rounds
from ._worker import WorkerRunner

if TYPE_CHECKING:
    import napari.viewer

NONE = "—"
# up to this many annotation pixels 'Labels are' is guessed on the GUI thread (< 20 ms); larger, in a worker
SYNC_GUESS_PIXELS = 1024 * 1024
MAX_MIRRORED_PLANE = 4096 * 4096  # up to this plane size the preview layer holds a whole plane (written in place)
MODES = [("choose…", None), ("scribbles (sparse)", "sparse"), ("complete masks (dense)", "dense")]

MODE_TIP = (
    "Scribbles (sparse): 0 = not annotated (ignored), 1 = background, 2 = class 1 (foreground), 3 = class 2, ...\n"
    "Complete masks (dense): 0 = background, any value > 0 = foreground (instance masks work as they are),\n"
    "or the class id with 'dense labels are class ids' (advanced)."
)


_warm_up_started = False
_warm_up_cancel = threading.Event()


def _warm_up_in_background() -> None:
    """Once per process, pay torch's first-step costs (imports, oneDNN kernels: seconds) in a background
    thread while the user looks and paints, so that Train shows its first preview sooner.

    The thread is not a daemon: a daemon thread still inside torch when Python shuts down aborts the process
    ("terminate called without an active exception"). Quitting the application cancels it between phases,
    and Python's shutdown waits for the phase under way (well under a second).
    """
    global _warm_up_started
    if _warm_up_started or os.environ.get("NAPARI_UNET_NO_WARMUP"):
        return
    _warm_up_started = True
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(_warm_up_cancel.set)

    def run() -> None:
        try:
            if _warm_up_cancel.is_set():
                return
            from ..inference import warm_up

            warm_up(should_stop=_warm_up_cancel.is_set)
        except Exception:  # only an optimization: training works the same without it
            logging.getLogger("napari_unet").debug("warm-up failed", exc_info=True)

    threading.Thread(target=run, name="napari-unet-warm-up", daemon=False).start()


class _PairRow(Container):
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


class TrainWidget(Container):
    """Train a U-Net on the opened images and their annotation layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = c.unwrap_viewer(viewer)
        self._store = get_store(self._viewer)
        self._runner = WorkerRunner()
        self._inbox: Inbox | None = None
        self._run_pairs: list[tuple] = []  # (image layer, labels layer) of the running job
        self._run_started = 0.0
        self._strokes_dirty = False
        self._preview_layer = None
        self._preview_image = None  # the image layer the preview layer belongs to
        self._preview_off_this_run = False
        self._preview_note = ""  # why there is no preview (e.g. 3D view), shown under the progress
        self._rows: list[_PairRow] = []
        self._n_labels: dict[int, int] = {}  # id(layer) -> highest scribble label offered in the legend
        # every visible change costs a repaint of the window (~20 ms under software OpenGL): progress, status
        # and plot change together, at most twice a second (and at each epoch end)
        self._ui_throttle = c.Throttle(0.5)
        self._guessed_for: tuple[int, ...] = ()
        self._guess_runner = WorkerRunner()  # guesses 'Labels are' from large layers off the GUI thread
        self._guess_pending: tuple | None = None
        self._guess_reason = ""  # why the mode was guessed (or why it could not be)
        self._memory = PairingMemory()  # the pairings the user chose, kept across rebuilds of the rows
        self._refreshing = False
        self._hint_layers: list = []  # annotation layers whose painting updates the hint
        self._closing = False

        # ---- data
        self._pairs = Container(labels=False, layout="vertical")
        self._pairs.margins = (0, 0, 0, 0)
        self._mode = ComboBox(choices=MODES, value="sparse", label="Labels are", tooltip=MODE_TIP)
        self._mode_hint = c.wrapping_label()
        self._new_layer = PushButton(
            text="New scribble layer",
            tooltip="Add an empty Labels layer over the image, ready to paint: 1 = background, 2 = foreground",
        )
        self._add_class = PushButton(text="+ class", tooltip="Offer one more class to paint (next label value)")
        self._legend = c.wrapping_label()
        self._legend.native.setToolTip(MODE_TIP)

        # ---- model
        self._model_info = c.wrapping_label()
        self._finetune = CheckBox(
            value=False,
            text="Continue from the model in memory (fine-tune)",
            tooltip="Train the model in memory further on these annotations instead of starting a new one.",
        )
        self._load = PushButton(text="Load model…")
        self._save = PushButton(text="Save model…")
        self._export = PushButton(
            text="Export…",
            tooltip="Write the model as a bioimage.io package (.zip) for Fiji/deepImageJ, ilastik, QuPath or BiaPy; "
            "its test image is cut from the first training image.",
        )
        self._save_annotations = CheckBox(
            value=True,
            text="Also save the annotation layers next to the model",
            tooltip="Writes <model>.<layer>.tif for each annotation layer, so strokes survive a crash.",
        )

        # ---- advanced
        self._time_limit = FloatSpinBox(
            value=120,
            min=0,
            max=86400,
            step=10,
            label="Time budget (s)",
            tooltip="At most this many seconds from the click on Train, preparation included; 0 = no time limit "
            "(use epochs)",
        )
        self._until_plateau = CheckBox(
            value=True,
            text="Stop when it stops improving",
            tooltip="End sooner than the time budget once the held-out Dice (or the loss) stops improving",
        )
        self._epochs = SpinBox(value=0, min=0, max=100000, label="Epochs", tooltip="0 = train until the time is up")
        self._steps_per_epoch = SpinBox(value=20, min=1, max=10000, label="Steps per epoch")
        self._filters = SpinBox(value=16, min=2, max=256, label="Filters", tooltip="Width of the first U-Net level")
        self._depth = SpinBox(value=4, min=1, max=7, label="Depth", tooltip="Number of down-sampling levels")
        self._patch = SpinBox(value=128, min=16, max=2048, step=16, label="Patch size", tooltip="Training patch side")
        self._batch = SpinBox(value=8, min=1, max=256, label="Batch size")
        self._lr = FloatSpinBox(value=0.002, min=1e-5, max=1.0, step=0.0005, label="Learning rate")
        self._lr.native.setDecimals(5)
        self._augment = CheckBox(value=True, text="Augment (flips, rotations, elastic, intensity)")
        self._multiclass = CheckBox(
            value=False, text="Dense labels are class ids", tooltip="Complete masks where value k means class k"
        )
        self._preview = CheckBox(
            value=True,
            text="Live preview",
            tooltip="Every few seconds, predict the visible region into a preview layer while training",
        )
        self._preview_every = FloatSpinBox(value=3, min=1, max=600, step=1, label="Preview every (s)")
        self._advanced = Container(
            widgets=[
                self._time_limit,
                self._until_plateau,
                self._epochs,
                self._steps_per_epoch,
                self._filters,
                self._depth,
                self._patch,
                self._batch,
                self._lr,
                self._augment,
                self._multiclass,
                self._preview,
                self._preview_every,
            ]
        )
        from superqt import QCollapsible

        self._collapsible = QCollapsible("Advanced settings")
        self._collapsible.addWidget(self._advanced.native)
        self._collapsible.layout().setContentsMargins(0, 0, 0, 0)

        # ---- run
        self._train = PushButton(text="Train")
        self._stop = PushButton(text="Stop", enabled=False)
        self._progress = ProgressBar(value=0, min=0, max=1000, label="")
        self._progress.native.setTextVisible(True)
        self._progress.native.setFormat("idle")
        self._plot = CurvePlot()
        self._status = c.wrapping_label()
        self._message = c.wrapping_label()  # the last error or warning, whole, until the next run

        self._body = c.scrolling_body(self)  # fits a small screen: scrolls instead of growing the window
        self._body.extend(
            [
                c.heading("Images and annotations"),
                self._pairs,
                c.form(self._mode),
                self._mode_hint,
                Container(widgets=[self._new_layer, self._add_class], layout="horizontal", labels=False),
                self._legend,
                c.heading("Model"),
                self._model_info,
                self._finetune,
                Container(widgets=[self._load, self._save, self._export], layout="horizontal", labels=False),
                self._save_annotations,
                c.wrap_qt(self._collapsible),
                Container(widgets=[self._train, self._stop], layout="horizontal", labels=False),
                self._progress,
                c.wrap_qt(self._plot),
                self._status,
                self._message,
            ]
        )
        for sub in self._body:
            if isinstance(sub, Container):
                sub.margins = (0, 0, 0, 0)
        self._body.native.layout().addStretch(1)

        # ---- connections
        self._new_layer.changed.connect(c.guarded(self.new_scribble_layer, self._message))
        self._add_class.changed.connect(c.guarded(self.add_class, self._message))
        self._load.changed.connect(c.guarded(lambda: self.load_model(), self._message))
        self._save.changed.connect(c.guarded(lambda: self.save_model(), self._message))
        self._export.changed.connect(c.guarded(lambda: self.export_model(), self._message))
        self._train.changed.connect(c.guarded(self.start_training, self._message))
        self._stop.changed.connect(self.stop_training)
        self._mode.native.currentIndexChanged.connect(self._update_legend)  # also when set to "choose…"
        self._multiclass.changed.connect(self._update_legend)
        self._preview.changed.connect(self._on_preview_toggled)
        self._preview_every.changed.connect(self._on_preview_toggled)
        self._store.changed.connect(self._update_model_info)
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.reordered.connect(self._on_layers_changed)
        for layer in layers:  # renamed layers: the rows show the new names
            layer.events.name.connect(self._on_layer_renamed)
        self.native.destroyed.connect(self._on_destroyed)
        c.tabify_later(self)  # docked beside another napari-unet dock: one tab each, not stacked

        self._hint_timer = QTimer()
        self._hint_timer.setSingleShot(True)
        self._hint_timer.setInterval(300)
        self._hint_timer.timeout.connect(self._update_hint)

        self._timer = QTimer()
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._on_timer)

        self.refresh_pairs()
        self._update_model_info()
        _warm_up_in_background()

    # ------------------------------------------------------------------------------------------ pairs

    def refresh_pairs(self) -> None:
        """Rebuild the image / annotation rows from the viewer's layers, keeping the user's choices."""
        if self._runner.running:
            return
        labels = c.labels_layers(self._viewer, include_plugin=False)
        selected = list(self._viewer.layers.selection)
        self._pairs.clear()
        self._rows = []
        self._refreshing = True
        try:
            for image in picture_images(self._viewer):  # not masks opened as images
                shape = c.layer_spatial_shape(image)
                fitting = [lay for lay in labels if tuple(lay.data.shape) == shape]
                use, chosen = self._memory.choice(image, fitting, selected)
                row = _PairRow(image, fitting, chosen)
                row.use.value = use
                # the Qt signal: magicgui's `changed` stays silent when the value becomes None ("—")
                row.annotations.native.currentIndexChanged.connect(functools.partial(self._on_row_changed, row))
                row.use.changed.connect(functools.partial(self._on_row_changed, row))
                self._rows.append(row)
                self._pairs.append(row)
            if not self._rows:
                self._pairs.append(Label(value="<i>Open an image first (File > Open Sample > U-Net).</i>"))
        finally:
            self._refreshing = False
        self._on_pairing_changed()

    def _on_row_changed(self, row: _PairRow, *_) -> None:
        if not self._refreshing:  # the user's choice (or a script's): kept across rebuilds
            self._memory.remember(row.image_layer, row.use.value, row.annotations.value)
        self._on_pairing_changed()

    def pairs(self) -> list[tuple]:
        """The (image layer, labels layer) pairs ticked for training."""
        return [
            (r.image_layer, r.annotations.value) for r in self._rows if r.use.value and r.annotations.value is not None
        ]

    def set_pairs(self, pairs: list[tuple]) -> None:
        """Tick exactly these (image, labels) pairs (for scripts and tests)."""
        wanted = {id(img): lab for img, lab in pairs}
        for r in self._rows:
            if id(r.image_layer) in wanted:  # the layer first: a ticked row without one is unticked
                r.annotations.value = wanted[id(r.image_layer)]
            r.use.value = id(r.image_layer) in wanted

    def _on_pairing_changed(self, *_) -> None:
        for r in self._rows:
            if r.annotations.value is None and r.use.value:
                r.use.value = False
        chosen = [lab for _, lab in self.pairs()]
        guessed_for = tuple(id(lab) for lab in chosen)
        if chosen and guessed_for != self._guessed_for:
            # guess only when the chosen annotation layers change, so a user's explicit choice sticks
            self._guess_mode(chosen, guessed_for)
        self._guessed_for = guessed_for
        for lab in self._hint_layers:
            with contextlib.suppress(Exception):
                lab.events.paint.disconnect(self._hint_soon)
        self._hint_layers = chosen
        for lab in chosen:
            lab.events.paint.connect(self._hint_soon)
        self._update_legend()

    def _guess_mode(self, chosen: list, key: tuple[int, ...]) -> None:
        """Guess 'Labels are' from the chosen layers: at once on small ones, in a worker thread on large ones
        (a 2048 x 2048 plane takes 0.1-0.3 s, more on a busy machine), so choosing a layer never stalls napari.
        A late guess is dropped if the choice or the mode changed meanwhile (the user's choice sticks)."""
        from ..labels import label_guess

        arrays = [np.asarray(lab.data) for lab in chosen]
        self._guess_runner.abandon()
        self._guess_pending = None
        if sum(a.size for a in arrays) <= SYNC_GUESS_PIXELS:
            self._apply_guess(_guess_or_none(label_guess, arrays))
            return
        mode_before = self._mode.value

        def job():
            yield _guess_or_none(label_guess, arrays)

        def done(guess) -> None:
            if c.is_alive(self.native) and self._guessed_for == key and self._mode.value == mode_before:
                self._apply_guess(guess)
                self._update_hint()

        def finished() -> None:
            self._guess_pending = None

        self._guess_pending = (arrays, key, mode_before)
        self._guess_runner.start(job, on_yield=done, on_error=lambda e: None, on_finish=finished)

    def _settle_guess(self) -> None:
        """Train clicked while a guess still runs: finish it here (once), so training uses the guessed mode."""
        if self._guess_pending is None:
            return
        from ..labels import label_guess

        arrays, key, mode_before = self._guess_pending
        self._guess_runner.abandon()
        self._guess_pending = None
        if self._guessed_for == key and self._mode.value == mode_before:
            self._apply_guess(_guess_or_none(label_guess, arrays))

    def _apply_guess(self, guess) -> None:
        if guess is not None and guess.reason != "nothing is painted yet":
            self._mode.value = None if guess.mode == "ask" else guess.mode  # ask: left unset, with a hint
            self._guess_reason = guess.reason
        elif guess is not None:
            self._guess_reason = ""

    def _hint_soon(self, *_) -> None:
        """After painting: the hint counts the painted pixels once the strokes pause (not per stroke)."""
        self._hint_timer.start()

    def _update_hint(self, *_) -> None:
        """What the chosen mode means for the chosen layers, and what to do next; agrees with 'Labels are'."""
        if not c.is_alive(self.native):
            return
        self._mode_hint.value = "<small>" + html.escape(self._hint_text()) + "</small>"

    def _hint_text(self) -> str:
        chosen = [lab for _, lab in self.pairs()]
        if not chosen:
            return "Tick an image and choose its annotation layer, or add one:"
        mode = self._mode.value
        arrays = [np.asarray(lab.data) for lab in chosen]
        if mode is None:
            why = f" ({self._guess_reason})" if self._guess_reason else ""
            return (
                f"Cannot tell whether these are scribbles or complete masks{why}: choose in 'Labels are' "
                "(scribbles: 1 = background, 2.. = classes; complete masks: 0 = background)."
            )
        if mode == "sparse":
            background = sum(int(np.count_nonzero(a == 1)) for a in arrays)
            objects = sum(int(np.count_nonzero(a >= 2)) for a in arrays)
            if not background and not objects:
                return "Scribbles: paint label 2 on objects and label 1 on background (keys 1 / 2), then Train."
            if not objects:
                return f"Scribbles: {background:,} background pixels; now paint label 2 on objects, then Train."
            if not background:
                return f"Scribbles: {objects:,} object pixels; now paint label 1 on background, then Train."
            return (
                f"Scribbles: {background:,} background and {objects:,} object pixels painted; Train, "
                "and add strokes where the preview is wrong."
            )
        planes = [
            (int(sum(bool(p.any()) for p in a.reshape(-1, *a.shape[-2:]))), a.size // max(a.shape[-1] * a.shape[-2], 1))
            for a in arrays
            if a.ndim >= 2
        ]
        used, total = sum(p for p, _ in planes), sum(t for _, t in planes)
        if not used:
            return "Complete masks: paint every object (0 = background), then Train."
        stack = f" on {used} of {total} planes (only planes with a label are used)" if total > len(arrays) else ""
        foreground = sum(int(np.count_nonzero(a)) for a in arrays)
        share = 100 * foreground / max(sum(a.size for a in arrays), 1)
        return f"Complete masks{stack}: {share:.1f}% of the pixels are objects, the rest background; Train."

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None) if event is not None else None
        if layer is not None and getattr(event, "type", "") == "inserted":
            layer.events.name.connect(self._on_layer_renamed)
        if c.role(layer) in c.OUTPUT_ROLES:
            return  # previews, predictions and polygons are never training inputs: no need to rebuild the rows
        self.refresh_pairs()

    def _on_layer_renamed(self, event=None) -> None:
        if self._alive() and c.role(getattr(event, "source", None)) not in c.OUTPUT_ROLES:
            self.refresh_pairs()

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if self._runner.running and self._inbox is not None:
            inputs = {id(x) for pair in self._run_pairs for x in pair}
            if id(layer) in inputs:
                self._inbox.stop()
                self._status.value = f"Stopping: the layer '{layer.name}' was removed."
                QTimer.singleShot(0, lambda name=layer.name: self._notice_removed(name))
            elif layer is self._preview_layer:
                self._preview_off_this_run = True
                self._inbox.preview = False
        if layer is self._preview_layer:
            self._preview_layer = None
        with contextlib.suppress(Exception):
            layer.events.name.disconnect(self._on_layer_renamed)
        self._memory.forget(layer)
        if c.role(layer) not in c.OUTPUT_ROLES:
            self.refresh_pairs()

    def _report(self, kind: str, message: str) -> None:
        c.report(self._message, kind, message)

    def _notice_removed(self, name: str) -> None:
        if len(self._viewer.layers):  # not when the whole viewer is closing
            self._report(
                "warning", f"Training stopped because the layer '{name}' was removed; the model so far is kept."
            )

    # ------------------------------------------------------------------------------------------ scribbles

    def _target_image(self):
        for r in self._rows:
            if r.use.value:
                return r.image_layer
        active = self._viewer.layers.selection.active
        from napari.layers import Image

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
        name = c.unique_name(self._viewer, f"{image.name} strokes")
        layer = self._viewer.add_labels(
            np.zeros(shape, np.uint8),
            name=name,
            scale=image.scale,
            translate=image.translate,
            colormap=colors.scribble_colormap(2),
            metadata={c.ROLE_KEY: c.SCRIBBLES},
            opacity=0.9,
        )
        self._n_labels[id(layer)] = 2
        _set_features(layer, 2)
        layer.brush_size = max(3, min(shape[-2:]) // 100)
        layer.selected_label = 2
        layer.mode = "paint"
        self._viewer.layers.selection.active = layer
        for r in self._rows:
            if r.image_layer is image:
                r.annotations.value = layer
                r.use.value = True
        self._mode.value = "sparse"
        self._update_legend()
        c.report_info("Paint label 2 on objects and label 1 on background (press 1 or 2 to switch label, P to paint).")
        return layer

    def add_class(self) -> None:
        """Offer one more scribble label (a new class) and select it for painting."""
        layer = self._legend_layer()
        if layer is None:
            raise InputError("Choose or add an annotation layer first ('New scribble layer').")
        if self._mode.value == "sparse":
            n = self._n_labels.get(id(layer), max(2, _max_label(layer))) + 1
            self._n_labels[id(layer)] = n
            if c.role(layer) == c.SCRIBBLES:
                layer.colormap = colors.scribble_colormap(n)
                _set_features(layer, n)
            layer.selected_label = n
        else:  # complete masks: classes are 1..max, the next one is max + 1
            layer.selected_label = _max_label(layer) + 1
        self._viewer.layers.selection.active = layer
        self._update_legend()

    def _legend_layer(self):
        pairs = self.pairs()
        if pairs:
            return pairs[0][1]
        for r in self._rows:
            if r.annotations.value is not None:
                return r.annotations.value
        return None

    def _update_legend(self, *_) -> None:
        self._update_hint()
        layer = self._legend_layer()

        def swatch(value: int) -> str:
            color = colors.hex_color(layer, value) if layer is not None else colors.scribble_color(value)
            return f"<span style='color:{color}'>&#9632;</span>"

        if self._mode.value == "sparse":
            n = self._n_labels.get(id(layer), max(2, _max_label(layer))) if layer is not None else 2
            items = [f"{swatch(1)} 1 background"]
            for v in range(2, n + 1):
                items.append(f"{swatch(v)} {v} " + ("foreground" if n == 2 else f"class {v - 1}"))
            items.append("(0 = not annotated)")
        elif self._mode.value is None:
            items = ["choose what the labels are above"]
        elif self._multiclass.value:
            n = max(1, _max_label(layer)) if layer is not None else 1
            items = ["0 background"] + [f"{swatch(v)} {v} class {v}" for v in range(1, n + 1)]
        else:
            items = ["0 background", "any value > 0 foreground (instance ids are fine)"]
        name = html.escape(layer.name) if layer is not None else "the annotation layer"
        self._legend.value = f"<small><b>{name}</b>: " + " &nbsp; ".join(items) + "</small>"

    # ------------------------------------------------------------------------------------------ settings

    def config(self):
        """The core ``TrainConfig`` from the widgets (raises ``InputError`` for impossible values)."""
        from ..training import TrainConfig

        if self._mode.value is None:
            raise InputError(
                "Choose what the labels are in 'Labels are': scribbles (1 = background, 2.. = classes, "
                "0 = not annotated) or complete masks (0 = background, > 0 = objects or class ids)."
            )
        return TrainConfig(
            time_limit=float(self._time_limit.value) or None,
            until_plateau=bool(self._until_plateau.value),
            epochs=int(self._epochs.value) or None,
            steps_per_epoch=int(self._steps_per_epoch.value),
            filters=int(self._filters.value),
            depth=int(self._depth.value),
            patch_size=int(self._patch.value),
            batch_size=int(self._batch.value),
            learning_rate=float(self._lr.value),
            augment=bool(self._augment.value),
            mode=self._mode.value,
            multiclass=bool(self._multiclass.value),
        )

    def set_settings(self, **values) -> None:
        """Set advanced settings by name: time_limit, until_plateau, epochs, steps_per_epoch, filters, depth, patch,
        batch, lr, preview, preview_every, augment, multiclass."""
        for name, value in values.items():
            widget = getattr(self, f"_{name}", None)
            if widget is None:
                raise InputError(f"Unknown setting {name!r}.")
            widget.value = value

    # ------------------------------------------------------------------------------------------ training

    @property
    def running(self) -> bool:
        return self._runner.running

    def start_training(self) -> None:
        """Check the inputs, then train in a background thread (continuing from the model in memory if asked)."""
        if self._runner.running:
            return
        self._settle_guess()
        if not c.image_layers(self._viewer):
            raise InputError("There is no image layer: open an image first (File > Open Sample > U-Net).")
        pairs = self.pairs()
        if not pairs:
            raise InputError(
                "No annotations chosen: tick an image and pick its Labels layer, or click 'New scribble layer' "
                "and paint label 1 on background and label 2 on objects."
            )
        for image, labels in pairs:
            if tuple(labels.data.shape) != c.layer_spatial_shape(image):
                raise InputError(
                    f"'{labels.name}' has shape {tuple(labels.data.shape)} but '{image.name}' has "
                    f"{c.layer_spatial_shape(image)}: annotations must cover the image pixel for pixel."
                )
            if not np.any(labels.data):
                raise InputError(
                    f"Nothing is annotated in '{labels.name}': paint background (label 1) and objects (label 2) first."
                )
        config = self.config()
        model = None
        if self._finetune.value:
            if self._store.model is None:
                raise InputError("There is no model in memory to continue from: untick 'Continue from …'.")
            model = copy.deepcopy(self._store.model)
        rgb = [bool(getattr(img, "rgb", False)) for img, _ in pairs]
        if any(rgb):
            from dataclasses import replace

            if not all(rgb):
                raise InputError("Train on RGB images or on single-channel images, not both at once.")
            config = replace(config, channel_axis=-1)
        images = [c.layer_array(img) for img, _ in pairs]
        labels = [np.array(lab.data, copy=True) for _, lab in pairs]  # the job never sees the live layers

        self._run_pairs = pairs
        self._inbox = Inbox(preview=bool(self._preview.value), preview_interval=float(self._preview_every.value))
        self._preview_off_this_run = False
        self._preview_note = ""
        self._strokes_dirty = False
        self._plot.clear()
        self._run_started = time.perf_counter()
        for _, lab in pairs:
            lab.events.paint.connect(self._on_paint)
            lab.events.data.connect(self._on_paint)
        self._post_view()
        if self._inbox.preview:
            self._prepare_preview_layer()
        self._set_running(True)
        self._message.value = ""
        self._status.value = "Preparing the training data…"
        self._progress.native.setFormat("starting…")
        self._runner.start(
            train_rounds,
            images,
            labels,
            config,
            model,
            self._inbox,
            rgb,
            self._pseudo_cache(),
            on_yield=self._on_event,
            on_error=self._on_error,
            on_finish=self._on_finish,
        )
        self._timer.start()

    def _pseudo_cache(self):
        """Pseudo-labelling work (pixel features, finished planes) kept across Train clicks of this widget."""
        if getattr(self, "_pseudo", None) is None:
            from ..training.pseudo import PseudoCache

            self._pseudo = PseudoCache()
        return self._pseudo

    def stop_training(self) -> None:
        """Stop after the current step; the model trained so far is kept."""
        if self._inbox is not None and self._runner.running:
            self._inbox.stop()
            self._stop.enabled = False
            self._status.value = "Stopping…"
            self._progress.native.setFormat("stopping…")

    def _set_running(self, running: bool) -> None:
        self._train.enabled = not running
        self._stop.enabled = running
        for w in (self._load, self._new_layer, self._pairs, self._mode, self._finetune):
            w.enabled = not running
        for w in self._advanced:  # every training setting; the preview settings apply while it runs
            if w not in (self._preview, self._preview_every):
                w.enabled = not running

    def _on_paint(self, *_) -> None:
        self._strokes_dirty = True

    def _on_timer(self) -> None:
        """Every half second while training: tell the job what is visible and hand over new strokes."""
        if self._inbox is None or not self._runner.running:
            return
        self._post_view()
        if self._strokes_dirty:
            self._strokes_dirty = False
            self._inbox.post_labels([np.array(lab.data, copy=True) for _, lab in self._run_pairs])

    def _on_preview_toggled(self, *_) -> None:
        if self._inbox is not None:
            self._inbox.preview = bool(self._preview.value) and not self._preview_off_this_run
            self._inbox.preview_interval = float(self._preview_every.value)

    def _post_view(self) -> None:
        if self._inbox is not None:
            try:
                view = self._current_view()
            except Exception:  # the view is a nicety; never let it break training
                c.log.debug("no preview view", exc_info=True)
                view, self._preview_note = None, "No live preview: the visible region could not be determined."
            self._inbox.post_view(view)

    def _current_view(self) -> View | None:
        """The visible box of the preview image, in its data coordinates, or None (e.g. in 3D view).

        Sets ``_preview_note`` to the reason when there is no preview, for the status line.
        """
        viewer = self._viewer
        self._preview_note = ""
        if not self._run_pairs:
            return None
        if viewer.dims.ndisplay != 2:
            self._preview_note = "No live preview in 3D view: switch to 2D view to see it."
            return None
        index = 0
        active = viewer.layers.selection.active
        for k, pair in enumerate(self._run_pairs):
            if any(active is x for x in pair):
                index = k
        image = self._run_pairs[index][0]
        shape = c.layer_spatial_shape(image)
        nd = len(shape)
        # the preview predicts planes of the last two axes; shown transposed (rows and columns swapped) is fine
        if sorted(viewer.dims.displayed) != [viewer.dims.ndim - 2, viewer.dims.ndim - 1]:
            self._preview_note = (
                "No live preview: the view shows a cut through the stack (other axes than the last two); "
                "the preview predicts image planes. Reset the axis order (Transpose / Roll buttons) to see it."
            )
            return None
        point = np.asarray(image.world_to_data(viewer.dims.point), float)[-nd:]
        plane = tuple(int(np.clip(round(x), 0, s - 1)) for x, s in zip(point[:-2], shape[:-2], strict=True))
        corners = np.asarray(image.corner_pixels)
        (r0, c0), (r1, c1) = corners[0, -2:], corners[1, -2:]
        h, w = shape[-2:]
        if r1 - r0 < 8 or c1 - c0 < 8:  # not drawn yet: the whole plane
            r0, c0, r1, c1 = 0, 0, h, w
        r0, c0 = max(0, int(r0) - 8), max(0, int(c0) - 8)
        r1, c1 = min(h, int(r1) + 9), min(w, int(c1) + 9)
        # at least 64 px (or the image) so the network sees some context
        r0, r1 = _widen(r0, r1, h, 64)
        c0, c1 = _widen(c0, c1, w, 64)
        return View(index, plane, (r0, r1), (c0, c1))

    def _alive(self) -> bool:
        return not self._closing and c.is_alive(self.native)

    def _on_event(self, event) -> None:
        if not self._alive():
            return
        from ..training import Done, Preparing

        if isinstance(event, Preparing):
            text = f"pseudo-labels {event.done}/{event.total}"
            c.set_progress(self._progress, 0, text)
            self._status.value = (
                f"Learning from the strokes with a quick forest: tile {event.done} of {event.total} "
                f"({c.format_seconds(event.elapsed)}); its result is the first preview."
            )
        elif isinstance(event, Tick):
            self._plot.add_loss(event.step, event.loss)
            if event.epoch:
                self._plot.add_dice(event.step, event.val_dice)
            if self._ui_throttle.ready(force=event.epoch):
                self._show_progress(event)
                self._plot.update()
        elif isinstance(event, Preview):
            self._show_preview(event)
        elif isinstance(event, Round):
            if event.number > 1:
                self._plot.add_round(event.step)
                c.report_info(f"Training took in the new strokes ({event.annotated} annotated pixels).")
            what = "scribbles" if event.mode == "sparse" else "complete masks"
            self._status.value = (
                f"Round {event.number}: {event.annotated:,} annotated pixels ({what}), "
                f"{event.n_classes} class{'es' if event.n_classes > 1 else ''}."
            )
        elif isinstance(event, Notice):
            self._report("warning", event.message)
        elif isinstance(event, Done):
            self._on_done(event)

    def _show_progress(self, tick: Tick) -> None:
        cfg_time = float(self._time_limit.value) or None
        if cfg_time:
            left = max(0.0, cfg_time - tick.elapsed)
        elif tick.fraction > 0:
            left = tick.elapsed * (1 - tick.fraction) / tick.fraction
        else:
            left = float("nan")
        left_text = "at most " + c.format_seconds(left) + " left" if np.isfinite(left) else ""
        c.set_progress(self._progress, int(1000 * tick.fraction), f"{100 * tick.fraction:.0f}%  ·  {left_text}")
        dice = next((v for _, v in reversed(self._plot.dice)), None)
        dice_text = f" · val Dice {dice:.3f}" if dice is not None else ""
        note = f"<br><small>{html.escape(self._preview_note)}</small>" if self._preview_note else ""
        text = f"Step {tick.step} · loss {tick.loss:.3f}{dice_text} · {c.format_seconds(tick.elapsed)}{note}"
        if text != self._status.value:
            self._status.value = text

    def _preview_plane_shape(self, image) -> tuple[int, ...] | None:
        """Shape of the preview layer (one plane of the image), or None if a plane is too large to mirror."""
        shape = c.layer_spatial_shape(image)
        if int(np.prod(shape[-2:])) > MAX_MIRRORED_PLANE:
            return None
        return (1,) * (len(shape) - 2) + tuple(shape[-2:])

    def _prepare_preview_layer(self) -> None:
        """Add the (empty) preview layer when Train is clicked, so no layer is created while training runs.

        Adding a layer costs napari a few hundred ms on the GUI thread (visuals, layer controls); during
        training the preview then only writes the predicted box into this layer and refreshes it.
        """
        image = self._run_pairs[0][0]
        layer = self._preview_layer
        if layer is not None and layer in self._viewer.layers and self._preview_image is image:
            return
        shape = self._preview_plane_shape(image)
        if shape is None:
            return  # huge planes: the layer is created with the first preview, sized to the predicted box
        n_classes = self._store.model.n_classes if self._finetune.value and self._store.model is not None else 1
        self._add_preview_layer(image, np.zeros(shape, np.uint8), image.translate, n_classes)

    def _add_preview_layer(self, image, data: np.ndarray, translate, n_classes: int):
        layer = self._viewer.add_labels(
            data,
            name=c.unique_name(self._viewer, f"{image.name} preview"),
            scale=image.scale,
            translate=translate,
            opacity=0.45,
            colormap=colors.class_colormap(max(n_classes, 1)),
            metadata={c.ROLE_KEY: c.PREVIEW},
        )
        layer.editable = False
        self._preview_layer = layer
        self._preview_image = image
        # keep the user's annotation layer on top and active, so painting goes on undisturbed
        for img, lab in self._run_pairs:
            if img is image and lab in self._viewer.layers:
                layers = self._viewer.layers
                if layers.index(layer) > layers.index(lab):
                    layers.move(layers.index(layer), layers.index(lab))
                layers.selection.active = lab
        return layer

    def _show_preview(self, p: Preview) -> None:
        if self._preview_off_this_run or not self._preview.value or not self._run_pairs:
            return
        image = self._run_pairs[p.view.image][0]
        scale = np.asarray(image.scale, float)
        lead = len(p.view.plane)
        n_max = int(p.labels.max()) if p.labels.size else 0
        layer = self._preview_layer
        if layer is not None and (layer not in self._viewer.layers or self._preview_image is not image):
            layer = None
        mirrored = self._preview_plane_shape(image)
        (r0, r1), (c0, c1) = p.view.rows, p.view.cols
        if mirrored is not None:
            # the layer mirrors one whole plane: write the predicted box into it, clear the rest
            translate = np.asarray(image.translate, float) + np.array(p.view.plane + (0, 0), float) * scale
            if layer is None or tuple(layer.data.shape) != mirrored:
                if layer is not None:
                    self._viewer.layers.remove(layer)
                layer = self._add_preview_layer(image, np.zeros(mirrored, np.uint8), translate, n_max)
            data = layer.data
            data[...] = 0
            data[(0,) * lead + (slice(r0, r1), slice(c0, c1))] = p.labels
        else:
            data = p.labels.reshape((1,) * lead + p.labels.shape)
            offset = np.array(p.view.plane + (r0, c0), float)
            translate = np.asarray(image.translate, float) + offset * scale
            if layer is None:
                layer = self._add_preview_layer(image, data, translate, n_max)
        if n_max > len(layer.colormap.color_dict) - 2:
            layer.colormap = colors.class_colormap(n_max)
        if not np.allclose(np.asarray(layer.translate, float), translate):
            layer.translate = translate
        if mirrored is not None:
            layer.refresh(thumbnail=False)
        else:
            layer.data = data

    def _on_done(self, done) -> None:
        model = done.model
        how = "stopped" if done.stopped else "trained"
        self._store.set(model, describe_model(model, f"{how} here"))
        self._finetune.value = True
        dice = f", val Dice {done.val_dice:.3f}" if done.val_dice is not None else ""
        loss = f", loss {done.loss:.3f}" if done.loss is not None else ""
        why = " (it had stopped improving)" if getattr(done, "plateau", False) and not done.stopped else ""
        self._status.value = f"Done: {done.steps} steps in {c.format_seconds(done.elapsed)}{loss}{dice}{why}."
        from ..training import trust_warning

        warning = trust_warning(done)
        if warning:
            self._status.value += f"<br><b>{html.escape(warning)}</b>"
            c.report_warning(warning)
        self._progress.value = 1000 if not done.stopped else self._progress.value
        self._progress.native.setFormat("stopped" if done.stopped else "done")
        self._plot.update()
        skipped = getattr(done, "skipped", 0)
        if skipped:
            self._report(
                "warning",
                f"{skipped} training step{'s were' if skipped > 1 else ' was'} skipped because the loss was not a "
                "finite number (NaN or inf); the model keeps its last good weights. If this repeats, lower the "
                "learning rate or check the image for extreme values.",
            )

    def _on_error(self, error: BaseException) -> None:
        if not self._alive():
            return
        self._status.value = "Training failed: " + c.describe(error)
        self._progress.native.setFormat("failed")
        self._report("error", c.describe(error))

    def _on_finish(self) -> None:
        self._timer.stop()
        for _, lab in self._run_pairs:
            for emitter in (lab.events.paint, lab.events.data):
                with contextlib.suppress(Exception):  # already gone with its layer
                    emitter.disconnect(self._on_paint)
        if not self._alive():
            return
        self._set_running(False)
        self._inbox = None
        self.refresh_pairs()

    def _on_destroyed(self, *_) -> None:
        self._closing = True
        if self._inbox is not None:
            self._inbox.stop()
        self._runner.abandon()
        self._guess_runner.abandon()

    # ------------------------------------------------------------------------------------------ model files

    def _update_model_info(self, *_) -> None:
        if not c.is_alive(self.native):
            return
        s = self._store
        self._model_info.value = f"<small>In memory: {html.escape(s.description)}</small>"
        self._save.enabled = self._export.enabled = s.model is not None
        if s.model is None:
            self._finetune.value = False
        self._finetune.enabled = s.model is not None and not self._runner.running

    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the model in memory (and, if ticked, the annotation layers next to it)."""
        from ..checkpoint import save_model
        from ..io import write_labels

        if self._store.model is None:
            raise InputError("There is no model to save yet: train one first.")
        if path is None:
            path = _ask_path(self.native, save=True)
            if path is None:
                return None
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".pt")
        save_model(self._store.model, path, overwrite=True)
        written = [path.name]
        if self._save_annotations.value:
            for _, lab in self.pairs():
                target = path.with_name(f"{path.stem}.{_safe(lab.name)}.tif")
                write_labels(target, np.asarray(lab.data), overwrite=True)
                written.append(target.name)
        self._store.set(self._store.model, self._store.description)
        c.report_info(f"Saved {', '.join(written)} in {path.parent}.")
        return path

    def export_model(self, path: str | Path | None = None) -> Path | None:
        """Export the model in memory as a bioimage.io package; the test image is the first training image."""
        from ..export import export_model

        if self._store.model is None:
            raise InputError("There is no model to export yet: train or load one first.")
        images = [img for img, _ in self.pairs()] or list(c.image_layers(self._viewer))
        if not images:
            raise InputError("Open an image the model was trained on: the package's test input is cut from it.")
        overwrite = False
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                self.native, "Export model", "unet.zip", "bioimage.io package (*.zip)"
            )
            if not path:
                return None
            overwrite = True  # the dialog asked before replacing a file
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")
        data = images[0].data[0] if getattr(images[0], "multiscale", False) else images[0].data
        export_model(self._store.model, path, data, overwrite=overwrite)
        c.report_info(f"Exported {path.name} (bioimage.io package) in {path.parent}.")
        return path

    def load_model(self, path: str | Path | None = None):
        """Load a model file into memory, ready to predict or to fine-tune on new annotations."""
        from ..checkpoint import load_model

        if path is None:
            path = _ask_path(self.native, save=False)
            if path is None:
                return None
        model = load_model(path)
        self._store.set(model, describe_model(model, f"loaded from {Path(path).name}"))
        self._finetune.value = True
        return model


# ---------------------------------------------------------------------------------------------- helpers


def _guess_or_none(label_guess, arrays):
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

    meaning = ["not annotated", "background"] + (
        ["foreground"] if n_labels == 2 else [f"class {k}" for k in range(1, n_labels)]
    )
    try:
        layer.features = pd.DataFrame({"index": list(range(n_labels + 1)), "meaning": meaning})
    except Exception:  # features are a nicety
        c.log.debug("could not set features", exc_info=True)


def _widen(lo: int, hi: int, size: int, minimum: int) -> tuple[int, int]:
    if hi - lo >= minimum or size <= minimum:
        return (lo, hi) if size > minimum else (0, size)
    mid = (lo + hi) // 2
    lo = int(np.clip(mid - minimum // 2, 0, size - minimum))
    return lo, lo + minimum


def _safe(name: str) -> str:
    return re.sub(r"[^\w\-]+", "_", name).strip("_") or "labels"


def _ask_path(parent, save: bool) -> str | None:
    from qtpy.QtWidgets import QFileDialog

    if save:
        path, _ = QFileDialog.getSaveFileName(parent, "Save model", "unet.pt", "napari-unet model (*.pt)")
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Load model", "", "napari-unet model (*.pt *.zip);;All files (*)")
    return path or None
