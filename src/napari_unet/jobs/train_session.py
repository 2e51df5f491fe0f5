"""A train session: rounds of core training with live previews while the user paints. No Qt, no layers.

The GUI thread talks to the running session only through an ``Inbox`` (new strokes, the visible region,
stop); the session talks back only by yielding the events of ``training.events``: ``Round``, ``Preparing``,
``Step`` and ``Epoch`` (steps, ``elapsed`` and ``fraction`` of the whole session), ``Preview``, ``Notice``,
and finally ``Done``. A round is one core ``Trainer`` run; when the user paints new strokes, the current
round stops and the next continues from the current model with the new strokes, within the same budget.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError
from ..training.config import MIN_ROUND_SECONDS, PREVIEW_INTERVAL, PREVIEW_UNCERTAINTY
from ..training.continuation import Continuation, Verdict, score
from ..training.events import (
    STOPPED,
    Done,
    Epoch,
    Notice,
    Prepared,
    Preparing,
    Round,
    SessionEvent,
    Step,
    View,
)
from .previews import Previewer, Previews


class Inbox:
    """Thread-safe messages from the GUI thread to the session."""

    def __init__(
        self, preview: bool = True, preview_interval: float = PREVIEW_INTERVAL, uncertainty: bool = PREVIEW_UNCERTAINTY
    ) -> None:
        self._lock = threading.Lock()
        self._labels: list[np.ndarray] | None = None
        self._view: View | None = None
        self._trainer = None
        self.preview = preview
        self.preview_interval = preview_interval
        self.uncertainty = uncertainty  # each U-Net preview also maps where the model is unsure
        self.stop_requested = False

    def post_labels(self, labels: list[np.ndarray]) -> None:
        """New copies of every annotation layer (taken on the GUI thread)."""
        with self._lock:
            self._labels = labels

    def take_labels(self) -> list[np.ndarray] | None:
        with self._lock:
            labels, self._labels = self._labels, None
        return labels

    def post_view(self, view: View | None) -> None:
        with self._lock:
            self._view = view

    def view(self) -> View | None:
        with self._lock:
            return self._view

    def set_trainer(self, trainer) -> None:
        with self._lock:
            self._trainer = trainer
            stop = self.stop_requested
        if stop:
            trainer.stop()

    def stop(self) -> None:
        """End the session after the current step; the model so far is kept (``Done.stopped`` is True)."""
        with self._lock:
            self.stop_requested = True
            trainer = self._trainer
        if trainer is not None:
            trainer.stop()


class _Session:
    """One session's rounds and its totals; ``run`` yields its events."""

    def __init__(self, images, labels, config, model, inbox: Inbox, previews: Previews, cache) -> None:
        self.images, self.config, self.model, self.cache = images, config, model, cache
        self.inbox = inbox
        self.previews = previews
        self.start = time.perf_counter()
        self.steps = self.epochs = self.rounds = self.skipped = 0
        self.loss: float | None = None
        self.val_dice: float | None = None
        self.plateau = False
        self.reason = ""  # why the last round ended (Done.reason)
        self.threads = ""  # the last round's thread choice (Done.threads)
        self.verdict = ("", "")  # the last round's verdict and its reason (Done.verdict)
        self.current: list[np.ndarray] = list(labels)
        self.previous: list[np.ndarray] | None = None
        self.trainer = None  # the last round's
        # the model the session continues: it comes back at the end unless the session beat it (continuation.py)
        self.started_from = Continuation(model) if model is not None and config.keep_better else None

    def run(self) -> Iterator[SessionEvent]:
        while True:
            trainer = self.trainer = yield from self._next_trainer()
            done, new_labels = yield from self._round(trainer)
            self._add(done)
            if new_labels is None or self.inbox.stop_requested:
                break
            self.previous, self.current = self.current, new_labels
        stopped = self.inbox.stop_requested
        kept = self._settle(stopped)
        if kept.kept_previous:
            yield Notice(kept.words())
        if self.inbox.preview and not stopped:
            shown = self.previews.final(self.model, self.steps)
            if shown is not None:
                yield shown
        elapsed = time.perf_counter() - self.start
        yield Done(
            self.model, self.steps, self.epochs, elapsed, self.loss, self.val_dice, stopped, self.skipped,
            self.plateau, self.previews.forest_dice, STOPPED if stopped else self.reason, kept.kept_previous,
            kept.before, kept.after, self.threads, *self.verdict,
        )  # fmt: skip

    def _settle(self, stopped: bool) -> Verdict:
        """The session's model, or the one it started from where the session did not beat it on the last round's
        held-out blocks (which hold every annotation); rounds themselves keep what they train."""
        if self.started_from is None or self.trainer is None:
            return Verdict(False, None, self.val_dice)
        after = self.trainer.val_dice
        self.started_from.before = score(self.trainer, self.started_from.previous)
        kept = self.started_from.settle(self.model, self.steps, stopped, after)
        if kept.kept_previous:
            from ..training.verdict import verdict_fields  # imports torch: not at module import

            self.val_dice = kept.before
            fields = verdict_fields(self.model)  # the kept model's own verdict, not the discarded run's
            self.verdict = (fields.get("verdict", ""), fields.get("verdict_reason", ""))
        return kept

    def _overrides(self) -> dict:
        """The next round's budget: what is left of the session's, and where it is in the schedule."""
        cfg = self.config
        elapsed = time.perf_counter() - self.start
        overrides: dict = {"leave_core": True}  # napari's own thread shares the CPU
        if cfg.time_limit is not None:
            overrides["time_limit"] = max(cfg.time_limit - elapsed, 0.05)
        if cfg.epochs is not None:
            overrides["epochs"] = max(1, cfg.epochs - self.epochs)
        if self.rounds:  # a later round continues the learning-rate decay of the session
            if cfg.time_limit is not None:
                progressed = elapsed / cfg.time_limit
            else:
                progressed = self.epochs / max(cfg.epochs or 1, 1)
            overrides["schedule_start"] = min(max(progressed, 0.0), 0.95)
        return overrides

    def _next_trainer(self) -> Iterator[SessionEvent]:
        """The next round's ``Trainer``; new annotations it cannot use give way to the previous ones."""
        from ..training import Trainer

        while True:
            try:
                trainer = Trainer(
                    self.images, self.current, self.config, model=self.model, pseudo_cache=self.cache,
                    keep_better=False, **self._overrides(),
                )  # fmt: skip
            except InputError as e:
                if self.previous is None:
                    raise
                yield Notice(f"The new annotations cannot be used ({e}) Training goes on with the previous ones.")
                self.current, self.previous = self.previous, None
                continue
            self.inbox.set_trainer(trainer)
            self.rounds += 1
            yield Round(self.rounds, self.steps, trainer.mode, trainer.n_classes, trainer.n_annotated)
            return trainer

    def _round(self, trainer) -> Iterator[SessionEvent]:
        """One round; returns its ``Done`` and the new strokes that ended it (None if none did)."""
        round_start = time.perf_counter()
        new_labels = None
        for event in trainer.run():
            if isinstance(event, Done):
                return event, new_labels
            if isinstance(event, Preparing):
                yield event
                continue
            if isinstance(event, Prepared):
                shown = self.previews.forest(trainer, event, self.steps)
                if shown is not None:
                    yield shown
                continue
            yield self._session_wide(event)
            self.previews.after_step(self.steps + trainer.steps, self.val_dice)
            if self.inbox.stop_requested:
                continue
            if new_labels is None and time.perf_counter() - round_start >= MIN_ROUND_SECONDS:
                new_labels = self.inbox.take_labels()
                if new_labels is not None:
                    trainer.stop()  # the round ends after this step; the next one takes the new strokes
                    continue
            shown = self.previews.next(trainer, self.steps + trainer.steps)
            if shown is not None:
                yield shown
        raise RuntimeError("the trainer ended without Done")

    def _session_wide(self, event: Step | Epoch) -> Step | Epoch:
        """The round's ``Step`` or ``Epoch`` with steps, epochs, elapsed and fraction of the whole session."""
        cfg = self.config
        elapsed = time.perf_counter() - self.start
        step = self.steps + event.step
        fraction = elapsed / cfg.time_limit if cfg.time_limit is not None else 0.0
        if cfg.epochs is not None:
            fraction = max(fraction, step / (cfg.epochs * cfg.steps_per_epoch))
        if isinstance(event, Step):
            self.loss = event.loss
        elif event.val_dice is not None:
            self.val_dice = event.val_dice
        return dataclasses.replace(
            event, step=step, epoch=self.epochs + event.epoch, elapsed=elapsed, fraction=min(1.0, fraction)
        )

    def _add(self, done: Done) -> None:
        self.model = done.model
        self.steps += done.steps
        self.epochs += done.epochs
        self.skipped += done.skipped
        self.plateau = done.plateau
        self.reason = done.reason
        self.threads = done.threads or self.threads
        self.verdict = (done.verdict, done.verdict_reason)
        if done.forest_val_dice is not None:
            self.previews.forest_dice = done.forest_val_dice
        if done.val_dice is not None:
            self.val_dice = done.val_dice


def train_rounds(
    images: Sequence,
    labels: Sequence[np.ndarray],
    config,
    model,
    inbox: Inbox,
    rgb: Sequence[bool] | None = None,
    pseudo_cache=None,
) -> Iterator[SessionEvent]:
    """The train session: yields ``Round``, ``Preparing``, ``Step``, ``Epoch``, ``Preview`` and ``Notice``
    events, then ``Done`` with the session's totals.

    ``labels`` must be copies the GUI will not change; newer copies arrive through ``inbox.post_labels``.
    ``pseudo_cache`` (a ``pseudo.PseudoCache``) keeps pseudo-labelling work across rounds and Train clicks.
    For scribbles, the first preview is the forest's pseudo-labels (seconds after Train); the U-Net's previews
    replace it once the U-Net beats the forest (``training.selftrain.unet_beats_forest``, the rule self-training
    follows too).
    """
    from ..training.pseudo import PseudoCache

    rgb = list(rgb) if rgb is not None else [False] * len(images)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-preview")
    previews = Previews(inbox, Previewer(images, rgb), pool)
    cache = pseudo_cache if pseudo_cache is not None else PseudoCache()
    try:
        yield from _Session(images, labels, config, model, inbox, previews, cache).run()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
