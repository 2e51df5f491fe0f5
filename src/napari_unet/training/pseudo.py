"""Dense pseudo-labels from a few strokes: the ilastik recipe, then boundaries snapped to image edges.

A few strokes tell the U-Net what the inside of an object and the far background look like, but nothing
about where objects end, so on its own it over-segments. Before training on scribbles, the trainer asks a
random forest on multiscale pixel features (``skimage.feature.multiscale_basic_features``, the ilastik
recipe; a second of work) for class probabilities on every pixel; its confident pixels, plus the strokes,
seed a watershed on the smoothed image's gradient magnitude, so every pixel gets a class and boundaries
fall on the edges, where people draw them. These dense labels are extra, down-weighted supervision: the
strokes still have the last word (see ``losses.sparse_loss``).
"""

from __future__ import annotations

import numpy as np

from ..labels import IGNORE, PSEUDO
from ..threads import preferred_jobs
from .config import default

PSEUDO_CONFIDENCE = default("pseudo_confidence")  # forest probability above which a pixel seeds the watershed


def pixel_features(plane: np.ndarray, sigma_min: float = 1.0, sigma_max: float = 16.0) -> np.ndarray:
    """(H, W, F) float32 features of a (C, H, W) plane: intensity, edges and texture at scales 1..16 px."""
    from skimage.feature import multiscale_basic_features

    feats = multiscale_basic_features(
        np.asarray(plane, np.float32), sigma_min=sigma_min, sigma_max=sigma_max, channel_axis=0
    )
    return feats.astype(np.float32, copy=False)


def forest_probabilities(
    plane: np.ndarray,
    target: np.ndarray,
    n_classes: int,
    seed: int = 0,
    n_estimators: int = 50,
    max_depth: int = 10,
) -> np.ndarray:
    """Class probabilities (n_classes + 1, H, W) of a random forest fit on the annotated pixels of ``target``.

    ``target`` uses the internal convention (-1 ignore, 0 background, k class k). Classes that are not
    annotated in this plane get probability 0.
    """
    from sklearn.ensemble import RandomForestClassifier

    feats = pixel_features(plane)
    valid = target >= 0
    y = target[valid]
    clf = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        n_jobs=preferred_jobs(),
        random_state=seed,
        class_weight="balanced",
    )
    clf.fit(feats[valid], y)
    h, w = target.shape
    proba = clf.predict_proba(feats.reshape(h * w, -1))
    out = np.zeros((n_classes + 1, h, w), np.float32)
    for j, c in enumerate(clf.classes_):
        out[int(c)] = proba[:, j].reshape(h, w)
    return out


def snap_to_edges(
    plane: np.ndarray, probs: np.ndarray, target: np.ndarray, confidence: float = PSEUDO_CONFIDENCE, sigma: float = 1.0
) -> np.ndarray:
    """Dense labels (H, W) int16: pixels whose class probability exceeds ``confidence``, and the strokes,
    seed a watershed on the gradient magnitude of the Gaussian-smoothed plane (summed over channels)."""
    from skimage.filters import gaussian, sobel
    from skimage.segmentation import watershed

    markers = np.zeros(target.shape, np.int32)
    best = probs.argmax(0)
    sure = probs.max(0) > confidence
    markers[sure] = best[sure] + 1
    annotated = target >= 0
    markers[annotated] = target[annotated] + 1
    gradient = np.zeros(target.shape, np.float32)
    for channel in np.asarray(plane, np.float32):
        gradient += sobel(gaussian(channel, sigma))
    if not markers.any():
        return best.astype(np.int16)
    return (watershed(gradient, markers) - 1).astype(np.int16)


def pseudo_labels(
    plane: np.ndarray, target: np.ndarray, n_classes: int, seed: int = 0, confidence: float = PSEUDO_CONFIDENCE
) -> np.ndarray:
    """Dense labels (H, W) int16 in 0..n_classes for one (C, H, W) normalized plane and its sparse target."""
    if not np.any(target >= 0) or len(np.unique(target[target >= 0])) < 2:
        return np.full(target.shape, IGNORE, np.int16)
    probs = forest_probabilities(plane, target, n_classes, seed)
    return snap_to_edges(plane, probs, target, confidence)


def merge(target: np.ndarray, pseudo: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """One training target: the strokes where annotated, ``PSEUDO + class`` where only pseudo-labelled,
    and ignore where ``exclude`` (e.g. held-out validation pixels) or neither."""
    out = np.where(target >= 0, target, np.where(pseudo >= 0, pseudo + PSEUDO, IGNORE)).astype(np.int16)
    if exclude is not None:
        out[exclude & (target < 0)] = IGNORE
    return out


# ---------------------------------------------------------------------------------------------- in tiles

MAX_TILE = 512  # pseudo-labels are built tile by tile: Stop is honoured between tiles and between stages
MARGIN = 48  # context around a tile for its features (3 x the largest feature scale)
FIT_PIXELS_PER_CLASS = 4000  # the forest is fit once every class has this many annotated pixels, or on all
FIT_MIN_TILES = 2


def fingerprint(array: np.ndarray) -> str:
    """A digest of an array's contents: the key under which its features and pseudo-labels are reused."""
    import hashlib

    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def tile_boxes(height: int, width: int, tile: int = MAX_TILE) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) tiles of at most ``tile`` pixels a side, evenly spread, covering the plane once."""

    def cuts(n: int) -> list[int]:
        k = -(-n // tile)
        return [round(i * n / k) for i in range(k + 1)]

    ys, xs = cuts(height), cuts(width)
    return [(ys[a], ys[a + 1], xs[b], xs[b + 1]) for a in range(len(ys) - 1) for b in range(len(xs) - 1)]


class PseudoCache:
    """What pseudo-labelling learns about the images of one session, kept across rounds and Train clicks.

    Painting changes the strokes, not the images: the pixel features of each tile are kept (up to
    ``max_bytes``) and only the forest is refit; the finished pseudo-labels of a plane are kept under the
    fingerprint of the plane and its strokes, so an unchanged plane costs nothing the next round.
    """

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        import threading
        from collections import OrderedDict

        self.max_bytes = max_bytes
        self._features: OrderedDict = OrderedDict()
        self._bytes = 0
        self.labels: dict[tuple[str, str], np.ndarray] = {}
        self.lock = threading.Lock()

    def keep(self, key: tuple[str, str], dense: np.ndarray, most: int = 16) -> None:
        """Keep a finished plane's pseudo-labels (the most recent ``most`` planes)."""
        with self.lock:
            self.labels.pop(key, None)
            self.labels[key] = dense.copy()
            while len(self.labels) > most:
                self.labels.pop(next(iter(self.labels)))

    def features(self, plane: np.ndarray, plane_key: str, outer: tuple[int, int, int, int]) -> np.ndarray:
        key = (plane_key, outer)
        with self.lock:
            if key in self._features:
                self._features.move_to_end(key)
                return self._features[key]
        y0, y1, x0, x1 = outer
        feats = pixel_features(plane[:, y0:y1, x0:x1])
        with self.lock:
            self._features[key] = feats
            self._bytes += feats.nbytes
            while self._bytes > self.max_bytes and len(self._features) > 1:
                _, old = self._features.popitem(last=False)
                self._bytes -= old.nbytes
        return feats


def outer_box(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """A tile's window with ``MARGIN`` pixels of context on each side, within the plane."""
    y0, y1, x0, x1 = box
    return max(0, y0 - MARGIN), min(height, y1 + MARGIN), max(0, x0 - MARGIN), min(width, x1 + MARGIN)


class PseudoLabeler:
    """Dense pseudo-labels for the planes of one training run, built tile by tile within a deadline.

    The forest is fit on the annotated pixels of the tiles with the most strokes (enough of every class,
    not all of a huge plane), then labels tiles in order: tiles with strokes first (where training patches
    are centred), then the rest. Tiles not reached by the deadline keep their strokes only. ``stop()``
    (from any thread) is honoured between tiles and between the stages of a tile.
    """

    def __init__(
        self,
        planes: list[np.ndarray],
        targets: list[np.ndarray],
        n_classes: int,
        seed: int = 0,
        confidence: float = PSEUDO_CONFIDENCE,
        cache: PseudoCache | None = None,
        should_stop=lambda: False,
    ) -> None:
        self.planes, self.targets = planes, targets
        self.n_classes, self.seed, self.confidence = n_classes, seed, confidence
        self.cache = cache if cache is not None else PseudoCache()
        self.should_stop = should_stop
        self.plane_keys = [fingerprint(p) for p in planes]
        self.keys = [(pk, fingerprint(t)) for pk, t in zip(self.plane_keys, targets, strict=True)]
        self.dense: list[np.ndarray] = []
        self.todo: list[tuple[int, tuple[int, int, int, int]]] = []
        stroke_tiles, other_tiles = [], []
        for i, t in enumerate(targets):
            cached = self.cache.labels.get(self.keys[i])
            self.dense.append(cached.copy() if cached is not None else np.full(t.shape, IGNORE, np.int16))
            if cached is not None or len(np.unique(t[t >= 0])) < 2:
                continue  # done before, or nothing to learn from in this plane
            for box in tile_boxes(*t.shape):
                y0, y1, x0, x1 = box
                n = int(np.count_nonzero(t[y0:y1, x0:x1] >= 0))
                (stroke_tiles if n else other_tiles).append((-n, i, box))
        stroke_tiles.sort(key=lambda e: e[0])
        self.stroke_tiles = [(i, box) for _, i, box in stroke_tiles]
        self.todo = self.stroke_tiles + [(i, box) for _, i, box in other_tiles]
        self.forest = None
        self.tiles_done = 0
        self.tiles_total = len(self.todo)

    @property
    def complete(self) -> bool:
        return not self.todo

    def _features(self, i: int, box) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Features of the tile's window (tile plus margin) and where the tile lies inside it."""
        h, w = self.targets[i].shape
        outer = outer_box(box, h, w)
        feats = self.cache.features(self.planes[i], self.plane_keys[i], outer)
        inner = (slice(box[0] - outer[0], box[1] - outer[0]), slice(box[2] - outer[2], box[3] - outer[2]))
        return feats, inner

    def fit(self, deadline: float = float("inf")) -> bool:
        """Fit the forest on the strokes of the tiles with the most annotation; False if stopped first."""
        import time

        from sklearn.ensemble import RandomForestClassifier

        xs, ys, counts = [], [], {}
        classes = self._classes()
        for n, (i, box) in enumerate(self.stroke_tiles):
            if n and len(counts) >= 2:  # past the deadline, one tile with two classes is enough to start
                enough = n >= FIT_MIN_TILES and all(counts.get(c, 0) >= FIT_PIXELS_PER_CLASS for c in classes)
                if enough or time.perf_counter() > deadline:
                    break
            if self.should_stop():
                return False
            feats, inner = self._features(i, box)
            y0, y1, x0, x1 = box
            t = self.targets[i][y0:y1, x0:x1]
            valid = t >= 0
            xs.append(feats[inner][valid])
            ys.append(t[valid])
            for c, k in zip(*np.unique(t[valid], return_counts=True), strict=True):
                counts[int(c)] = counts.get(int(c), 0) + int(k)
        if not xs or len(counts) < 2 or self.should_stop():
            return False
        self.forest = RandomForestClassifier(
            n_estimators=50, max_depth=10, n_jobs=preferred_jobs(), random_state=self.seed, class_weight="balanced"
        ).fit(np.concatenate(xs), np.concatenate(ys))
        return True

    def _classes(self) -> set[int]:
        out: set[int] = set()
        for t in self.targets:
            out.update(np.unique(t[t >= 0]).tolist())
        return out

    def probabilities(self, i: int, box) -> np.ndarray | None:
        """Forest class probabilities (n_classes + 1, h, w) of one tile, or None when stopped."""
        feats, inner = self._features(i, box)
        if self.should_stop():
            return None
        tile = feats[inner]
        h, w = tile.shape[:2]
        proba = self.forest.predict_proba(tile.reshape(h * w, -1))
        out = np.zeros((self.n_classes + 1, h, w), np.float32)
        for j, c in enumerate(self.forest.classes_):
            out[int(c)] = proba[:, j].reshape(h, w)
        return out

    def run(self, deadline: float = float("inf")):
        """Label tiles until all are done, the deadline passes or ``should_stop``; yields each (plane, box)."""
        import time

        if not self.todo:
            return
        if self.forest is None and not self.fit(deadline):
            return
        while self.todo and time.perf_counter() < deadline and not self.should_stop():
            i, box = self.todo[0]
            probs = self.probabilities(i, box)
            if probs is None:
                return
            y0, y1, x0, x1 = box
            self.dense[i][y0:y1, x0:x1] = snap_to_edges(
                self.planes[i][:, y0:y1, x0:x1], probs, self.targets[i][y0:y1, x0:x1], self.confidence
            )
            self.todo.pop(0)
            self.tiles_done += 1
            if not any(j == i for j, _ in self.todo):  # a finished plane is kept for later rounds
                self.cache.keep(self.keys[i], self.dense[i])
            yield i, box
