"""Masks opened as images (File > Open makes an Image layer of any TIFF): recognised, and turned into labels.

Such a layer is not offered for training or prediction (it is not a picture of the sample), and the
widgets offer to convert it into a Labels layer, as napari's own *Convert to Labels* does: same data, name,
scale and place in the layer list.
"""

from __future__ import annotations

import numpy as np

from .. import layer_roles as roles
from . import _common as c

_cache: dict[int, tuple[int, bool]] = {}  # id(layer) -> (id(data), verdict): the check runs once per array


def is_label_image(layer) -> bool:
    """True for an Image layer whose integer data looks like a mask or instance ids."""
    from napari.layers import Image

    from ..labels import looks_like_label_image

    if not isinstance(layer, Image) or getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        return False
    data = layer.data
    hit = _cache.get(id(layer))
    if hit is not None and hit[0] == id(data):
        return hit[1]
    try:
        verdict = looks_like_label_image(data)
    except Exception:  # an unreadable lazy array: treat it as an image, as before
        verdict = False
    _cache[id(layer)] = (id(data), verdict)
    return verdict


def label_images(viewer) -> list:
    return [lay for lay in c.image_layers(viewer) if is_label_image(lay)]


def picture_images(viewer) -> list:
    """The Image layers that are pictures of the sample (not masks opened as images, nor the plugin's maps)."""
    return [
        lay for lay in c.image_layers(viewer) if roles.role(lay) not in roles.OUTPUT_ROLES and not is_label_image(lay)
    ]


def convert_to_labels(viewer, layer):
    """Replace the Image layer by a Labels layer with the same data, name, scale and position in the list."""
    data = layer.data
    if np.dtype(data.dtype) == bool:
        data = np.asarray(data, np.uint8)
    layers = viewer.layers
    index = layers.index(layer)
    name = layer.name
    kwargs = {"scale": layer.scale, "translate": layer.translate, "metadata": dict(layer.metadata)}
    layers.remove(layer)
    _cache.pop(id(layer), None)
    labels = viewer.add_labels(data, name=name, **kwargs)
    layers.move(layers.index(labels), index)
    return labels
