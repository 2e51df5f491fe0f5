"""The background side of the Train widget: rounds of core training with live previews. No Qt, no layers.

The GUI thread talks to the running job only through an ``Inbox`` (new strokes, the visible region, stop);
the job talks back only by yielding events (``Round``, ``Tick``, ``Preview``, ``Notice``, and finally the
core's ``Done``). A round is one core ``Trainer`` run; when the user paints new strokes, the current round
stops and the next continues from the current model with the new strokes, within the same time budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..training.events import Notice, Preview, Round, View

log = logging.getLogger("napari_unet")

MIN_ROUND_SECONDS = 2.0  # new strokes are taken in at most this often
# without held-out strokes to compare on, the U-Net's preview replaces the forest's after this many steps
UNET_PREVIEW_MIN_STEPS = 100
MAX_PREVIEW_SIDE = 512  # the preview predicts at most this many pixels per side around the view centre
_LARGE_PLANE = 4096 * 4096  # above this, the preview normalizes only the region it predicts


@dataclass(frozen=True)
class Tick:
    step: int  # global over rounds
    loss: float
    elapsed: float  # seconds since Train was clicked
    fraction: float  # 0..1 of the whole budget
    val_dice: float | None = None
    epoch: bool = False  # True on epoch ends (val_dice is fresh)


class Inbox:
    """Thread-safe messages from the GUI thread to the job."""

    def __init__(self, preview: bool = True, preview_interval: float = 3.0) -> None:
        self._lock = threading.Lock()
        self._labels: list[np.ndarray] | None = None
        self._view: View | None = None
        self._trainer = None
        self.preview = preview
        self.preview_interval = preview_interval
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
        """End the job after the current step; the model so far is kept (``Done.stopped`` is True)."""
        with self._lock:
            self.stop_requested = True
            trainer = self._trainer
        if trainer is not None:
            trainer.stop()


def _plane_chw(image, plane: tuple[int, ...], rgb: bool, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """One plane (or only its ``box`` of rows, cols) as float32 channels-first; reads no more than that."""
    index = tuple(plane)
    if box is not None:
        index += tuple(box) + ((slice(None),) if rgb else ())
    p = np.asarray(image[index] if index else image)
    return np.moveaxis(p, -1, 0).astype(np.float32) if rgb else p[None].astype(np.float32)


class _Previewer:
    """Predicts the visible region with a snapshot of the model; normalizes whole planes once and caches them."""

    def __init__(self, images: Sequence, rgb: Sequence[bool]) -> None:
        self.images = images
        self.rgb = rgb
        self.cache: dict[tuple, np.ndarray] = {}

    def __call__(self, model, view: View) -> np.ndarray:
        from ..meta import normalization_rule, predicts_boundaries
        from ..normalization import normalize
        from ..prediction import predict_proba_plane, probabilities_to_labels

        image = self.images[view.image]
        rule = normalization_rule(model)
        (r0, r1), (c0, c1) = view.rows, view.cols
        key = (view.image, view.plane)
        if key in self.cache:
            crop = self.cache[key][:, r0:r1, c0:c1]
        else:
            shape = np.shape(image)
            plane_size = int(np.prod(shape[-3:-1] if self.rgb[view.image] else shape[-2:]))
            if plane_size > _LARGE_PLANE:
                box = (slice(r0, r1), slice(c0, c1))
                crop = normalize(_plane_chw(image, view.plane, self.rgb[view.image], box), rule)
            else:
                if len(self.cache) >= 4:
                    self.cache.pop(next(iter(self.cache)))
                full = normalize(_plane_chw(image, view.plane, self.rgb[view.image]), rule)
                self.cache[key] = full
                crop = full[:, r0:r1, c0:c1]
        probs = predict_proba_plane(model, np.ascontiguousarray(crop), tile_size=max(crop.shape[1:]) + 16, overlap=0)
        return probabilities_to_labels(probs, boundary=predicts_boundaries(model))


def clip_view(view: View, max_side: int = MAX_PREVIEW_SIDE) -> View:
    """Shrink the box around its centre to at most ``max_side`` pixels per side (bounds preview cost)."""

    def clip(lo: int, hi: int) -> tuple[int, int]:
        if hi - lo <= max_side:
            return lo, hi
        mid = (lo + hi) // 2
        return mid - max_side // 2, mid - max_side // 2 + max_side

    return View(view.image, view.plane, clip(*view.rows), clip(*view.cols))


def train_rounds(
    images: Sequence,
    labels: Sequence[np.ndarray],
    config,
    model,
    inbox: Inbox,
    rgb: Sequence[bool] | None = None,
    pseudo_cache=None,
) -> Iterator:
    """The training job: yields ``Round``, ``Tick``, ``Preview``, ``Notice`` events and the core ``Preparing``,
    then the core ``Done``.

    ``labels`` must be copies the GUI will not change; newer copies arrive through ``inbox.post_labels``.
    ``pseudo_cache`` (a ``pseudo.PseudoCache``) keeps pseudo-labelling work across rounds and Train clicks.
    For scribbles, the first preview is the forest's pseudo-labels (seconds after Train); the U-Net's previews
    replace it once the U-Net beats the forest on the held-out strokes (or, without held-out strokes, after
    ``UNET_PREVIEW_MIN_STEPS`` steps).
    """
    from ..training.pseudo import PseudoCache

    rgb = list(rgb) if rgb is not None else [False] * len(images)
    previewer = _Previewer(images, rgb)
    # previews run beside training, so Stop never waits for one and training never pauses for one
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-preview")
    cache = pseudo_cache if pseudo_cache is not None else PseudoCache()
    try:
        yield from _rounds(images, labels, config, model, inbox, previewer, pool, cache)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _rounds(
    images, labels, config, model, inbox: Inbox, previewer: _Previewer, pool: ThreadPoolExecutor, cache
) -> Iterator:
    from ..training import Done, Epoch, Prepared, Preparing, Step, Trainer

    start = time.perf_counter()
    total_time, total_epochs = config.time_limit, config.epochs
    steps_done = epochs_done = rounds = skipped = 0
    loss = val_dice = None
    current, previous = list(labels), None
    last_preview = time.perf_counter()
    pending: Future | None = None
    forest_dice: float | None = None
    forest_shown = False  # the forest's preview is up and the U-Net has not yet beaten it
    plateau = False

    def preview(m, step: int) -> Preview | None:
        view = inbox.view()
        if view is None:
            return None
        view = clip_view(view)
        return Preview(view, previewer(m, view), step)

    def finished_preview() -> Preview | None:
        nonlocal pending, last_preview
        if pending is None or not pending.done():
            return None
        future, pending = pending, None
        last_preview = time.perf_counter()
        try:
            return future.result()
        except Exception:  # a failed preview must not end training
            log.exception("napari-unet: preview failed")
            return None

    while True:
        elapsed = time.perf_counter() - start
        overrides = {}
        if total_time is not None:
            overrides["time_limit"] = max(total_time - elapsed, 0.05)
        if total_epochs is not None:
            overrides["epochs"] = max(1, total_epochs - epochs_done)
        if rounds:  # a later round continues the learning-rate decay of the session
            progressed = elapsed / total_time if total_time is not None else epochs_done / max(total_epochs or 1, 1)
            overrides["schedule_start"] = min(max(progressed, 0.0), 0.95)
        try:
            trainer = Trainer(images, current, config, model=model, pseudo_cache=cache, **overrides)
        except InputError as e:
            if previous is None:
                raise
            yield Notice(f"The new annotations cannot be used ({e}) Training goes on with the previous ones.")
            current, previous = previous, None
            continue
        inbox.set_trainer(trainer)
        rounds += 1
        yield Round(rounds, steps_done, trainer.mode, trainer.n_classes, trainer.n_annotated)
        round_start = time.perf_counter()
        new_labels = None
        done = None
        for event in trainer.run():
            if isinstance(event, Done):
                done = event
                break
            if isinstance(event, Preparing):
                yield event
                continue
            if isinstance(event, Prepared):
                forest_dice = event.forest_val_dice
                view = inbox.view()
                if inbox.preview and view is not None and not inbox.stop_requested:
                    view = clip_view(view)
                    box = trainer.pseudo_labels_in(view.image, view.plane, view.rows, view.cols)
                    if box is not None:
                        forest_shown = True
                        last_preview = time.perf_counter()
                        yield Preview(view, box, steps_done)
                continue
            elapsed = time.perf_counter() - start
            fraction = 0.0
            if total_time is not None:
                fraction = elapsed / total_time
            if total_epochs is not None:
                fraction = max(fraction, (steps_done + event.step) / (total_epochs * config.steps_per_epoch))
            fraction = min(1.0, fraction)
            if isinstance(event, Step):
                loss = event.loss
                yield Tick(steps_done + event.step, event.loss, elapsed, fraction)
            elif isinstance(event, Epoch):
                val_dice = event.val_dice if event.val_dice is not None else val_dice
                yield Tick(steps_done + event.step, event.loss, elapsed, fraction, event.val_dice, epoch=True)
            if forest_shown:  # the U-Net's preview replaces the forest's once it does better
                if forest_dice is not None:
                    forest_shown = val_dice is None or val_dice < forest_dice
                else:
                    forest_shown = steps_done + trainer.steps < UNET_PREVIEW_MIN_STEPS
            if inbox.stop_requested:
                continue
            now = time.perf_counter()
            if new_labels is None and now - round_start >= MIN_ROUND_SECONDS:
                new_labels = inbox.take_labels()
                if new_labels is not None:
                    trainer.stop()  # the round ends after this step; the next one takes the new strokes
                    continue
            shown = finished_preview()
            if shown is not None:
                yield shown
            elif (
                inbox.preview and pending is None and not forest_shown and now - last_preview >= inbox.preview_interval
            ):
                pending = pool.submit(preview, trainer.snapshot(), steps_done + trainer.steps)
        assert done is not None
        model = done.model
        steps_done += done.steps
        epochs_done += done.epochs
        skipped += getattr(done, "skipped", 0)
        plateau = done.plateau
        forest_dice = done.forest_val_dice if done.forest_val_dice is not None else forest_dice
        val_dice = done.val_dice if done.val_dice is not None else val_dice
        if new_labels is None or inbox.stop_requested:
            break
        previous, current = current, new_labels
    stopped = inbox.stop_requested
    if inbox.preview and not stopped:
        # a preview still running shares the previewer's cache: let it finish (or drop it if not started) first
        if pending is not None and not pending.cancel():
            futures_wait([pending])
        pending = None
        try:
            shown = preview(model, steps_done)
        except Exception:  # a failed preview must not lose the trained model
            log.exception("napari-unet: preview failed")
            shown = None
        if shown is not None:
            yield shown
    elapsed = time.perf_counter() - start
    yield Done(model, steps_done, epochs_done, elapsed, loss, val_dice, stopped, skipped, plateau, forest_dice)
