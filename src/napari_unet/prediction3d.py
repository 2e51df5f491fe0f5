"""Volumes predicted as volumes: 3D tiles with overlap and blending, then 3D objects with one id through Z.

``prediction.iter_predict`` hands a volume model (``volume.is_volume_model``) here without being told; a 2D
model on a stack keeps the plane-by-plane path. Tiles are bounded in Z, Y and X (``VOLUME_TILE``), so the
network's memory does not grow with the stack; the probabilities of the whole volume are kept for the 3D
watershed (4 bytes per voxel and class).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch

from .errors import InputError
from .images import check_fits, check_image, guess_channel_axis
from .instances import (
    MIN_OBJECT,
    SPECK_FRACTION,
    decode_instances,
    drop_small_objects,
    foreground,
    split_instances,
    watershed_spacing,
)
from .meta import normalization_rule, object_size, predicts_boundaries
from .runtime import autocast, channels_last, pick_device, pick_precision
from .tiling import axis_tiles, ramp
from .training.config import DEFAULT_THRESHOLD, VOLUME_OVERLAP, VOLUME_TILE
from .volume import check_volume_shape, normalize_volume, read_volume


@torch.inference_mode()
def volume_proba(
    model,
    volume: np.ndarray,
    tile: tuple[int, int, int] = VOLUME_TILE,
    overlap: tuple[int, int, int] = VOLUME_OVERLAP,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> np.ndarray:
    """Class probabilities (K, Z, Y, X) of a normalized (C, Z, Y, X) volume, tile by tile, blended."""
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    prec = pick_precision(dev, precision, volume=True)
    fmt = channels_last(5, prec)
    net = copy.deepcopy(model).to(dev, memory_format=fmt).eval()
    sizes = volume.shape[1:]
    multiples = (model.z_multiple, 2**model.depth, 2**model.depth)
    axes = [axis_tiles(n, t, o, m) for n, t, o, m in zip(sizes, tile, overlap, multiples, strict=True)]
    (tz, zs), (ty, ys), (tx, xs) = axes
    weight = np.einsum(
        "i,j,k->ijk", *(ramp(t, o if len(starts) > 1 else 0) for (t, starts), o in zip(axes, overlap, strict=True))
    )
    out = np.zeros((model.out_channels, *sizes), np.float32)
    norm = np.zeros(sizes, np.float32)
    for z in zs:
        for y in ys:
            for x in xs:
                box = (slice(z, z + tz), slice(y, y + ty), slice(x, x + tx))
                xt = torch.from_numpy(np.ascontiguousarray(volume[(slice(None), *box)])[None]).to(dev)
                with autocast(dev, prec):
                    logits = net(xt.contiguous(memory_format=fmt)).float()
                probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
                out[(slice(None), *box)] += probs[0].cpu().numpy() * weight
                norm[box] += weight
    out /= norm
    return out


def volume_labels(
    probs: np.ndarray, threshold: float, instances: bool, boundary: bool, size: float | None, anisotropy: float = 1.0
) -> np.ndarray:
    """Labels of a (K, Z, Y, X) probability volume; with ``instances`` 3D objects, ids unique in the volume."""
    if boundary:
        labels = decode_instances(probs, threshold, size) if instances else foreground(probs, threshold)
    elif probs.shape[0] == 1:
        labels = (probs[0] > threshold).astype(np.uint8)
    else:
        labels = probs.argmax(axis=0).astype(np.uint8)
    if not instances:
        return labels
    if not boundary:
        labels = split_instances(labels > 0, watershed_spacing(size), MIN_OBJECT)
    return drop_small_objects(labels, speck_volume(size, anisotropy))


def speck_volume(size: float | None, anisotropy: float = 1.0) -> int:
    """Voxels below which a 3D object is a speck: a fraction of the typical object's (an ellipsoid of XY
    diameter ``size``, flattened in Z by the anisotropy)."""
    if not size:
        return MIN_OBJECT
    return max(MIN_OBJECT, int(SPECK_FRACTION * np.pi / 6 * size**3 / anisotropy))


def iter_predict_volume(
    model,
    image,
    channel_axis: int | None | str = "auto",
    threshold: float = DEFAULT_THRESHOLD,
    instances: bool = False,
    tile_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield ((z,), 2D labels) for each plane of a (Z, Y, X) volume predicted as one volume (``predict``'s
    streaming form): objects are 3D, with one id through Z. ``tile_size`` sets the tiles' Y and X size."""
    image = check_image(image)
    shape = tuple(image.shape)
    axis = guess_channel_axis(shape, model.in_channels) if isinstance(channel_axis, str) else channel_axis
    sp = check_volume_shape(shape, axis)
    k = model.out_channels
    check_fits(
        (8 * model.in_channels + 4 * k + 16) * int(np.prod(sp)),
        f"Predicting this {sp} volume as one volume",
        "crop it, or predict it in pieces along Z.",
    )
    volume = read_volume(image, axis)
    if volume.shape[0] != model.in_channels:
        raise InputError(
            f"The image has {volume.shape[0]} channel(s) but the model was trained on {model.in_channels}: "
            "give images like the training images, or pass channel_axis."
        )
    tile = VOLUME_TILE if tile_size is None else (VOLUME_TILE[0], int(tile_size), int(tile_size))
    bad = ~np.isfinite(volume).all(axis=0)
    probs = volume_proba(
        model, normalize_volume(volume, normalization_rule(model)), tile, VOLUME_OVERLAP, device, precision
    )
    del volume
    anisotropy = getattr(model, "anisotropy", 1.0)
    labels = volume_labels(probs, threshold, instances, predicts_boundaries(model), object_size(model), anisotropy)
    labels[bad] = 0
    for z in range(labels.shape[0]):
        yield (z,), labels[z]


def preview_plane(
    model, image, plane: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int], half_depth: int = 8
) -> np.ndarray:
    """Labels of the box ``rows`` x ``cols`` of plane ``plane`` of a (Z, Y, X) image, predicted in 3D from the
    slab of ``half_depth`` planes on each side (the Train dock's live preview of a volume model)."""
    z = int(plane[-1]) if plane else 0
    z0, z1 = max(0, z - half_depth), min(np.shape(image)[0], z + half_depth + 1)
    slab = np.asarray(image[z0:z1, rows[0] : rows[1], cols[0] : cols[1]], np.float32)[None]
    probs = volume_proba(model, normalize_volume(slab, normalization_rule(model)))
    boundary = predicts_boundaries(model)
    return volume_labels(probs, DEFAULT_THRESHOLD, False, boundary, None)[z - z0]
