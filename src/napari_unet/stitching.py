"""Instance ids across the planes of a Z/T stack: unique everywhere, and optionally linked through Z.

Each plane is decoded alone (``prediction._labels_from_probs``), so its object ids restart at 1; napari
would then show unrelated objects of different planes as one, and counts by id would be wrong.
``StackIds`` renumbers plane after plane so that no id repeats across the stack, and, with a
``stitch_threshold`` > 0, gives an object the id of the object it overlaps most in the previous plane
(intersection over union at least the threshold), as cellpose's ``stitch_threshold`` does, so one
nucleus keeps one id through Z.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def _best_overlaps(labels: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each id of ``labels`` that overlaps ``previous``: (id, previous id of highest IoU, that IoU)."""
    both = (labels > 0) & (previous > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    pairs, inter = np.unique(np.stack([labels[both], previous[both]]).astype(np.int64), axis=1, return_counts=True)
    ids_a, area_a = np.unique(labels[labels > 0], return_counts=True)
    ids_b, area_b = np.unique(previous[previous > 0], return_counts=True)
    a = area_a[np.searchsorted(ids_a, pairs[0])]
    b = area_b[np.searchsorted(ids_b, pairs[1])]
    iou = inter / (a + b - inter)
    order = np.lexsort((-iou, pairs[0]))  # per id, the best overlap first
    pairs, iou = pairs[:, order], iou[order]
    first = np.r_[True, pairs[0, 1:] != pairs[0, :-1]]
    return pairs[0, first], pairs[1, first], iou[first]


class StackIds:
    """Call with each plane's (leading index, instance labels) in stack order; returns the labels renumbered.

    Ids are unique across the whole stack (each plane's ids follow the largest id so far). With
    ``stitch_threshold`` > 0, an object overlapping an object of the previous plane along the last
    leading axis (Z) with IoU >= the threshold takes that object's id.
    """

    def __init__(self, stitch_threshold: float = 0.0) -> None:
        if not (isinstance(stitch_threshold, (int, float, np.number)) and 0 <= stitch_threshold <= 1):
            raise InputError(f"stitch_threshold must be between 0 (off) and 1, got {stitch_threshold!r}.")
        self.stitch_threshold = float(stitch_threshold)
        self.max_id = 0
        self._previous: tuple[tuple[int, ...], np.ndarray] | None = None

    def __call__(self, idx: tuple[int, ...], labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        ids = np.unique(labels[labels > 0])
        lut_keys = ids.astype(np.int64)
        new = np.zeros(len(ids), np.int64)
        linked = np.zeros(len(ids), bool)
        prev = self._previous
        if self.stitch_threshold > 0 and prev is not None and len(ids) and _neighbours(prev[0], idx):
            own, theirs, iou = _best_overlaps(labels, prev[1])
            keep = iou >= self.stitch_threshold
            pos = np.searchsorted(lut_keys, own[keep])
            new[pos] = theirs[keep]
            linked[pos] = True
        n_new = int((~linked).sum())
        new[~linked] = self.max_id + 1 + np.arange(n_new)
        self.max_id += n_new
        out = np.zeros(labels.shape, np.int32 if self.max_id < 2**31 else np.int64)
        if len(ids):
            fg = labels > 0
            out[fg] = new[np.searchsorted(lut_keys, labels[fg])]
        self._previous = (tuple(idx), out)
        return out


def _neighbours(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Consecutive planes along the last leading axis (Z), the other leading indices (T) equal."""
    return len(a) == len(b) > 0 and a[:-1] == b[:-1] and b[-1] == a[-1] + 1
