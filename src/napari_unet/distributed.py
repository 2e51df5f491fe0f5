"""Prediction of arrays bigger than one machine: blockwise with overlap on dask, local or on a cluster.

``predict_dask`` turns a (lazy) image into a lazy label array. Each Z/T plane is normalized with percentiles
of the whole plane (as ``predict`` does, computed first from a strided sample, so every block of a plane
sees the same scaling); then ``dask.array.map_overlap`` predicts blocks of about one tile with ``overlap``
pixels of context on each side, cut off again after prediction. Compute it with any dask scheduler: the
local threaded one by default, or a ``dask.distributed`` cluster (``Client(address)``), e.g.

    labels = predict_dask(load_model("model.pt"), da.from_zarr("stack.zarr"))
    labels.to_zarr("stack_labels.zarr")

No Qt, no napari: workers only need this package and torch.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import torch

from .errors import InputError
from .inference import inference_network
from .meta import normalization_rule, predicts_boundaries
from .model import UNet
from .normalization import DEFAULT_NORMALIZATION, apply_stats, plane_stats, sample_step
from .prediction import probabilities_to_labels, resolve_channel_axis, tiled_proba
from .runtime import pick_device, pick_precision
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling
from .training.config import DEFAULT_THRESHOLD


def as_dask(image, chunks=None):
    """A dask array for a numpy, zarr or dask array (zarr chunks are kept unless ``chunks`` is given)."""
    import dask.array as da

    if isinstance(image, da.Array):
        return image if chunks is None else image.rechunk(chunks)
    if chunks is None and hasattr(image, "chunks") and not isinstance(image, np.ndarray):
        return da.from_array(image, chunks=tuple(image.chunks))  # zarr: one task per stored chunk
    return da.from_array(image, chunks=chunks if chunks is not None else "auto")


def _stats_block(block: np.ndarray, rule: dict) -> np.ndarray:
    lead = block.shape[:-3]
    stats = plane_stats(block.reshape(-1, *block.shape[-3:])[0], rule)
    return stats.reshape(*lead, *stats.shape)


def _normalization_stats(arr, rule: dict) -> np.ndarray:
    """Every plane's normalization statistics (..., C, 2) of a (..., C, H, W) dask array, computed now.

    From the strided sample that ``normalize`` would take, one small task per plane; the result is small and
    travels inside the prediction graph, so every block of a plane sees the same scaling.
    """
    import dask

    nd = arr.ndim
    step = sample_step(*arr.shape[-2:])
    sample = arr[..., ::step, ::step].rechunk((1,) * (nd - 3) + (-1, -1, -1))
    stats_lazy = sample.map_blocks(
        _stats_block,
        rule,
        dtype=np.float64,
        drop_axis=nd - 1,
        chunks=(*((1,) * (nd - 3)), arr.shape[-3], 2),
    )
    (stats,) = dask.compute(stats_lazy)
    return stats


# one inference network per worker process and model, instead of one per block
_NETS: dict[tuple, tuple[UNet, torch.nn.Module]] = {}
_NETS_LOCK = threading.Lock()


def _model_key(model: UNet) -> str:
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _network(model: UNet, key: str, device: str, precision: str):
    dev = pick_device(device)
    with _NETS_LOCK:
        cached = _NETS.get((key, str(dev), precision))
        if cached is None:
            cached = (model, inference_network(model, dev, precision))
            _NETS.clear()  # keep one model per worker: a long-lived cluster sees many
            _NETS[(key, str(dev), precision)] = cached
    return cached[0], cached[1], dev


def _predict_block(
    block: np.ndarray,
    *,
    stats: np.ndarray,
    model: UNet,
    model_key: str,
    threshold: float,
    tile_size: int,
    overlap: int,
    batch_size: int,
    device: str,
    precision: str,
    block_info=None,
) -> np.ndarray:
    """Labels (..., H, W) of one overlapped (..., C, H, W) block, one plane deep; ``stats`` (..., C, 2) holds
    every plane's normalization, looked up by the block's position."""
    model, net, dev = _network(model, model_key, device, precision)
    lead = block.shape[:-3]
    where = tuple(block_info[0]["chunk-location"][: len(lead)]) if block_info else (0,) * len(lead)
    out = np.zeros((*lead, *block.shape[-2:]), np.uint8)
    planes = block.reshape(-1, *block.shape[-3:])
    plane_stats_ = stats[where].reshape(-1, *stats.shape[-2:])
    flat = out.reshape(-1, *block.shape[-2:])
    for i, plane in enumerate(planes):
        normalized = apply_stats(plane, plane_stats_[i])
        probs = tiled_proba(net, model, normalized, tile_size, overlap, batch_size, dev, pick_precision(dev, precision))
        labels = probabilities_to_labels(probs, threshold, predicts_boundaries(model))
        labels[~np.isfinite(plane).all(axis=0)] = 0
        flat[i] = labels
    return out


def predict_dask(
    model: UNet,
    image,
    channel_axis: int | None | str = "auto",
    threshold: float = DEFAULT_THRESHOLD,
    tile_size: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 4,
    device: str = "auto",
    precision: str = "auto",
    block_size: int | None = None,
):
    """Lazy labels (a dask array shaped like the image without its channel axis, uint8) of a numpy, zarr
    or dask image of any size: 2D, or Z/T stacks.

    Blocks are ``block_size`` pixels square (default: ``tile_size - 2 * overlap``, so a block with its
    context is one tile), one plane deep, with ``overlap`` pixels of context on each side. Per-plane
    normalization statistics are computed when this is called (a pass over a strided sample of each plane,
    on the current dask scheduler); the prediction itself runs when the result is computed or stored.
    Labels agree with ``predict`` exactly where a plane fits in one block, and up to the usual tile-seam
    differences elsewhere. ``instances`` are not available blockwise (ids would collide between blocks):
    use ``predict`` or ``iter_predict`` with a zarr ``out`` for them.
    """
    import dask.array as da

    if not isinstance(model, UNet):
        raise InputError(f"predict_dask needs a UNet (from train or load_model), got {type(model).__name__}.")
    check_tiling(tile_size, overlap, batch_size)
    if not (isinstance(threshold, (int, float, np.number)) and 0 <= threshold <= 1):
        raise InputError(f"threshold must be a probability between 0 and 1, got {threshold!r}.")
    arr = as_dask(image)
    if arr.ndim < 2:
        raise InputError(f"An image needs at least 2 dimensions, got shape {arr.shape}.")
    if np.dtype(arr.dtype).kind not in "biuf":
        raise InputError(f"The image has dtype {arr.dtype}: give a numeric image.")
    axis = resolve_channel_axis(model, tuple(arr.shape), channel_axis)
    arr = arr[..., None, :, :] if axis is None else da.moveaxis(arr, axis, -3)
    if arr.shape[-3] != model.in_channels:
        raise InputError(
            f"The image has {arr.shape[-3]} channel(s) but the model was trained on {model.in_channels}: "
            "give images like the training images, or pass channel_axis."
        )
    nd = arr.ndim
    h, w = arr.shape[-2:]
    tile_size = DEFAULT_TILE if tile_size is None else tile_size  # dask blocks share one size
    block = int(block_size) if block_size else max(2 * overlap, tile_size - 2 * overlap, 16)
    depth = min(overlap, h // 2, w // 2, block)
    arr = arr.rechunk((1,) * (nd - 3) + (-1, block, block))

    stats = _normalization_stats(arr, normalization_rule(model) or DEFAULT_NORMALIZATION)
    return da.map_overlap(
        _predict_block,
        arr,
        depth={nd - 2: depth, nd - 1: depth},
        boundary="none",
        trim=True,
        drop_axis=nd - 3,
        dtype=np.uint8,
        meta=np.empty((0,) * (nd - 1), np.uint8),
        stats=stats,
        model=model,
        model_key=_model_key(model),
        threshold=float(threshold),
        tile_size=int(tile_size),
        overlap=int(overlap),
        batch_size=int(batch_size),
        device=str(device),
        precision=precision,
    )
