"""Objects learned from instance masks: the boundary target, its decoding, and the scribble-based object size.

A model trained on instance masks (one id per object) predicts three classes: background, object interior
and object boundary (the object's pixels that touch another object or the background,
``skimage.segmentation.find_boundaries(mode="inner")``). Touching objects are then separated by a band of
boundary pixels the network has learned to see, instead of by the straight lines a distance-transform
watershed draws across any waist of a binary mask.

Decoding (no per-image parameter): the foreground is where the background probability is below 1 - threshold;
the interior (p > 0.5) is cut into seeds by a distance-transform watershed spaced for the typical object size
measured on the training masks (``watershed_spacing``; only where touching objects stayed joined: the learnt boundaries have
already separated most of them); a watershed flooding the boundary probability from the seeds, inside the
foreground, gives every foreground pixel to an object, so objects keep their full extent (boundary
included); specks below a fraction of the typical object area are dropped.

For scribbles there are no object masks, so no boundary to learn: the typical object size is estimated from
the foreground strokes (their thickness across objects), and it sets the distance-transform watershed's
spacing and the size of the specks removed and holes filled in the semantic output.
"""

from __future__ import annotations

import numpy as np

from .training.config import DEFAULT_THRESHOLD

MIN_SEED = 4  # pixels: a smaller interior piece is noise, not an object's core
MIN_OBJECT = 8  # pixels: objects smaller than this are dropped (as split_instances does)


def boundary_target(labels: np.ndarray) -> np.ndarray:
    """int16 target of an instance label image (2D or a stack): 0 background, 1 interior, 2 boundary.

    Boundaries are computed plane by plane, as the network sees planes. A binary mask gives its connected
    pieces' outlines (touching objects in it cannot be told apart).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.int16)
    for idx in np.ndindex(*labels.shape[:-2]):
        plane = labels[idx]
        if plane.size and plane.max() <= 1:
            plane = ndi.label(plane > 0)[0]
        fg = plane > 0
        t = out[idx]
        t[fg] = 1
        t[find_boundaries(plane, connectivity=1, mode="inner") & fg] = 2
    return out


def foreground(probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Foreground (interior or boundary) of a (3, H, W) boundary-model probability map, as uint8 0/1."""
    return ((1.0 - probs[0]) > threshold).astype(np.uint8)


def decode_instances(
    probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD, object_size: float | None = None
) -> np.ndarray:
    """int32 object ids from (3, H, W) probabilities of background, interior, boundary.

    The interior (p > 0.5) is split where the network left touching objects joined by a distance-transform
    watershed spaced for objects of ``object_size`` (the typical diameter, from the training masks); its
    pieces seed a watershed of the boundary probability over the foreground; objects smaller than
    ``speck_size(object_size)`` are dropped.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    fg = foreground(probs, threshold).astype(bool)
    interior = (probs[1] > 0.5) & fg
    seeds = split_instances(interior, watershed_spacing(object_size), MIN_SEED)
    # a foreground piece with no seed (a thin or tiny object) is an object of its own
    pieces, n_pieces = ndi.label(fg)
    if n_pieces:
        seeded = np.zeros(n_pieces + 1, bool)
        seeded[pieces[seeds > 0]] = True
        lonely = ~seeded[pieces] & fg
        if lonely.any():
            seeds = np.where(lonely, pieces + seeds.max(), seeds)
    if not seeds.any():
        return np.zeros(fg.shape, np.int32)
    labels = watershed(probs[2], seeds, mask=fg)
    return drop_small_objects(labels, max(MIN_OBJECT, speck_size(object_size)))


def drop_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """int32 ids 1..n of the objects of at least ``min_size`` pixels or voxels (the others become background)."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    ids = np.zeros(len(sizes), np.int32)
    ids[keep] = np.arange(1, int(keep.sum()) + 1)
    return ids[labels]


# ---------------------------------------------------------------------------------------------- scribbles

# specks and holes below this fraction of the typical object's area are cleaned away (0.1 dropped true small
# nuclei of the DSB2018 image's left half, 0 kept specks of a few pixels)
SPECK_FRACTION = 0.05


def object_size_from_masks(labels: np.ndarray) -> float | None:
    """Typical object diameter (pixels) of instance masks: the median over objects of the diameter of the
    disc of the same area (objects counted plane by plane). None without objects."""
    from .labels import as_objects

    labels = np.asarray(labels)
    areas = []
    for idx in np.ndindex(*labels.shape[:-2]):
        counts = np.bincount(as_objects(labels[idx]).ravel().astype(np.int64))[1:]
        areas.append(counts[counts > 0])
    areas = np.concatenate(areas) if areas else np.zeros(0)
    return float(np.sqrt(4 * np.median(areas) / np.pi)) if areas.size else None


def object_size_from_strokes(labels: np.ndarray) -> float | None:
    """Typical object diameter (pixels) from scribbles (sparse labels: 2, 3, ... = foreground classes): the
    median length of the foreground strokes, which are painted across objects. None with no stroke of at
    least 3 pixels. A stroke is usually shorter than the object it crosses, so this errs small (safe for
    cleaning: nothing object-sized is removed)."""
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    lengths = []
    for idx in np.ndindex(*labels.shape[:-2]):
        fg = labels[idx] >= 2
        if not fg.any():
            continue
        pieces, n = ndi.label(fg, np.ones((3, 3), bool))
        sizes = np.bincount(pieces.ravel())
        for k, sl in enumerate(ndi.find_objects(pieces), start=1):
            if sl is not None and sizes[k] >= 3:
                lengths.append(float(np.hypot(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)))
    return float(np.median(lengths)) if lengths else None


def speck_size(object_size: float | None) -> int:
    """Area (pixels) below which a piece of foreground (or a hole in one) is noise for objects of this size."""
    if not object_size:
        return 0
    return int(SPECK_FRACTION * np.pi * (object_size / 2) ** 2)


def clean_mask(labels: np.ndarray, object_size: float | None) -> np.ndarray:
    """Semantic labels with specks removed and holes filled below ``speck_size(object_size)`` pixels.

    Binary labels only (a multi-class map is returned unchanged): holes take the class around them.
    """
    area = speck_size(object_size)
    if area < 2 or labels.max() > 1:
        return labels
    mask = _drop_small_pieces(labels > 0, area)
    mask = ~_drop_small_pieces(~mask, area)  # holes: small pieces of background
    return mask.astype(labels.dtype)


def _drop_small_pieces(mask: np.ndarray, max_size: int) -> np.ndarray:
    """``mask`` without its 4-connected pieces of at most ``max_size`` pixels."""
    from scipy import ndimage as ndi

    pieces, n = ndi.label(mask)
    if n == 0:
        return mask
    keep = np.bincount(pieces.ravel()) > max_size
    keep[0] = False
    return keep[pieces]


SEED_SPACING = 3  # seeds of one object's split lie at least its diameter / this apart


def watershed_spacing(object_size: float | None, default: int = 4) -> int:
    """The distance-transform watershed's ``min_distance`` for objects of this diameter (never below the default).

    A third of the diameter: touching objects have centres about a diameter apart, so they still split, while an
    elongated object's distance map, whose ridge has several bumps, no longer does. A fifth (before) over-split:
    on 4 models of the DSB2018 halves (2 splits x 150-300 steps) object F1 rose from 0.911 / 0.832 to 0.929 /
    0.852 on average at IoU 0.5 / 0.7 (the worst from 0.883 / 0.741 to 0.908 / 0.766).
    """
    if not object_size:
        return default
    return max(default, int(round(object_size / SEED_SPACING)))


def split_instances(mask: np.ndarray, min_distance: int = 4, min_size: int = 8) -> np.ndarray:
    """Instance labels from a binary mask; touching objects are split by a distance-transform watershed."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    mask = np.asarray(mask, bool)
    components, n = ndi.label(mask)
    if min_size > 1 and n:
        keep = np.bincount(components.ravel()) >= min_size
        keep[0] = False
        mask = keep[components]
        components, n = ndi.label(mask)
    if n == 0:
        return components.astype(np.int32)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=components, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a component without a peak (thin or tiny) still becomes one object
    without = np.setdiff1d(np.arange(1, n + 1), np.unique(components[markers > 0]))
    for k, comp in enumerate(without, start=len(peaks) + 1):
        markers[components == comp] = k
    labels = watershed(-dist, markers, mask=mask)
    return labels.astype(np.int32)
