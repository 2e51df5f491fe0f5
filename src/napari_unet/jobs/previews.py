"""The live previews of a train session: the visible region predicted with a snapshot of the model, beside
training (``train_session``), and the forest's pseudo-labels as the first one. No Qt, no layers.

Asked (``Inbox.uncertainty``), a U-Net preview also carries where the model is unsure in the same box
(``Previewer.with_uncertainty``): the entropy of the preview's own probabilities, smoothed as after Predict
(``uncertainty.plane_uncertainty``, method ``PREVIEW_UNCERTAINTY_METHOD``). One pass, not Predict's 8 flips and
rotations: the map then costs a few ms beside the preview's forward pass, where the 8 passes cost 7x the preview
on the training's CPU (512 x 512 box, 16 filters, one thread: the preview 0.14 s, with this map 0.14 s, with the
8-pass map 1.06 s in bf16 on an AVX-512 AMD EPYC; 0.30 s, 0.34 s and 2.4 s in fp32 limited to AVX2). It finds
the wrong pixels nearly as well: ROC AUC 0.927 / 0.923 against 0.936 / 0.933 for the 8 passes, smoothed alike
(``benchmarks/uncertainty_auc.py``, entropy_blur against tta_blur).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

import numpy as np

from ..training.config import PREVIEW_UNCERTAINTY_METHOD
from ..training.events import Prepared, Preview, View
from ..training.selftrain import unet_beats_forest

log = logging.getLogger("napari_unet")

MAX_PREVIEW_SIDE = 512  # the preview predicts at most this many pixels per side around the view centre
LARGE_PLANE = 4096 * 4096  # above this, the preview normalizes only the region it predicts
CACHED_PLANES = 4  # normalized planes the previewer keeps


def plane_chw(image, plane: tuple[int, ...], rgb: bool, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """One plane (or only its ``box`` of rows, cols) as float32 channels-first; reads no more than that."""
    index = tuple(plane)
    if box is not None:
        index += tuple(box) + ((slice(None),) if rgb else ())
    p = np.asarray(image[index] if index else image)
    return np.moveaxis(p, -1, 0).astype(np.float32) if rgb else p[None].astype(np.float32)


class Previewer:
    """Predicts the visible region with a snapshot of the model; normalizes whole planes once and caches them."""

    def __init__(self, images: Sequence, rgb: Sequence[bool]) -> None:
        self.images = images
        self.rgb = rgb
        self.cache: dict[tuple, np.ndarray] = {}

    def __call__(self, model, view: View) -> np.ndarray:
        from ..meta import normalization_rule, predicts_boundaries
        from ..prediction import predict_proba_plane, probabilities_to_labels
        from ..volume import is_volume_model

        if is_volume_model(model):  # the current plane of a 3D prediction of the slab around it
            from ..prediction3d import preview_plane

            return preview_plane(model, self.images[view.image], view.plane, view.rows, view.cols)
        crop = self._normalized_crop(view, normalization_rule(model))
        probs = predict_proba_plane(model, np.ascontiguousarray(crop), tile_size=max(crop.shape[1:]) + 16, overlap=0)
        return probabilities_to_labels(probs, boundary=predicts_boundaries(model))

    def with_uncertainty(
        self, model, view: View, method: str = PREVIEW_UNCERTAINTY_METHOD
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels, uncertainty in [0, 1]) of the box, from the same probabilities; a volume model: no map."""
        from ..meta import normalization_rule, predicts_boundaries
        from ..prediction import probabilities_to_labels
        from ..uncertainty import plane_uncertainty
        from ..volume import is_volume_model

        if is_volume_model(model):
            return self(model, view), None
        crop = np.ascontiguousarray(self._normalized_crop(view, normalization_rule(model)))
        probs, unsure = plane_uncertainty(model, crop, method, tile_size=max(crop.shape[1:]) + 16, overlap=0)
        unsure[~np.isfinite(crop).all(axis=0)] = 0.0  # no data: nothing to be unsure about (as after Predict)
        return probabilities_to_labels(probs, boundary=predicts_boundaries(model)), unsure

    def _normalized_crop(self, view: View, rule) -> np.ndarray:
        from ..normalization import normalize

        image, rgb = self.images[view.image], self.rgb[view.image]
        (r0, r1), (c0, c1) = view.rows, view.cols
        key = (view.image, view.plane)
        if key in self.cache:
            return self.cache[key][:, r0:r1, c0:c1]
        shape = np.shape(image)
        if int(np.prod(shape[-3:-1] if rgb else shape[-2:])) > LARGE_PLANE:
            return normalize(plane_chw(image, view.plane, rgb, (slice(r0, r1), slice(c0, c1))), rule)
        if len(self.cache) >= CACHED_PLANES:
            self.cache.pop(next(iter(self.cache)))
        full = self.cache[key] = normalize(plane_chw(image, view.plane, rgb), rule)
        return full[:, r0:r1, c0:c1]


def clip_view(view: View, max_side: int = MAX_PREVIEW_SIDE) -> View:
    """Shrink the box around its centre to at most ``max_side`` pixels per side (bounds preview cost)."""

    def clip(lo: int, hi: int) -> tuple[int, int]:
        if hi - lo <= max_side:
            return lo, hi
        mid = (lo + hi) // 2
        return mid - max_side // 2, mid - max_side // 2 + max_side

    return View(view.image, view.plane, clip(*view.rows), clip(*view.cols))


class Previews:
    """The live previews of a session: the forest's first, then the U-Net's in one thread beside training, so
    Stop never waits for a preview and training never pauses for one."""

    def __init__(self, inbox, previewer: Previewer, pool: ThreadPoolExecutor) -> None:
        self.inbox = inbox
        self.previewer = previewer
        self.pool = pool
        self.pending: Future | None = None
        self.last = time.perf_counter()
        self.forest_dice: float | None = None
        self.forest_shown = False  # the forest's preview is up and the U-Net has not yet beaten it

    def predict(self, model, step: int) -> Preview | None:
        view = self.inbox.view()
        if view is None:
            return None
        view = clip_view(view)
        if self.inbox.uncertainty:
            labels, unsure = self.previewer.with_uncertainty(model, view)
            return Preview(view, labels, step, unsure)
        return Preview(view, self.previewer(model, view), step)

    def forest(self, trainer, prepared: Prepared, step: int) -> Preview | None:
        """The forest's pseudo-labels of the visible region: the first preview, before any U-Net step."""
        self.forest_dice = prepared.forest_val_dice
        view = self.inbox.view()
        if not self.inbox.preview or view is None or self.inbox.stop_requested:
            return None
        view = clip_view(view)
        box = trainer.pseudo_labels_in(view.image, view.plane, view.rows, view.cols)
        if box is None:
            return None
        self.forest_shown = True
        self.last = time.perf_counter()
        return Preview(view, box, step)

    def after_step(self, steps: int, val_dice: float | None) -> None:
        if self.forest_shown and unet_beats_forest(steps, val_dice, self.forest_dice):
            self.forest_shown = False

    def _finished(self) -> Preview | None:
        if self.pending is None or not self.pending.done():
            return None
        future, self.pending = self.pending, None
        self.last = time.perf_counter()
        try:
            return future.result()
        except Exception:  # a failed preview must not end training
            log.exception("napari-unet: preview failed")
            return None

    def next(self, trainer, step: int) -> Preview | None:
        """A finished preview to show; else, when one is due, start the next from a snapshot of the model."""
        shown = self._finished()
        if shown is not None:
            return shown
        due = time.perf_counter() - self.last >= self.inbox.preview_interval
        if self.inbox.preview and self.pending is None and not self.forest_shown and due:
            self.pending = self.pool.submit(self.predict, trainer.snapshot(), step)
        return None

    def final(self, model, step: int) -> Preview | None:
        """The trained model's preview; a preview still running shares the previewer's cache: it ends first."""
        if self.pending is not None and not self.pending.cancel():
            futures_wait([self.pending])
        self.pending = None
        try:
            return self.predict(model, step)
        except Exception:  # a failed preview must not lose the trained model
            log.exception("napari-unet: preview failed")
            return None
