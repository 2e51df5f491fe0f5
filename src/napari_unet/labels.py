"""The two label conventions, the guess between them, and their checks: one place for what a painted value means.

- sparse (scribbles): 0 = not annotated (ignored), 1 = background, 2..K+1 = classes 1..K;
- dense (complete masks): 0 = background, > 0 = foreground (instance masks count as binary), or, with
  ``multiclass=True``, the class id.

Internally a target is an int16 array with -1 = ignore, 0 = background, k = class k (and, during training
on scribbles, ``PSEUDO + k`` = class k from pseudo-labels, see ``training/pseudo.py``).

The guess (``label_guess``) looks at the shape of what is painted: scribbles are thin or elongated strokes,
complete masks are compact regions (objects, or large areas of a class). Where the shapes do not tell, it
answers ``"ask"`` and the caller asks the user (the CLI and the API raise an error naming the choice, the
widget leaves its mode unset with a hint). ``multiclass=True`` always means dense masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .annotation import Annotation as Annotation  # one home for label conventions: re-exported
from .errors import InputError

#: the one palette of label colours: scribble label 1 = background, then classes 1, 2, ... (a prediction or
#: preview shows class k in the colour of scribble label k + 1); the sample's strokes, new scribble layers,
#: the legend, the live preview and semantic predictions all use it
SCRIBBLE_COLORS = ("#3d7bff", "#ffd000", "#ff3db4", "#39e66e", "#ff7a1a", "#b27aff", "#00d5ff", "#e6e6e6")


def scribble_color(label: int) -> str:
    """Colour of scribble label ``label`` (1 = background, 2 = class 1, ...); cycles after eight."""
    return SCRIBBLE_COLORS[(label - 1) % len(SCRIBBLE_COLORS)] if label >= 1 else "#000000"


def scribble_color_dict(n_labels: int, offset: int = 0) -> dict:
    """napari's label colour dict: 0 (and None) transparent, value k in the colour of scribble label k + offset
    (``offset`` 1: class k of a prediction in the colour its scribbles are painted in)."""
    colors: dict = {None: "transparent", 0: "transparent"}
    colors.update({k: scribble_color(k + offset) for k in range(1, n_labels + 1)})
    return colors


IGNORE = -1
PSEUDO = 64  # target value PSEUDO + k: class k from pseudo-labels (weaker supervision than a stroke)
MAX_CLASSES = 32

_MAX_LABEL = 2**53  # beyond this a float is not a whole number any more and an id is surely a mistake


def integer_labels(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """``labels`` as int64 (bool as int32), or an ``InputError`` naming ``what`` for a dtype or value that is no
    label id: negative, fractional, NaN or inf, or beyond 2**53."""
    if labels is None:
        raise InputError(f"The {what} are missing (None): give an integer label image.")
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.int32)
    if labels.dtype.kind not in "iuf":
        raise InputError(
            f"The {what} have dtype {labels.dtype}: give an integer label image "
            "(0 = unlabeled/background, 1, 2, ... = labels)."
        )
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)):
            raise InputError(f"The {what} contain NaN or inf: labels must be whole numbers >= 0.")
        if np.any(labels != np.round(labels)):
            raise InputError(f"The {what} contain fractional values: labels must be whole numbers >= 0.")
    if labels.size and labels.min() < 0:
        raise InputError(f"The {what} contain negative values ({labels.min()}): labels must be >= 0.")
    if labels.size and float(labels.max()) >= _MAX_LABEL:
        raise InputError(
            f"The {what} contain huge values (up to {labels.max():.4g}): label ids must be below 2**53; "
            "relabel them 1, 2, 3, ... (e.g. skimage.segmentation.relabel_sequential)."
        )
    return labels.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------- the guess

_MAX_GUESSED_SCRIBBLE_ID = 9  # background + up to 8 classes; more distinct ids look like instance masks
_THIN = 3.0  # a region at most this many pixels thick is a stroke (a 1-3 px brush)
_ELONGATED = 4.0  # area / thickness**2 at least this: a stroke (a disk is 0.8, a 3:1 ellipse 2.4)
_COMPACT = 2.5  # area / thickness**2 at most this: a compact region (an object)
_REGION = 31.0  # thicker than this: a painted area, not a brush stroke
_DECISIVE = 0.75  # fraction of the painted pixels whose shape must agree
NOTHING_PAINTED = "nothing is painted yet"  # the reason of the guess when there is nothing to go by


@dataclass(frozen=True)
class LabelGuess:
    """``mode`` is 'sparse', 'dense' or 'ask' (the shapes do not tell); ``reason`` says why, in a few words."""

    mode: str
    reason: str


def _shape_fractions(plane: np.ndarray) -> np.ndarray:
    """Painted pixels of one 2D plane in stroke-like, compact and unclear regions: (3,) int counts.

    A region is a connected set of pixels of one value; its thickness is the diameter of the largest disk
    inside it (from a distance transform), and area / thickness**2 says how elongated it is. The distance
    transform runs on each region's bounding box, not the plane: a few strokes on a 2048 x 2048 plane cost
    milliseconds, not the 0.6 s of a whole-plane transform (this runs on the GUI thread when layers change).
    """
    from scipy import ndimage as ndi
    from skimage.measure import label as connected

    nz = plane != 0
    rows, cols = np.flatnonzero(nz.any(1)), np.flatnonzero(nz.any(0))
    y0, y1 = max(int(rows[0]) - 1, 0), int(rows[-1]) + 2
    x0, x1 = max(int(cols[0]) - 1, 0), int(cols[-1]) + 2
    lab = plane[y0:y1, x0:x1]
    p = np.pad(lab, 1, mode="edge")  # the image border is no boundary: a region cut by it is not thinner
    c = p[1:-1, 1:-1]
    inner = (c != 0) & (p[:-2, 1:-1] == c) & (p[2:, 1:-1] == c) & (p[1:-1, :-2] == c) & (p[1:-1, 2:] == c)
    regions, n = connected(lab, background=0, return_num=True)
    area = np.bincount(regions.ravel(), minlength=n + 1)[1:].astype(float)
    boxes = ndi.find_objects(regions)
    if sum((s[0].stop - s[0].start) * (s[1].stop - s[1].start) for s in boxes) >= lab.size:
        dist = ndi.distance_transform_edt(inner)  # big regions: one transform of the plane is cheaper
        thickness = 2 * np.asarray(ndi.maximum(dist, regions, np.arange(1, n + 1)), float) + 1
    else:
        # a region's inner pixels are ringed by its own edge pixels (or the image border), so the nearest
        # non-inner pixel always lies within its box grown by one: each transform is exact on its box
        thickness = np.empty(n)
        for k, (ys, xs) in enumerate(boxes):
            box = (slice(max(ys.start - 1, 0), ys.stop + 1), slice(max(xs.start - 1, 0), xs.stop + 1))
            mine = inner[box] & (regions[box] == k + 1)
            thickness[k] = 2 * (ndi.distance_transform_edt(mine).max() if mine.any() else 0.0) + 1
    elongation = area / thickness**2
    stroke = (thickness <= _THIN) | ((elongation >= _ELONGATED) & (thickness < _REGION))
    compact = ~stroke & ((thickness >= _REGION) | (elongation <= _COMPACT))
    return np.array([area[stroke].sum(), area[compact].sum(), area[~stroke & ~compact].sum()], np.int64)


def label_guess(labels_list: Sequence[np.ndarray]) -> LabelGuess:
    """Scribbles ('sparse'), complete masks ('dense') or 'ask', from what is painted; a pure function.

    In order: nothing painted -> ask; more than 9 ids, or no label 1 (the scribbles' background), or half
    the pixels or more painted -> dense; otherwise the shapes decide: mostly thin or elongated strokes ->
    sparse, mostly compact regions -> dense, a mix or thick short strokes -> ask.
    """
    arrays = [np.asarray(lab) for lab in labels_list]
    total = sum(a.size for a in arrays)
    annotated = sum(int(np.count_nonzero(a)) for a in arrays)
    if annotated == 0:
        return LabelGuess("ask", NOTHING_PAINTED)
    values: set[int] = set()
    for a in arrays:
        values |= set(np.unique(a).tolist())
    values.discard(0)
    if len(values) > _MAX_GUESSED_SCRIBBLE_ID or max(values) > MAX_CLASSES + 1:
        return LabelGuess("dense", f"{len(values)} different ids: an instance or class mask")
    if 1 not in values:
        return LabelGuess("dense", "no label 1 (the background of scribbles)")
    if annotated >= 0.5 * total:
        return LabelGuess("dense", f"{100 * annotated / total:.0f}% of the pixels are labelled")
    counts = np.zeros(3, np.int64)
    for a in arrays:
        if a.ndim < 2:
            continue
        for plane in a.reshape(-1, *a.shape[-2:]):
            if plane.any():
                counts += _shape_fractions(plane)
    stroke, compact, _ = counts / max(int(counts.sum()), 1)
    if stroke >= _DECISIVE:
        return LabelGuess("sparse", "thin strokes")
    if compact >= _DECISIVE:
        return LabelGuess("dense", "compact regions")
    return LabelGuess("ask", "neither clearly thin strokes nor complete regions")


def guess_label_mode(labels_list: Sequence[np.ndarray]) -> str:
    """'sparse', 'dense' or 'ask' (see ``label_guess``)."""
    return label_guess(labels_list).mode


def looks_like_instances(labels: np.ndarray) -> bool:
    """True for an instance mask (one id per object: more ids than a scribble or class image uses)."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.dtype.kind not in "biu":
        return False
    if int(labels.max()) > MAX_CLASSES + 1:
        return True
    return len(np.unique(labels[labels > 0])) > _MAX_GUESSED_SCRIBBLE_ID


def looks_like_label_image(array) -> bool:
    """True for an integer image that is really labels (a mask or instance ids opened as an image).

    Labels are piecewise constant: besides 0, at most two values (a binary mask, 0/1 or 0/255), or objects
    whose neighbouring pixels nearly always share one value, on a background of 0. Microscopy images are
    noisy inside objects. Looks at up to 4 planes, strided to about 512 x 512: cheap on any size.
    """
    shape = tuple(getattr(array, "shape", ()))
    dtype = np.dtype(getattr(array, "dtype", np.float64))
    if len(shape) < 2 or dtype.kind not in "biu" or 0 in shape:
        return False
    step = max(1, max(shape[-2:]) // 512)
    lead = shape[:-2]
    n = int(np.prod(lead)) if lead else 1
    planes = []
    for k in sorted({int(i) for i in np.linspace(0, n - 1, min(n, 4))}):
        idx = np.unravel_index(k, lead) if lead else ()
        planes.append(np.asarray(array[tuple(idx) + (slice(None, None, step), slice(None, None, step))]))
    sample = np.stack(planes).astype(np.int64, copy=False)
    if not (sample == 0).any() or (sample < 0).any():
        return False
    values = np.unique(sample)
    if len(values) <= 3:
        return True  # 0 and one or two values: a mask (or scribbles)
    if np.count_nonzero(sample == 0) < 0.2 * sample.size:
        return False
    a, b = sample[..., :, :-1], sample[..., :, 1:]
    inside = (a > 0) & (b > 0)
    return bool(inside.sum() >= 16 and np.count_nonzero(a[inside] == b[inside]) >= 0.9 * inside.sum())


def resolve_label_mode(labels_list: Sequence[np.ndarray], mode: str = "auto", multiclass: bool = False) -> str:
    """The mode to train with: ``mode`` when given, dense for ``multiclass``, else the guess; asks by raising."""
    if mode in ("sparse", "dense"):
        return mode
    if mode != "auto":
        raise InputError(f"Unknown label mode {mode!r}: use 'sparse' (scribbles) or 'dense' (complete masks).")
    if multiclass:
        return "dense"  # class ids: complete masks by definition
    guess = label_guess(labels_list)
    if guess.mode != "ask":
        return guess.mode
    if guess.reason == NOTHING_PAINTED:
        return "sparse"  # the count of classes then says what to paint
    raise InputError(
        f"Cannot tell whether the labels are scribbles or complete masks ({guess.reason}): choose "
        "mode='sparse' for scribbles (1 = background, 2.. = classes) or mode='dense' for complete masks "
        "(0 = background); on the command line --sparse or --dense."
    )


def labels_to_target(labels: np.ndarray, mode: str, multiclass: bool = False) -> np.ndarray:
    """Map a label image to the internal target (-1 ignore, 0 background, k class)."""
    labels = integer_labels(labels)
    if mode == "sparse":
        if labels.size and labels.max() > MAX_CLASSES + 1:
            raise InputError(
                f"Sparse labels go up to {labels.max()}, more than {MAX_CLASSES} classes: scribbles use "
                "1 = background and 2, 3, ... for classes. For instance masks use dense mode."
            )
        return (labels - 1).astype(np.int16)
    if mode == "dense":
        if not multiclass:
            return (labels > 0).astype(np.int16)
        if labels.size and labels.max() > MAX_CLASSES:
            raise InputError(
                f"Multi-class labels go up to {labels.max()}, more than {MAX_CLASSES} classes: "
                "for instance masks train a binary model (multiclass off)."
            )
        return labels.astype(np.int16)
    raise InputError(f"Unknown label mode {mode!r}: use 'sparse' (scribbles) or 'dense' (complete masks).")


def count_classes(targets: Sequence[np.ndarray]) -> tuple[int, np.ndarray]:
    """Number of foreground classes and the pixel count of each class id; errors when training is impossible."""
    counts = np.zeros(MAX_CLASSES + 1, dtype=np.int64)
    for t in targets:
        valid = t[t >= 0]
        counts += np.bincount(valid.ravel(), minlength=MAX_CLASSES + 1)[: MAX_CLASSES + 1]
    present = np.flatnonzero(counts)
    if present.size == 0:
        raise InputError(
            "Nothing is annotated: paint background (label 1) and foreground (label 2) strokes, or give "
            "complete masks in dense mode."
        )
    if present.size == 1:
        which = "background" if present[0] == 0 else f"class {present[0]}"
        raise InputError(
            f"Only {which} is annotated: annotate at least background and one foreground class "
            "(scribbles: 1 = background, 2 = foreground)."
        )
    return int(present.max()), counts


def is_instance_labels(labels: np.ndarray) -> bool:
    """Dense labels with more than one object id (0 = background): instance masks rather than a binary mask."""
    labels = np.asarray(labels)
    return labels.size > 0 and int(labels.max()) > 1


def as_objects(labels: np.ndarray) -> np.ndarray:
    """Object ids of a label image: instance ids as they are, a binary mask split into connected components."""
    labels = np.asarray(labels)
    if labels.dtype == bool or labels.size == 0 or labels.max() <= 1:
        from scipy import ndimage as ndi

        structure = ndi.generate_binary_structure(labels.ndim, 1)
        return ndi.label(labels > 0, structure)[0]
    return labels


# ---------------------------------------------------------------------------------------------- words for people

#: the two conventions in three lines (the widget's 'Labels are' tooltip)
#: scribble values: background, and the first class (what a new scribble layer paints first)
SCRIBBLE_BACKGROUND, SCRIBBLE_FIRST_CLASS = 1, 2
#: the two conventions in a few words, for messages and help texts
SCRIBBLES_SHORT = "0 = not annotated, 1 = background, 2.. = classes"
MASKS_SHORT = "0 = background, > 0 = objects (one id per object: instances) or class ids"
PAINT_FIRST = "paint label 2 on objects and label 1 on background"  # what to do on an empty scribble layer

MODE_HELP = (
    "Scribbles (sparse): 0 = not annotated (ignored), 1 = background, 2 = class 1 (foreground), 3 = class 2, ...\n"
    "Complete masks (dense): 0 = background, any value > 0 = foreground (instance masks work as they are),\n"
    "or the class id with 'dense labels are class ids' (advanced)."
)


def label_meanings(mode: str, n_labels: int, multiclass: bool = False) -> dict[int, str]:
    """What each value 0..n_labels means (binary masks: 1 stands for every value > 0)."""
    if mode == "sparse":
        classes = {v: "foreground" if n_labels == 2 else f"class {v - 1}" for v in range(2, n_labels + 1)}
        return {0: "not annotated", 1: "background", **classes}
    if multiclass:
        return {0: "background", **{v: f"class {v}" for v in range(1, n_labels + 1)}}
    return {0: "background", 1: "foreground"}


def legend_items(mode: str, n_labels: int, multiclass: bool = False) -> list[tuple[int, str]]:
    """A legend of an annotation layer: (value whose colour to show, 0 for none; text), in reading order."""
    meanings = label_meanings(mode, n_labels, multiclass)
    painted = [(v, f"{v} {m}") for v, m in meanings.items() if v]
    if mode == "sparse":
        return painted + [(0, f"(0 = {meanings[0]})")]
    if multiclass:
        return [(0, f"0 {meanings[0]}")] + painted
    return [(0, f"0 {meanings[0]}"), (0, f"any value > 0 {meanings[1]} (instance ids are fine)")]


def annotation_hint(mode: str | None, arrays: Sequence[np.ndarray], reason: str = "") -> str:
    """What ``mode`` makes of these painted arrays and what to do next; ``mode`` None: not chosen (``reason``
    says why the guess could not tell)."""
    if mode is None:
        why = f" ({reason})" if reason else ""
        return (
            f"Cannot tell whether these are scribbles or complete masks{why}: choose in 'Labels are' "
            "(scribbles: 1 = background, 2.. = classes; complete masks: 0 = background)."
        )
    return _scribbles_hint(arrays) if mode == "sparse" else _masks_hint(arrays)


def _scribbles_hint(arrays: Sequence[np.ndarray]) -> str:
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


def _masks_hint(arrays: Sequence[np.ndarray]) -> str:
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
