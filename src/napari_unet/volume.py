"""A Z-stack as one volume: reading it whole, its normalization, its anisotropy, the 3D boundary target.

A volume model (``UNet(spatial_dims=3)``) sees Z context; the first non-channel axis of a (Z, Y, X) image is Z.
Anisotropy is the Z spacing over the XY spacing (napari ``layer.scale``, the TIFF's ImageJ spacing, or the
user); it shapes the network's pooling (``model.volume_pools``). Time-lapses and 2D models stay plane by plane.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .images import iter_slices, spatial_shape
from .normalization import normalize

DEFAULT_ANISOTROPY = 1.0  # Z spacing / XY spacing when neither the file nor the user says


def is_volume_model(model) -> bool:
    """Whether ``model`` segments volumes as 3D objects (a 3D U-Net) rather than plane by plane."""
    return getattr(model, "spatial_dims", 2) == 3


def check_volume_shape(shape: tuple[int, ...], channel_axis: int | None, what: str = "The image") -> tuple[int, ...]:
    """The (Z, Y, X) shape of a volume image, or an ``InputError`` saying what a volume must look like."""
    sp = spatial_shape(shape, channel_axis)
    if len(sp) != 3:
        raise InputError(
            f"{what} has spatial shape {sp}: a volume is (Z, Y, X), optionally with a channel axis. Give one "
            "Z-stack per image (split time-lapses), or train without --volume to work plane by plane."
        )
    return sp


def read_volume(image, channel_axis: int | None) -> np.ndarray:
    """The whole volume as float32 (C, Z, Y, X), read plane by plane (lazy inputs stay lazy until here)."""
    return np.stack([plane for _, plane in iter_slices(image, channel_axis)], axis=1)


def normalize_volume(volume: np.ndarray, rule: dict | None = None) -> np.ndarray:
    """The percentile rule of ``normalization`` over the whole (C, Z, Y, X) volume (one scale for every plane,
    so intensities stay comparable through Z)."""
    c, z, y, x = volume.shape
    return normalize(volume.reshape(c, z * y, x), rule).reshape(c, z, y, x)


def check_anisotropy(value) -> float:
    """A valid anisotropy (Z spacing / XY spacing), or an ``InputError``."""
    try:
        a = float(value)
    except (TypeError, ValueError):
        a = float("nan")
    if not 0.1 <= a <= 100:
        raise InputError(f"anisotropy (Z spacing / XY spacing) must be a number from 0.1 to 100, got {value!r}.")
    return a


def anisotropy_from_scale(scale) -> float | None:
    """Z over XY spacing from a napari layer's ``scale`` (..., z, y, x); None when it cannot tell."""
    if scale is None or len(scale) < 3 or not scale[-1]:
        return None
    ratio = float(scale[-3]) / float(scale[-1])
    return ratio if 0.1 <= ratio <= 100 else None


def anisotropy_from_tiff(path) -> float | None:
    """Z over XY spacing from an ImageJ TIFF (``spacing`` over the X resolution); None when the file does not say."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            spacing = (tif.imagej_metadata or {}).get("spacing")
            res = tif.pages[0].tags.get("XResolution")
            if not spacing or res is None:
                return None
            num, den = res.value
            xy = den / num if num else None
    except Exception:  # not a TIFF, or unreadable tags: the file does not say
        return None
    if not xy:
        return None
    ratio = float(spacing) / xy
    return ratio if 0.1 <= ratio <= 100 else None


def boundary_target_volume(labels: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """int16 target of (Z, Y, X) instance labels: 0 background, 1 interior, 2 boundary, -1 not annotated.

    ``annotated`` (Z,) says which planes are painted. Boundaries are found in XY on each painted plane, and in Z
    only towards a painted neighbouring plane: an unpainted plane says nothing about where an object ends.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    out = np.full(labels.shape, -1, np.int16)
    for z in np.flatnonzero(annotated):
        plane = labels[z]
        if plane.size and plane.max() <= 1:
            plane = ndi.label(plane > 0)[0]
        fg = plane > 0
        t = (fg).astype(np.int16)
        t[find_boundaries(plane, connectivity=1, mode="inner") & fg] = 2
        for nz in (z - 1, z + 1):
            if 0 <= nz < len(labels) and annotated[nz]:
                t[fg & (labels[nz] != labels[z])] = 2
        out[z] = t
    return out
