"""Label colours in napari: scribble labels, class predictions, legends; one palette (``labels.SCRIBBLE_COLORS``)."""

from __future__ import annotations

import numpy as np

from ..labels import scribble_color_dict


def scribble_colormap(n_labels: int):
    """A napari colormap: 0 transparent, 1..n_labels in ``SCRIBBLE_COLORS``."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=scribble_color_dict(n_labels))


def class_colormap(n_classes: int):
    """Colormap of a prediction / preview: class k in the colour of scribble label k + 1."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=scribble_color_dict(n_classes, offset=1))


def hex_color(layer, value: int) -> str:
    """The colour a Labels layer shows ``value`` in, as #rrggbb (for legends)."""
    try:
        rgba = np.asarray(layer.get_color(value), float)
    except Exception:
        return "#888888"
    if rgba is None or rgba.size < 3:
        return "#888888"
    return "#{:02x}{:02x}{:02x}".format(*(int(round(255 * c)) for c in rgba[:3]))
