"""Tiled, batched prediction of 2D images and Z/T stacks, probabilities to labels, and instances.

Tiles overlap and are blended with a linear ramp, so seams do not show; every plane of a stack is read,
predicted and handed back one at a time (``iter_predict``), so memory does not grow with the stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .data import check_fits, check_image, guess_channel_axis, iter_slices, normalize, spatial_shape
from .errors import InputError
from .io import release_pages
from .model import UNet
from .runtime import (
    TILE_CANDIDATES,
    choose_tile,
    inference_network,
    pick_device,
    pick_precision,
    tile_rates,
    tilings,
)
from .stitching import StackIds

DEFAULT_OVERLAP = 64
# tile_size=None (the default) picks the tile per machine and plane (runtime.choose_tile): the network's
# measured speed on each candidate tiling's tile shape, times the pixels that tiling computes. DEFAULT_TILE is
# the fixed choice where measuring is not wanted: 1024 pixels plus the overlap, the fastest on AMX CPUs.
DEFAULT_TILE = 1024 + DEFAULT_OVERLAP
MAX_BATCH_PIXELS = 1 << 21  # tiles per forward pass: at most ~2 Mpx, so memory stays bounded


def _tiles(length: int, tile: int, overlap: int, multiple: int = 16) -> tuple[int, list[int]]:
    """Tile size and start offsets along one axis: as few tiles as ``tile`` allows, spread evenly.

    The tiles shrink to just cover the axis with at least ``overlap`` between neighbours (rounded up to a size
    the network takes without padding), instead of a last tile that overlaps its neighbour by most of its
    width: on a 2048-pixel axis with 512-pixel tiles that is 5 tiles of 464, not 4 of 512 plus one more.
    """
    if length <= tile:
        return length, [0]
    n = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (n - 1) * overlap) // n)
    size = min(tile, -(-size // multiple) * multiple, length)
    step = (length - size) / (n - 1)
    return size, [int(round(i * step)) for i in range(n)]


def _ramp(n: int, overlap: int) -> np.ndarray:
    """1D blending weights: 1 in the middle, falling linearly to near 0 across the overlap at each end."""
    if overlap <= 0:
        return np.ones(n, np.float32)
    i = np.arange(n, dtype=np.float32)
    return np.clip((np.minimum(i, n - 1 - i) + 0.5) / (overlap / 2 + 0.5), 1e-3, 1.0)


def _check_tiling(tile_size: int | None, overlap: int, batch_size: int) -> None:
    if tile_size is None:
        tile_size = DEFAULT_TILE
    elif isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)):
        raise InputError(f"tile_size must be a whole number of pixels or None (auto), got {tile_size!r}.")
    if tile_size < 16:
        raise InputError(f"tile_size must be at least 16, got {tile_size}.")
    if not 0 <= overlap < tile_size:
        raise InputError(f"overlap must be in [0, tile_size), got {overlap}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")


@torch.inference_mode()
def predict_proba_plane(
    model: UNet,
    plane: np.ndarray,
    tile_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> np.ndarray:
    """Class probabilities (K, H, W) of one normalized (C, H, W) plane: K = 1 (foreground) or classes + 1."""
    _check_tiling(tile_size, overlap, batch_size)
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    prec = pick_precision(dev, precision)
    net = inference_network(model, dev, prec)
    return _proba(net, model, plane, tile_size, overlap, batch_size, dev, prec)


def auto_tile(model: UNet, net: torch.nn.Module, height: int, width: int, overlap: int, dev, precision: str) -> int:
    """The fastest tiling for this plane on this machine: its candidate tile shapes are timed once per
    machine and model shape (``runtime.tile_rates``), then read from the cache."""
    multiple = 2 ** getattr(model, "depth", 4)
    if max(height, width) <= min(TILE_CANDIDATES) + overlap:
        return max(height, width) + multiple  # one tile whatever the speeds: nothing to measure
    plans = tilings(height, width, overlap, multiple)
    shapes = [(th, tw) for th, tw, _ in plans.values()]
    return choose_tile(tile_rates(model, net, dev, precision, shapes), height, width, overlap, multiple, plans)


@torch.inference_mode()
def _proba(
    net: torch.nn.Module,
    model: UNet,
    plane: np.ndarray,
    tile_size: int | None,
    overlap: int,
    batch_size: int,
    dev,
    precision: str,
) -> np.ndarray:
    """Tiled, batched, blended probabilities of one plane with a network from ``inference_network``.

    A batch holds at most ``batch_size`` tiles and about ``MAX_BATCH_PIXELS``, so memory does not depend on
    the image size; the ramp weights are applied to the whole batch at once.
    """
    _, h, w = plane.shape
    multiple = 2 ** getattr(model, "depth", 4)
    if tile_size is None:
        tile_size = auto_tile(model, net, h, w, overlap, dev, precision)
        batch_size = 1  # tiles were timed one per forward: a batch of them no longer fits the caches they fit
    th, ys = _tiles(h, tile_size, overlap, multiple)
    tw, xs = _tiles(w, tile_size, overlap, multiple)
    origins = [(y, x) for y in ys for x in xs]
    batch_size = max(1, min(int(batch_size), MAX_BATCH_PIXELS // (th * tw)))

    def probabilities(batch: np.ndarray) -> torch.Tensor:
        logits = net(torch.from_numpy(np.ascontiguousarray(batch)).to(dev))
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    if len(origins) == 1:  # the whole plane in one tile: no blending
        return probabilities(plane[None])[0].cpu().numpy()
    weight = torch.from_numpy(
        np.outer(_ramp(th, overlap if len(ys) > 1 else 0), _ramp(tw, overlap if len(xs) > 1 else 0))
    )
    weight_dev = weight.to(dev)
    out = torch.zeros((model.out_channels, h, w), dtype=torch.float32)
    norm = torch.zeros((h, w), dtype=torch.float32)
    for i in range(0, len(origins), batch_size):
        chunk = origins[i : i + batch_size]
        probs = probabilities(np.stack([plane[:, y : y + th, x : x + tw] for y, x in chunk]))
        probs = probs.mul_(weight_dev).cpu()
        for (y, x), p in zip(chunk, probs, strict=True):
            out[:, y : y + th, x : x + tw] += p
            norm[y : y + th, x : x + tw] += weight
    out /= norm
    return out.numpy()


def probabilities_to_labels(probs: np.ndarray, threshold: float = 0.5, boundary: bool = False) -> np.ndarray:
    """uint8 labels: foreground where p > threshold (one channel), otherwise the argmax class.

    ``boundary``: the probabilities of a model trained on instance masks (background, interior, boundary,
    see instances.py), whose semantic labels are its foreground (1 - p(background) > threshold).
    """
    if boundary:
        from .instances import foreground

        return foreground(probs, threshold)
    if probs.shape[0] == 1:
        return (probs[0] > threshold).astype(np.uint8)
    return probs.argmax(axis=0).astype(np.uint8)


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


def predicts_boundaries(model) -> bool:
    """Whether the model was trained on instance masks (background / interior / boundary classes)."""
    meta = getattr(model, "meta", None) or {}
    return meta.get("instances") == "boundary" and getattr(model, "out_channels", 0) == 3


def _labels_from_probs(
    probs: np.ndarray, threshold: float, instances: bool, boundary: bool = False, object_size: float | None = None
) -> np.ndarray:
    """Labels of one plane. ``boundary``: a model trained on instance masks (seeded watershed of its classes);
    ``object_size``: the typical object diameter (from scribbles, see instances.py), for cleaning specks and
    holes and spacing the watershed's seeds."""
    if boundary:
        from .instances import decode_instances, foreground

        return decode_instances(probs, threshold, object_size) if instances else foreground(probs, threshold)
    labels = probabilities_to_labels(probs, threshold)
    if object_size:
        from .instances import clean_mask

        labels = clean_mask(labels, object_size)
    if not instances:
        return labels
    if labels.max() <= 1:
        if object_size:
            from .instances import speck_size, watershed_spacing

            return split_instances(labels > 0, watershed_spacing(object_size), max(8, speck_size(object_size)))
        return split_instances(labels > 0)
    # multi-class: instances per class, with ids that do not collide
    out = np.zeros(labels.shape, np.int32)
    offset = 0
    for c in range(1, int(labels.max()) + 1):
        inst = split_instances(labels == c)
        out[inst > 0] = inst[inst > 0] + offset
        offset += int(inst.max())
    return out


def _check_model(model) -> None:
    if not isinstance(model, UNet):
        raise InputError(f"predict needs a UNet (from train or load_model), got {type(model).__name__}.")


def resolve_channel_axis(model: UNet, shape: tuple[int, ...], channel_axis: int | None | str = "auto") -> int | None:
    """The image's channel axis, detected from the model's channel count unless given."""
    _check_model(model)
    if isinstance(channel_axis, str):
        if channel_axis != "auto":
            raise InputError(f"channel_axis must be 'auto', None or an axis number, got {channel_axis!r}.")
        return guess_channel_axis(shape, model.in_channels)
    spatial_shape(shape, channel_axis)  # checks that the axis exists
    return channel_axis


def plane_memory(model: UNet, height: int, width: int, instances: bool = False) -> int:
    """Rough peak bytes to predict one (height, width) plane: input copies, probabilities, labels."""
    per_pixel = 8 * model.in_channels + 8 * model.out_channels + 16 + (48 if instances else 0)
    return per_pixel * height * width


def output_shape(model: UNet, image, channel_axis: int | None | str = "auto") -> tuple[int, ...]:
    """Shape of the label image ``predict`` returns for this input (the image without its channel axis)."""
    image = check_image(image)
    return spatial_shape(image.shape, resolve_channel_axis(model, tuple(image.shape), channel_axis))


def iter_predict(
    model: UNet,
    image,
    channel_axis: int | None | str = "auto",
    threshold: float = 0.5,
    instances: bool = False,
    tile_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    precision: str = "auto",
    stitch_threshold: float = 0.0,
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield (leading index, 2D labels) plane by plane: the streaming form of ``predict``.

    Pixels that are NaN or inf in the image (no data) are labelled 0. With ``instances``, object ids are
    unique across a stack; ``stitch_threshold`` > 0 links an object to the one it overlaps most (IoU at
    least the threshold) in the previous Z plane, so it keeps one id through Z (see ``stitching.py``).
    """
    _check_model(model)
    image = check_image(image)
    shape = tuple(image.shape)
    if not (isinstance(threshold, (int, float, np.number)) and 0 <= threshold <= 1):
        raise InputError(f"threshold must be a probability between 0 and 1, got {threshold!r}.")
    axis = resolve_channel_axis(model, shape, channel_axis)
    h, w = spatial_shape(shape, axis)[-2:]
    check_fits(
        plane_memory(model, h, w, instances),
        f"Predicting one {h} x {w} plane",
        "crop or downsample the image, or predict it in pieces.",
    )
    check_finite = np.dtype(image.dtype).kind == "f"
    rule = model.meta.get("normalization")
    _check_tiling(tile_size, overlap, batch_size)
    dev = pick_device(device)
    prec = pick_precision(dev, precision)
    if stitch_threshold and not instances:
        raise InputError("stitch_threshold links object ids through Z: use it with instances=True (--instances).")
    stack_ids = StackIds(stitch_threshold) if instances else None
    net = None  # built once, at the first plane: BN folded, weights in the compute dtype
    for idx, plane in iter_slices(image, axis):
        if plane.shape[0] != model.in_channels:
            raise InputError(
                f"The image has {plane.shape[0]} channel(s) but the model was trained on {model.in_channels}: "
                "give images like the training images, or pass channel_axis."
            )
        if net is None:
            net = inference_network(model, dev, prec)
        probs = _proba(net, model, normalize(plane, rule), tile_size, overlap, batch_size, dev, prec)
        labels = _labels_from_probs(
            probs, threshold, instances, predicts_boundaries(model), model.meta.get("object_size")
        )
        if check_finite:
            labels[~np.isfinite(plane).all(axis=0)] = 0
        if stack_ids is not None:
            labels = stack_ids(idx, labels)  # after per-plane decoding: ids unique across the stack
        release_pages(image)  # a memory-mapped stack: memory stays flat however deep it is
        yield idx, labels


def predict(model: UNet, image, out: np.ndarray | None = None, **options) -> np.ndarray:
    """Labels for a 2D image or a Z/T stack: same shape as the image without its channel axis.

    0 = background, 1..K = classes (or object ids with ``instances=True``). ``out`` may be a preallocated
    array, e.g. a memory-mapped TIFF or zarr array, filled plane by plane. Options are those of
    ``iter_predict``.
    """
    image = check_image(image)
    shape = output_shape(model, image, options.get("channel_axis", "auto"))
    if out is not None and tuple(out.shape) != shape:
        raise InputError(
            f"out has shape {tuple(out.shape)} but the labels have shape {shape}: give a matching out array."
        )
    if out is None and len(shape) > 2:
        check_fits(
            int(np.prod(shape, dtype=np.float64)) * (4 if options.get("instances") else 1),
            f"The labels of this {shape} stack",
            "pass out= a memory-mapped array (tifffile.memmap, zarr), or use iter_predict or `napari-unet predict`.",
        )
    for idx, labels in iter_predict(model, image, **options):
        if out is None:
            out = np.zeros(shape, labels.dtype)
        out[idx] = labels
    return out


def predict_proba(model: UNet, image, channel_axis: int | None | str = "auto", **options) -> np.ndarray:
    """Probabilities (K, H, W) of one 2D image (for previews and custom thresholds)."""
    image = check_image(image)
    axis = resolve_channel_axis(model, tuple(np.shape(image)), channel_axis)
    n_planes = int(np.prod(spatial_shape(tuple(np.shape(image)), axis)[:-2]))
    if n_planes != 1:
        raise InputError(f"predict_proba takes one 2D image; this one has {n_planes} planes: use predict.")
    ((_, plane),) = iter_slices(image, axis)
    return predict_proba_plane(model, normalize(plane, model.meta.get("normalization")), **options)
