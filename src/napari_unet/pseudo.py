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

from .data import IGNORE, PSEUDO


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
        n_estimators=n_estimators, max_depth=max_depth, n_jobs=-1, random_state=seed, class_weight="balanced"
    )
    clf.fit(feats[valid], y)
    h, w = target.shape
    proba = clf.predict_proba(feats.reshape(h * w, -1))
    out = np.zeros((n_classes + 1, h, w), np.float32)
    for j, c in enumerate(clf.classes_):
        out[int(c)] = proba[:, j].reshape(h, w)
    return out


def snap_to_edges(
    plane: np.ndarray, probs: np.ndarray, target: np.ndarray, confidence: float = 0.75, sigma: float = 1.0
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
    plane: np.ndarray, target: np.ndarray, n_classes: int, seed: int = 0, confidence: float = 0.75
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
