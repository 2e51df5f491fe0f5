"""Prediction written to disk: TIFF plane by plane, zarr block by block, so memory stays flat on large stacks.

Every writer goes through ``io.atomic_path``: a crash or Ctrl-C leaves the old file or none, never half of one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def labels_suffix(path: str | Path) -> str:
    """Zarr in, zarr out (written block by block, possibly by a cluster); everything else becomes a TIFF."""
    return ".zarr" if Path(path).suffix.lower() == ".zarr" else ".tif"


def write_prediction(
    model,
    image,
    path: Path,
    overwrite: bool,
    options: dict[str, Any],
    on_plane: Callable[[], object] = lambda: None,
) -> np.ndarray | None:
    """Predict plane by plane into a TIFF; stack planes are compressed and written as they come, so memory stays flat.

    ``options`` are ``iter_predict``'s keywords; ``on_plane`` is called once per plane computed (a progress bar).
    Returns the labels of a 2D image (small enough to keep), None for a stack (never held whole in memory).
    """
    import tifffile

    from .io import atomic_path
    from .prediction import iter_predict, output_shape

    shape = output_shape(model, image, options.get("channel_axis", "auto"))
    dtype = np.int32 if options.get("instances") else np.uint8
    with atomic_path(path, overwrite) as tmp:
        if len(shape) == 2:
            ((_, labels),) = iter_predict(model, image, **options)
            on_plane()
            tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")
            return labels

        def planes():
            for _, labels in iter_predict(model, image, **options):
                on_plane()  # computed (tifffile takes exactly the planes it needs: no call after the last yield)
                yield labels.astype(dtype, copy=False)

        # streamed page by page (iter_predict yields planes in file order): nothing grows with the stack
        tifffile.imwrite(tmp, planes(), shape=shape, dtype=dtype, compression="zlib", photometric="minisblack")
    return None


def write_prediction_zarr(model, image, path: Path, overwrite: bool, options: dict[str, Any], client=None) -> None:
    """Labels of a zarr (or any lazy) image into a zarr array: blockwise with overlap on dask, or plane by plane
    when instances are asked for (object ids must not collide between blocks) or test-time augmentation.

    ``client``: a ``dask.distributed`` client to compute the blocks on a cluster; None computes them here.
    """
    import dask
    import zarr

    from .distributed import predict_dask
    from .io import atomic_path
    from .prediction import output_shape, predict

    with atomic_path(path, overwrite) as tmp:
        if options.get("instances") or options.get("tta"):
            shape = output_shape(model, image, options.get("channel_axis", "auto"))
            chunks = (1,) * (len(shape) - 2) + tuple(min(s, 1024) for s in shape[-2:])
            dtype = np.int32 if options.get("instances") else np.uint8
            out = zarr.open(str(tmp), mode="w", shape=shape, chunks=chunks, dtype=dtype)
            predict(model, image, out=out, **options)
            return
        opts = {k: v for k, v in options.items() if k not in ("instances", "stitch_threshold")}
        labels = predict_dask(model, image, **opts)
        store = labels.to_zarr(str(tmp), compute=False)
        if client is not None:
            client.compute(store).result()
        else:  # one block at a time: torch already uses every core inside a block
            dask.compute(store, scheduler="threads", num_workers=1)


MAP_KINDS = ("uncertainty", "probabilities")


def write_map(model, image, path: Path, overwrite: bool, kind: str, options: dict[str, Any]) -> None:
    """A float32 TIFF beside the labels, streamed plane by plane: ``kind`` 'uncertainty' (one page per plane, in
    [0, 1], 0 = sure; see uncertainty.py) or 'probabilities' ((K, H, W) per plane: the classes, background first;
    K = 1, the foreground's, for a binary model)."""
    import tifffile

    from .io import atomic_path
    from .prediction import output_shape
    from .uncertainty import iter_uncertainty

    axis = options.get("channel_axis", "auto")
    shape = output_shape(model, image, axis)
    if kind == "probabilities":
        shape = (*shape[:-2], model.out_channels, *shape[-2:])
    tiling = {k: options[k] for k in ("tile_size", "device", "precision") if k in options}
    method = "tta" if kind == "uncertainty" else "entropy"  # the probabilities of one pass, as predict uses

    def pages():
        for _, probs, unsure in iter_uncertainty(model, image, axis, method, **tiling):
            if kind == "uncertainty":
                yield unsure.astype(np.float32, copy=False)
            else:
                yield from probs.astype(np.float32, copy=False)

    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, pages(), shape=shape, dtype=np.float32, compression="zlib", photometric="minisblack")
