"""Label colours in napari: scribble labels, class predictions, legends; one palette (``labels.SCRIBBLE_COLORS``)."""

from __future__ import annotations

import numpy as np

from ..labels import SCRIBBLE_COLORS


def scribble_color(label: int) -> str:
    """Colour of scribble label ``label`` (1 = background, 2 = class 1, ...); cycles after eight."""
    return SCRIBBLE_COLORS[(label - 1) % len(SCRIBBLE_COLORS)] if label >= 1 else "#000000"


def scribble_colormap(n_labels: int):
    """A napari colormap: 0 transparent, 1..n_labels in ``SCRIBBLE_COLORS``."""
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: "transparent", 0: "transparent"}
    colors.update({k: scribble_color(k) for k in range(1, n_labels + 1)})
    return DirectLabelColormap(color_dict=colors)


def class_colormap(n_classes: int):
    """Colormap of a prediction / preview: class k in the colour of scribble label k + 1."""
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: "transparent", 0: "transparent"}
    colors.update({k: scribble_color(k + 1) for k in range(1, n_classes + 1)})
    return DirectLabelColormap(color_dict=colors)


def hex_color(layer, value: int) -> str:
    """The colour a Labels layer shows ``value`` in, as #rrggbb (for legends)."""
    try:
        rgba = np.asarray(layer.get_color(value), float)
    except Exception:
        return "#888888"
    if rgba is None or rgba.size < 3:
        return "#888888"
    return "#{:02x}{:02x}{:02x}".format(*(int(round(255 * c)) for c in rgba[:3]))
