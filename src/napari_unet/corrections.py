"""Correcting a prediction: an editable copy, what the user has reviewed, and merge / split as one action each.

No Qt, no napari: the Predict dock's correction panel and the Train dock call these on plain arrays. Only what
a person has looked at counts as complete masks when training (``annotation.Annotation(reviewed=...)``): the
objects an edit touched, with a margin of background around them, and the planes marked reviewed. The rest of
the copy stays the model's guess and is not trained on.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: pixels of context around an edited object that count as reviewed (the background the user saw around it)
EDIT_MARGIN = 4


def editable_copy(prediction) -> np.ndarray:
    """A writable copy of a prediction, in a dtype with room for new object ids."""
    data = np.asarray(prediction)
    return data.astype(np.int32 if data.dtype.itemsize >= 4 or data.max(initial=0) > 60000 else np.uint16)


def edited_region(original: np.ndarray, current: np.ndarray, margin: int = EDIT_MARGIN) -> np.ndarray:
    """Pixels counted as reviewed because of edits: in each plane with a change, every object the change
    touched (before or after it: a removed object counts too), the changed pixels, and ``margin`` around them."""
    from scipy import ndimage

    changed = np.asarray(original) != np.asarray(current)
    region = np.zeros(changed.shape, bool)
    if not changed.any():
        return region
    for index in np.ndindex(changed.shape[:-2]):
        plane_changed = changed[index]
        if not plane_changed.any():
            continue
        before, after = np.asarray(original[index]), np.asarray(current[index])
        touched = np.union1d(before[plane_changed], after[plane_changed])
        touched = touched[touched != 0]
        plane = plane_changed | np.isin(before, touched) | np.isin(after, touched)
        if margin > 0:
            plane = ndimage.binary_dilation(plane, iterations=margin)
        region[index] = plane
    return region


def reviewed_mask(original: np.ndarray, current: np.ndarray, marked: np.ndarray | None = None) -> np.ndarray:
    """What counts as complete masks: the edited region and the pixels (planes) marked reviewed."""
    region = edited_region(original, current)
    return region | np.asarray(marked, bool) if marked is not None else region


def mark_plane(marked: np.ndarray, plane: tuple[int, ...]) -> np.ndarray:
    """Mark one plane (its leading indices; () for a 2D image) as reviewed; returns ``marked``."""
    marked[tuple(plane)] = True
    return marked


def merge_labels(labels: np.ndarray, keep: int, absorb: int) -> int:
    """Object ``absorb`` becomes part of object ``keep`` (in place, every plane); returns the pixels relabelled."""
    keep, absorb = int(keep), int(absorb)
    if keep == absorb or keep == 0 or absorb == 0:
        raise InputError("Merge needs two different object ids, neither 0 (0 is background).")
    where = labels == absorb
    n = int(np.count_nonzero(where))
    if n == 0:
        raise InputError(f"There is no object {absorb} to merge into {keep}.")
    if not np.any(labels == keep):
        raise InputError(f"There is no object {keep} to merge {absorb} into.")
    labels[where] = keep
    return n


def split_label(plane: np.ndarray, label: int, new_label: int | None = None) -> int:
    """Split object ``label`` of a 2D ``plane`` in two (in place) along the watershed between its two widest
    parts (the two highest peaks of the distance to its border; a straight cut across its long axis when it has
    one peak). Returns the new object's id (``new_label`` or the highest id + 1)."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    if plane.ndim != 2:
        raise InputError("Split works on one plane: choose the plane in the viewer first.")
    mask = plane == int(label)
    if label == 0 or np.count_nonzero(mask) < 2:
        raise InputError(f"There is no object {label} (of at least 2 pixels) in this plane to split.")
    new_label = int(plane.max()) + 1 if new_label is None else int(new_label)
    if plane.dtype.kind in "ui" and new_label > np.iinfo(plane.dtype).max:
        raise InputError("No room for a new object id in this layer's data type.")
    distance = ndimage.distance_transform_edt(mask)
    seeds = _two_seeds(mask, distance)
    markers = np.zeros(plane.shape, np.int32)
    for k, (r, c) in enumerate(seeds, start=1):
        markers[r, c] = k
    parts = watershed(-distance, markers, mask=mask)
    plane[parts == 2] = new_label
    return new_label


def _two_seeds(mask: np.ndarray, distance: np.ndarray) -> list[tuple[int, int]]:
    """Two seed points: the two highest separate peaks of ``distance``, else the ends of the long axis."""
    from skimage.feature import peak_local_max

    peaks = peak_local_max(distance, labels=mask.astype(np.int32), num_peaks=2, exclude_border=False, min_distance=2)
    if len(peaks) == 2:
        return [tuple(int(v) for v in p) for p in peaks]
    coords = np.argwhere(mask).astype(float)
    centred = coords - coords.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]  # the long axis
    along = centred @ axis
    ends = [coords[np.argmin(along)], coords[np.argmax(along)]]
    return [tuple(int(v) for v in p) for p in ends]
