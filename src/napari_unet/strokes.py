"""Scribbles drawn from ground truth the way a person paints: short lines across a few objects, and short
lines in the background well away from objects. For the sample data, the demo and the strokes benchmark."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line
from skimage.measure import label as connected
from skimage.measure import regionprops


def scribbles_from_truth(
    truth: np.ndarray,
    object_fraction: float = 0.1,
    max_fraction: float = 0.002,
    seed: int = 0,
    background_margin: float = 4.0,
) -> np.ndarray:
    """Sparse labels (0 = unannotated, 1 = background, 2 = foreground) from a 2D instance or binary mask.

    Foreground: one line along the major axis of ``object_fraction`` of the objects (at least one), over
    the middle 60% of the object. Background: as many short lines, each at least ``background_margin``
    pixels from any object. Together at most ``max_fraction`` of the pixels.
    """
    truth = np.asarray(truth)
    if truth.ndim != 2:
        raise ValueError(f"scribbles_from_truth takes a 2D mask, got shape {truth.shape}")
    rng = np.random.default_rng(seed)
    instances = truth if truth.max() > 1 else connected(truth > 0)
    regions = [r for r in regionprops(instances) if r.area >= 9]
    budget = int(max_fraction * truth.size)
    out = np.zeros(truth.shape, np.uint8)
    if not regions or budget < 4:
        return out
    n_obj = max(1, round(object_fraction * len(regions)))
    fg_budget = budget // 2
    for r in rng.permutation(len(regions))[:n_obj]:
        reg = regions[r]
        cy, cx = reg.centroid
        half = 0.3 * max(reg.axis_major_length, 3.0)
        dy, dx = np.cos(reg.orientation), np.sin(reg.orientation)
        rr, cc = _clipped_line(cy - half * dy, cx - half * dx, cy + half * dy, cx + half * dx, truth.shape)
        inside = instances[rr, cc] == reg.label
        rr, cc = rr[inside], cc[inside]
        if np.count_nonzero(out == 2) + len(rr) > fg_budget:
            break
        out[rr, cc] = 2
    n_fg = int(np.count_nonzero(out == 2))
    far = ndi.distance_transform_edt(truth == 0) > background_margin
    candidates = np.argwhere(far)
    if len(candidates) == 0:
        return out
    bg_budget = budget - n_fg
    length = 12
    for _ in range(4 * n_obj + 20):
        if np.count_nonzero(out == 1) + length > bg_budget:
            break
        y, x = candidates[rng.integers(len(candidates))]
        angle = rng.uniform(0, np.pi)
        rr, cc = _clipped_line(y, x, y + length * np.sin(angle), x + length * np.cos(angle), truth.shape)
        ok = far[rr, cc] & (out[rr, cc] == 0)
        out[rr[ok], cc[ok]] = 1
    return out


def _clipped_line(y0: float, x0: float, y1: float, x1: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    rr, cc = line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
    keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    return rr[keep], cc[keep]
