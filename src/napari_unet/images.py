"""Image checks, channel axes, memory checks and plane iteration: what any image must pass before use.

Only shapes and dtypes are looked at until a plane is asked for, so lazy arrays (memory-mapped, zarr, dask)
stay lazy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .errors import InputError


def guess_channel_axis(shape: Sequence[int], in_channels: int | None = None) -> int | None:
    """Which axis holds channels, or None. RGB(A)-like trailing axes count; stacks (Z, Y, X) do not."""
    if len(shape) < 3:
        if in_channels not in (None, 1):
            raise InputError(
                f"The model expects {in_channels} channels but the image is 2D {tuple(shape)}: "
                "give a multi-channel image."
            )
        return None
    last, first = shape[-1], shape[0]
    if in_channels is not None and in_channels > 1:
        if last == in_channels:
            return len(shape) - 1
        if first == in_channels:
            return 0
        raise InputError(
            f"The model expects {in_channels} channels but no axis of the image {tuple(shape)} has that "
            "size: pass channel_axis, or use a model trained on images like this one."
        )
    rgb_like = last in (2, 3, 4) and min(shape[-3], shape[-2]) >= 4 * last
    if rgb_like and in_channels == 1:
        raise InputError(
            f"The image {tuple(shape)} looks multi-channel (last axis {last}) but the model was trained on "
            f"1-channel images: convert it to grayscale or train a {last}-channel model (if the last axis "
            "really is spatial, pass channel_axis=None explicitly)."
        )
    return len(shape) - 1 if rgb_like else None


def spatial_shape(shape: Sequence[int], channel_axis: int | None) -> tuple[int, ...]:
    """The shape without the channel axis: (..., H, W)."""
    shape = list(shape)
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise InputError(f"channel_axis must be an integer axis or None, got {channel_axis!r}.")
        if not -len(shape) <= channel_axis < len(shape):
            raise InputError(
                f"channel_axis {channel_axis} is out of range for an image of shape {tuple(shape)}: "
                f"give an axis from {-len(shape)} to {len(shape) - 1}, or None for single-channel images."
            )
        del shape[channel_axis % len(shape)]
    return tuple(shape)


_DTYPE_HINTS = {
    "c": "complex numbers: give a real image, e.g. np.abs(image) or image.real",
    "O": "Python objects, not numbers (a list of images of different sizes?): give one numeric array per image",
    "U": "text, not numbers: give a numeric image",
    "S": "bytes, not numbers: give a numeric image",
    "M": "dates, not intensities: give a numeric image",
    "m": "time spans, not intensities: give a numeric image",
    "V": "a structured (record) type: give a plain numeric array, e.g. with one channel axis",
}


def check_image(image, what: str = "The image"):
    """``image`` as an array-like with a numeric dtype, >= 2 dimensions and no empty axis, else ``InputError``.

    Lazy arrays (memory-mapped, zarr, dask) are returned as they are; lists and scalars go through
    ``np.asarray``. Only the shape and dtype are looked at, so nothing is read.
    """
    if image is None:
        raise InputError(f"{what} is missing (None): give a numpy, zarr or dask array.")
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        try:
            image = np.asarray(image)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise InputError(f"{what} is not an array ({type(image).__name__}: {e}): give one numeric array.") from e
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        hint = _DTYPE_HINTS.get(dtype.kind, "not numbers: give a numeric image")
        raise InputError(f"{what} has dtype {dtype}, {hint}.")
    shape = tuple(image.shape)
    if len(shape) < 2:
        raise InputError(
            f"{what} needs at least 2 dimensions (height and width), got shape {shape}: give a 2D image or a stack."
        )
    if 0 in shape:
        raise InputError(f"{what} is empty (shape {shape}): give an image with at least one pixel along every axis.")
    return image


def available_memory() -> int | None:
    """Bytes of memory this process can still get without swapping (Linux, or with psutil), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no psutil, or a platform it does not know
        return None


def check_fits(need: int, what: str, advice: str) -> None:
    """An ``InputError`` saying what to do when ``need`` bytes would not fit in the free memory."""
    free = available_memory()
    if free is not None and need > 0.9 * free:
        raise InputError(f"{what} needs about {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is free: {advice}")


def iter_slices(image, channel_axis: int | None = None) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield (leading index, (C, H, W) float32 array) for every 2D plane of a 2D image or Z/T stack.

    Only one plane is read at a time, so memory-mapped, zarr and dask inputs stay lazy.
    """
    image = check_image(image)
    ndim = len(image.shape)
    if channel_axis is not None:
        spatial_shape(image.shape, channel_axis)  # checks the axis
        channel_axis %= ndim
    axes = [a for a in range(ndim) if a != channel_axis]
    if len(axes) < 2:
        raise InputError(
            f"An image needs at least 2 spatial dimensions, got shape {tuple(image.shape)} with channel axis "
            f"{channel_axis}: give a 2D image or a stack, with channel_axis=None if it has one channel."
        )
    lead_axes = axes[:-2]
    lead_shape = tuple(image.shape[a] for a in lead_axes)
    for idx in np.ndindex(*lead_shape):
        key: list = [slice(None)] * ndim
        for ax, i in zip(lead_axes, idx, strict=True):
            key[ax] = i
        plane = np.asarray(image[tuple(key)])
        if channel_axis is None:
            plane = plane[None]
        else:
            kept = [a for a in range(ndim) if a not in lead_axes]
            plane = np.moveaxis(plane, kept.index(channel_axis), 0)
        with np.errstate(over="ignore"):  # float64 beyond float32: refused just below
            plane32 = plane.astype(np.float32, copy=False)
        if plane.dtype.kind == "f" and plane.dtype.itemsize > 4 and np.isinf(plane32).any():
            big = np.isinf(plane32) & np.isfinite(plane)
            if big.any():
                raise InputError(
                    f"The image has values up to {np.abs(plane[big]).max():.3g}, beyond the float32 range used "
                    "for computing: rescale it first, e.g. image / np.nanmax(np.abs(image))."
                )
        yield idx, plane32
