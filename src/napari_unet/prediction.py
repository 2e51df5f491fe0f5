"""Tiled, batched prediction of 2D images and Z/T stacks, probabilities to labels, and instances.

Tiles overlap and are blended with a linear ramp, so seams do not show; every plane of a stack is read,
predicted and handed back one at a time (``iter_predict``), so memory does not grow with the stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from .errors import InputError
from .images import check_fits, check_image, guess_channel_axis, iter_slices, spatial_shape
from .inference import inference_network
from .instances import split_instances
from .io import release_pages
from .meta import normalization_rule, object_size, predicts_boundaries
from .model import UNet
from .normalization import normalize
from .runtime import pick_device, pick_precision
from .stitching import StackIds
from .threads import ThreadChooser
from .tiling import DEFAULT_OVERLAP, MAX_BATCH_PIXELS, auto_tile, axis_tiles, check_tiling, ramp
from .training.config import DEFAULT_STITCH_THRESHOLD, DEFAULT_THRESHOLD
from .training.verdict import warn_if_poor
from .volume import is_volume_model


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
    check_tiling(tile_size, overlap, batch_size)
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    prec = pick_precision(dev, precision)
    net = inference_network(model, dev, prec)
    return tiled_proba(net, model, plane, tile_size, overlap, batch_size, dev, prec)


@torch.inference_mode()
def tiled_proba(
    net: torch.nn.Module,
    model: UNet,
    plane: np.ndarray,
    tile_size: int | None,
    overlap: int,
    batch_size: int,
    dev,
    precision: str,
    threads: ThreadChooser | None = None,
) -> np.ndarray:
    """Tiled, batched, blended probabilities of one plane with a network from ``inference_network``.

    A batch holds at most ``batch_size`` tiles and about ``MAX_BATCH_PIXELS``, so memory does not depend on
    the image size; the ramp weights are applied to the whole batch at once. ``threads`` is told how long
    each batch took (it chooses the thread count by that rate, see ``threads.py``).
    """
    _, h, w = plane.shape
    multiple = 2 ** getattr(model, "depth", 4)
    if tile_size is None:
        tile_size = auto_tile(model, net, h, w, overlap, dev, precision)
        batch_size = 1  # tiles were timed one per forward: a batch of them no longer fits the caches they fit
    th, ys = axis_tiles(h, tile_size, overlap, multiple)
    tw, xs = axis_tiles(w, tile_size, overlap, multiple)
    origins = [(y, x) for y in ys for x in xs]
    batch_size = max(1, min(int(batch_size), MAX_BATCH_PIXELS // (th * tw)))

    def probabilities(batch: np.ndarray) -> torch.Tensor:
        logits = net(torch.from_numpy(np.ascontiguousarray(batch)).to(dev))
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    if len(origins) == 1:  # the whole plane in one tile: no blending
        return probabilities(plane[None])[0].cpu().numpy()
    weight = torch.from_numpy(
        np.outer(ramp(th, overlap if len(ys) > 1 else 0), ramp(tw, overlap if len(xs) > 1 else 0))
    )
    weight_dev = weight.to(dev)
    out = torch.zeros((model.out_channels, h, w), dtype=torch.float32)
    norm = torch.zeros((h, w), dtype=torch.float32)
    for i in range(0, len(origins), batch_size):
        chunk = origins[i : i + batch_size]
        started = time.perf_counter()
        probs = probabilities(np.stack([plane[:, y : y + th, x : x + tw] for y, x in chunk]))
        probs = probs.mul_(weight_dev).cpu()
        if threads is not None:
            threads.observe(time.perf_counter() - started, th * tw * len(chunk) / 1e6)
        for (y, x), p in zip(chunk, probs, strict=True):
            out[:, y : y + th, x : x + tw] += p
            norm[y : y + th, x : x + tw] += weight
    out /= norm
    return out.numpy()


#: test-time augmentation: the eight flips and quarter turns (k quarter turns, then a left-right flip or not)
TTA = ((0, False), (1, False), (2, False), (3, False), (0, True), (1, True), (2, True), (3, True))


def tta_proba(
    net: torch.nn.Module, model: UNet, plane: np.ndarray, tile_size: int | None, overlap: int, batch_size: int,
    dev, precision: str, threads: ThreadChooser | None = None,
) -> np.ndarray:  # fmt: skip
    """``tiled_proba`` averaged over the flips and quarter turns of ``TTA``: 8x the network's work for steadier
    probabilities near boundaries (on objects its effect is mixed: README, Objects; benchmarks/objects_dsb2018.py)."""
    total = None
    for k, flip in TTA:
        view = np.rot90(plane[..., ::-1] if flip else plane, k, axes=(-2, -1))
        probs = tiled_proba(
            net, model, np.ascontiguousarray(view), tile_size, overlap, batch_size, dev, precision, threads
        )
        back = np.rot90(probs, -k, axes=(-2, -1))
        back = back[..., ::-1] if flip else back
        total = back.copy() if total is None else total + back
    return (total / len(TTA)).astype(np.float32)


def probabilities_to_labels(
    probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD, boundary: bool = False
) -> np.ndarray:
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
    threshold: float = DEFAULT_THRESHOLD,
    instances: bool = False,
    tile_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    precision: str = "auto",
    stitch_threshold: float = DEFAULT_STITCH_THRESHOLD,
    tta: bool = False,
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield (leading index, 2D labels) plane by plane: the streaming form of ``predict``.

    Pixels that are NaN or inf in the image (no data) are labelled 0. With ``instances``, object ids are
    unique across a stack; ``stitch_threshold`` > 0 links an object to the one it overlaps most (IoU at
    least the threshold) in the previous Z plane, so it keeps one id through Z (see ``stitching.py``). A volume
    model (``volume.is_volume_model``) predicts a (Z, Y, X) stack as one volume with 3D objects instead.
    ``tta``: average the probabilities over flips and quarter turns (``tta_proba``; 2D models, 8x slower).
    """
    _check_model(model)
    warn_if_poor(model, stacklevel=3)  # a model judged poor or useless when trained: said again here
    image = check_image(image)
    shape = tuple(image.shape)
    if not (isinstance(threshold, (int, float, np.number)) and 0 <= threshold <= 1):
        raise InputError(f"threshold must be a probability between 0 and 1, got {threshold!r}.")
    if is_volume_model(model):  # a volume model segments the stack as one volume, in 3D (prediction3d)
        if tta:
            raise InputError("Test-time augmentation (tta) is for 2D models: predict a volume model without it.")
        if stitch_threshold:
            raise InputError(
                "This is a volume model: its 3D objects already keep one id through Z. Leave out the stitch "
                "threshold (--stitch-threshold), which links the objects of a 2D model plane to plane."
            )
        from .prediction3d import iter_predict_volume

        yield from iter_predict_volume(model, image, channel_axis, threshold, instances, tile_size, device, precision)
        return
    axis = resolve_channel_axis(model, shape, channel_axis)
    h, w = spatial_shape(shape, axis)[-2:]
    check_fits(
        plane_memory(model, h, w, instances),
        f"Predicting one {h} x {w} plane",
        "crop or downsample the image, or predict it in pieces.",
    )
    check_finite = np.dtype(image.dtype).kind == "f"
    rule = normalization_rule(model)
    check_tiling(tile_size, overlap, batch_size)
    dev = pick_device(device)
    prec = pick_precision(dev, precision)
    if stitch_threshold and not instances:
        raise InputError("stitch_threshold links object ids through Z: use it with instances=True (--instances).")
    stack_ids = StackIds(stitch_threshold) if instances else None
    net = None  # built once, at the first plane: BN folded, weights in the compute dtype
    chooser = ThreadChooser("predict", unit="Mpx") if dev.type == "cpu" else None  # tile rate picks the threads
    try:
        for idx, plane in iter_slices(image, axis):
            if plane.shape[0] != model.in_channels:
                raise InputError(
                    f"The image has {plane.shape[0]} channel(s) but the model was trained on {model.in_channels}: "
                    "give images like the training images, or pass channel_axis."
                )
            if net is None:
                net = inference_network(model, dev, prec)
            proba = tta_proba if tta else tiled_proba
            probs = proba(net, model, normalize(plane, rule), tile_size, overlap, batch_size, dev, prec, chooser)
            labels = _labels_from_probs(probs, threshold, instances, predicts_boundaries(model), object_size(model))
            if check_finite:
                labels[~np.isfinite(plane).all(axis=0)] = 0
            if stack_ids is not None:
                labels = stack_ids(idx, labels)  # after per-plane decoding: ids unique across the stack
            release_pages(image)  # a memory-mapped stack: memory stays flat however deep it is
            yield idx, labels
    finally:
        if chooser is not None:
            chooser.restore()  # torch's thread count is the caller's again (threads.last_choice says what ran)


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
    return predict_proba_plane(model, normalize(plane, normalization_rule(model)), **options)
