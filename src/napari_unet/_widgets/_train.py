"""Train dock widget: pick images and their annotations, train in the background with a live preview, save.

``TrainWidget`` composes the dock's panels (``_train_pairs``, ``_train_annotations``, ``_model_files``,
``_train_settings``, ``_train_progress``, ``_train_preview``) and runs the train session
(``jobs.train_session``) in a worker: start, stop, and the session's events routed to the panels.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import Container, PushButton
from qtpy.QtCore import QTimer

from ..errors import InputError
from ..jobs.train_session import Inbox, train_rounds
from ..training.events import Done, Epoch, Notice, Preparing, Preview, Round, Step
from . import _common as c
from ._corrections import one_class_note, training_labels
from ._model_files import ModelFilesPanel
from ._state import get_store
from ._train_annotations import AnnotationsPanel
from ._train_inputs import checked_pairs, run_mode, session_inputs
from ._train_pairs import PairsPanel
from ._train_preview import LivePreview
from ._train_progress import RunProgress, skipped_warning
from ._train_settings import PREVIEW, SettingsPanel
from ._warm_up import warm_up_in_background
from ._worker import WorkerRunner

if TYPE_CHECKING:
    import napari.viewer

    from ..training.config import TrainConfig

STROKES_INTERVAL_MS = 500  # while training, new strokes and the visible region are handed over this often


class TrainWidget(Container):
    """Train a U-Net on the opened images and their annotation layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = c.unwrap_viewer(viewer)
        self._store = get_store(self._viewer)
        self._runner = WorkerRunner()
        self._inbox: Inbox | None = None
        self._run_pairs: list[tuple] = []  # (image layer, labels layer) of the running session
        self._strokes_dirty = False
        self._closing = False
        self._pseudo = None  # pseudo-labelling work kept across Train clicks (a training.pseudo.PseudoCache)
        self._previous = None  # the model in memory when the run started: never lost to a worse run

        self._message = c.wrapping_label()  # the last error or warning, whole, until the next run
        self._settings = SettingsPanel()
        self._pairs = PairsPanel(self._viewer, on_change=lambda: self._annotations.pairing_changed())
        self._annotations = AnnotationsPanel(
            self._viewer, self._pairs, lambda: bool(self._settings.multiclass.value), self._message
        )
        self._files = ModelFilesPanel(self._viewer, self._store, self.pairs, lambda: self.running, self._message)
        self._live_preview = LivePreview(self._viewer, self._message)
        self._run = RunProgress()
        self._train = PushButton(text="Train")
        self._stop = PushButton(text="Stop", enabled=False)
        # what tests, benchmarks and scripts reach for
        self._mode, self._mode_hint = self._annotations.mode, self._annotations.hint
        self._progress, self._plot, self._status = self._run.bar, self._run.plot, self._run.status
        self._collapsible = self._settings.collapsible
        self._lay_out()
        self._connect()
        self.refresh_pairs()
        warm_up_in_background()

    def _lay_out(self) -> None:
        self._body = c.scrolling_body(self)  # fits a small screen: scrolls instead of growing the window
        self._body.extend(
            [
                c.heading("Images and annotations"),
                self._pairs,
                self._annotations,
                c.heading("Model"),
                self._files,
                self._settings.widget,
                Container(widgets=[self._train, self._stop], layout="horizontal", labels=False),
                self._run.bar,
                self._run.plot_widget,
                *self._live_preview.unsure_widgets(self._settings),
                self._run.status,
                self._message,
            ]
        )
        for sub in self._body:
            if isinstance(sub, Container):
                sub.margins = (0, 0, 0, 0)
        self._body.native.layout().addStretch(1)

    def _connect(self) -> None:
        self._train.changed.connect(c.guarded(self.start_training, self._message))
        self._stop.changed.connect(self.stop_training)
        self._settings.multiclass.changed.connect(self._annotations.update_legend)
        for name in PREVIEW:  # the preview's settings apply at once, while training runs too
            getattr(self._settings, name).changed.connect(self._on_preview_toggled)
        self._viewer.layers.events.removed.connect(self._on_layer_removed)
        self.native.destroyed.connect(self._on_destroyed)
        c.tabify_later(self)  # docked beside another napari-unet dock: one tab each, not stacked
        self._timer = QTimer()
        self._timer.setInterval(STROKES_INTERVAL_MS)
        self._timer.timeout.connect(self._on_timer)

    # ------------------------------------------------------------------------------------------ the panels

    def refresh_pairs(self) -> None:
        """Rebuild the image / annotation rows from the viewer's layers, keeping the user's choices."""
        self._pairs.refresh()

    def pairs(self) -> list[tuple]:
        """The (image layer, labels layer) pairs ticked for training."""
        return self._pairs.pairs()

    def set_pairs(self, pairs: list[tuple]) -> None:
        """Tick exactly these (image, labels) pairs (for scripts and tests)."""
        self._pairs.set_pairs(pairs)

    def new_scribble_layer(self):
        """Add an empty scribble layer over the image being trained on, in paint mode with label 2."""
        return self._annotations.new_scribble_layer()

    def add_class(self) -> None:
        """Offer one more scribble label (a new class) and select it for painting."""
        self._annotations.add_class()

    def next_unsure_region(self):
        """Centre the view on the largest unsure region of the live preview not yet annotated (or None)."""
        return self._live_preview.unsure.next_unsure_region()

    def set_settings(self, **values) -> None:
        """Set advanced settings by ``TrainConfig`` name (time_limit, epochs, filters, patch_size, ...: ``TRAINING``
        in ``_train_settings``), or the live preview's (preview, preview_every, preview_uncertainty)."""
        self._settings.set(**values)

    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the model in memory (and, if ticked, the annotation layers next to it)."""
        return self._files.save_model(path)

    def export_model(self, path: str | Path | None = None) -> Path | None:
        """Export the model in memory as a bioimage.io package; the test image is the first training image."""
        return self._files.export_model(path)

    def load_model(self, path: str | Path | None = None):
        """Load a model file into memory, ready to predict or to fine-tune on new annotations."""
        return self._files.load_model(path)

    def config(self) -> TrainConfig:
        """The core ``TrainConfig`` from the widgets (raises ``InputError`` for impossible values)."""
        from ..training import TrainConfig

        mode = run_mode(self._annotations.mode.value, self.pairs())
        return TrainConfig(mode=mode, **self._settings.overrides())

    # ------------------------------------------------------------------------------------------ run control

    @property
    def running(self) -> bool:
        return self._runner.running

    def start_training(self) -> None:
        """Check the inputs, then train in a background thread (continuing from the model in memory if asked)."""
        if self._runner.running:
            return
        self._annotations.settle_guess()
        if not c.image_layers(self._viewer):
            raise InputError("There is no image layer: open an image first (File > Open Sample > U-Net).")
        pairs = checked_pairs(self.pairs())
        config = self.config()
        model = self._files.model_to_continue()
        images, labels, rgb, config = session_inputs(pairs, config)
        self._begin_run(pairs, config)
        if self._pseudo is None:  # pseudo-labelling work (pixel features, planes) kept across Train clicks
            from ..training.pseudo import PseudoCache

            self._pseudo = PseudoCache()
        self._runner.start(
            train_rounds,
            images,
            labels,
            config,
            model,
            self._inbox,
            rgb,
            self._pseudo,
            on_yield=self._on_event,
            on_error=self._on_error,
            on_finish=self._on_finish,
        )
        self._timer.start()
        note = one_class_note(model, labels, config)
        if note:
            self._report("warning", note)

    def _begin_run(self, pairs: list[tuple], config: TrainConfig) -> None:
        """The dock as a run starts: the inbox, the preview layer, the strokes followed, the panels locked."""
        self._run_pairs = pairs
        self._previous = self._store.model
        self._inbox = Inbox()
        self._live_preview.start_run()
        self._live_preview.apply_settings(self._inbox, self._settings)
        self._strokes_dirty = False
        self._run.start(config)
        for _, lab in pairs:
            lab.events.paint.connect(self._on_paint)
            lab.events.data.connect(self._on_paint)
        self._post_view()
        if self._inbox.preview:
            finetuned = self._files.finetune.value and self._store.model is not None
            n_classes = self._store.model.n_classes if finetuned else 1
            self._live_preview.prepare(pairs, n_classes, self._inbox.uncertainty)
        self._set_running(True)
        self._message.value = ""

    def stop_training(self) -> None:
        """Stop after the current step; the model trained so far is kept."""
        if self._inbox is not None and self._runner.running:
            self._inbox.stop()
            self._stop.enabled = False
            self._run.stopping()

    def _set_running(self, running: bool) -> None:
        self._train.enabled = not running
        self._stop.enabled = running
        self._pairs.enabled = not running
        self._pairs.locked = running
        self._annotations.set_running(running)
        self._files.set_running(running)
        self._settings.set_running(running)

    def _on_paint(self, *_) -> None:
        self._strokes_dirty = True

    def _on_timer(self) -> None:
        """Every half second while training: tell the session what is visible and hand over new strokes."""
        if self._inbox is None or not self._runner.running:
            return
        self._post_view()
        if self._strokes_dirty:
            self._strokes_dirty = False
            self._inbox.post_labels([training_labels(lab) for _, lab in self._run_pairs])

    def _on_preview_toggled(self, *_) -> None:
        if self._inbox is not None:
            self._live_preview.apply_settings(self._inbox, self._settings)

    def _post_view(self) -> None:
        if self._inbox is not None:
            try:
                view = self._live_preview.current_view(self._run_pairs)
            except Exception:  # the view is a nicety; never let it break training
                c.log.debug("no preview view", exc_info=True)
                view, self._live_preview.note = None, "No live preview: the visible region could not be determined."
            self._inbox.post_view(view)

    def _on_layer_removed(self, event) -> None:
        """A layer the running session trains on stops it; its preview layer turns the preview off."""
        layer = event.value
        if self._runner.running and self._inbox is not None:
            if any(layer is x for pair in self._run_pairs for x in pair):
                self._inbox.stop()
                self._run.stopping(f"Stopping: the layer '{layer.name}' was removed.")
                QTimer.singleShot(0, lambda name=layer.name: self._notice_removed(name))
            else:
                self._live_preview.removed_during_run(layer, self._inbox)
        self._live_preview.forget(layer)

    def _notice_removed(self, name: str) -> None:
        if len(self._viewer.layers):  # not when the whole viewer is closing
            self._report(
                "warning", f"Training stopped because the layer '{name}' was removed; the model so far is kept."
            )

    def _report(self, kind: str, message: str) -> None:
        c.report(self._message, kind, message)

    # ------------------------------------------------------------------------------------------ session events

    def _alive(self) -> bool:
        return not self._closing and c.is_alive(self.native)

    def _on_event(self, event) -> None:
        if not self._alive():
            return
        if isinstance(event, Preparing):
            self._run.preparing(event)
        elif isinstance(event, Step | Epoch):
            self._run.step(event, self._live_preview.note)
        elif isinstance(event, Preview):
            if not self._live_preview.off_this_run and self._settings.preview.value and self._run_pairs:
                self._live_preview.show(event, self._run_pairs)
        elif isinstance(event, Round):
            self._run.round(event)
        elif isinstance(event, Notice):
            self._report("warning", event.message)
        elif isinstance(event, Done):
            self._on_done(event)

    def _on_done(self, done: Done) -> None:
        origin = f"{'stopped' if done.stopped else 'trained'} here"
        kept = self._files.finish_run(done, self._previous, origin)
        self._previous = None
        self._run.done(done, self._store.model, kept, self._files.offering)
        if kept:
            self._live_preview.hide()  # it shows the run's model, not the one kept
        if done.skipped:
            self._report("warning", skipped_warning(done.skipped))

    def _on_error(self, error: BaseException) -> None:
        if not self._alive():
            return
        self._run.failed(error)
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
        self._annotations.abandon()
