"""Polygons of predicted objects: shown in a Shapes layer filled a chunk per GUI turn, and exported to a file.

napari triangulates every polygon added to a Shapes layer on the GUI thread, so thousands of them at once
would freeze the window: they are added in chunks sized to a time budget, between GUI events.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, PushButton

from .. import layer_roles as roles
from ..errors import InputError
from . import _common as c

POLYGON_STYLE = {"shape_type": "polygon", "edge_color": "#ffd000", "face_color": "transparent", "edge_width": 1}
SHAPES_CHUNK = 5  # polygons added in the first event-loop turn; later turns adapt to SHAPES_TURN_SECONDS
SHAPES_TURN_SECONDS = 0.03  # GUI time per turn spent adding polygons (napari triangulates them on the GUI thread)


class PolygonsAdder:
    """Polygons still to add to Shapes layers, and how many fit in one GUI turn (adapted to the rate seen)."""

    def __init__(self, viewer) -> None:
        self._viewer = viewer
        self._pending: list = []  # (Shapes layer, polygons still to add)
        self.chunk = float(SHAPES_CHUNK)

    @property
    def busy(self) -> bool:
        """True while polygons are still waiting to be added."""
        return bool(self._pending)

    def reset(self) -> None:
        """A new run starts with a small first chunk again."""
        self.chunk = float(SHAPES_CHUNK)

    def clear(self) -> None:
        self._pending.clear()

    def add(self, layer, polygons: list, image_name: str) -> bool:
        """Queue ``polygons`` for ``layer``; True if there is something to feed. ``[None, ...]`` (too many to
        show) removes the layer and says to export them instead."""
        if layer is None or layer not in self._viewer.layers:
            return False
        if polygons and polygons[0] is None:
            self._viewer.layers.remove(layer)
            c.report_warning(
                f"'{image_name}': {len(polygons)} objects are too many polygons to show smoothly; "
                "use 'Export polygons…' to write them to a file."
            )
            return False
        if not polygons:
            return False
        # hidden while it fills: napari then neither redraws the canvas nor the layer list's thumbnail for
        # each chunk (under software OpenGL one redraw costs more than adding the chunk)
        layer.visible = False
        self._pending.append((layer, polygons))
        return True

    def feed_once(self) -> bool:
        """Add one chunk, sized so one turn costs about ``SHAPES_TURN_SECONDS``; True if another turn is due."""
        while self._pending:
            layer, rest = self._pending[0]
            if not rest or layer not in self._viewer.layers:
                self._pending.pop(0)
                if layer in self._viewer.layers:
                    layer.visible = True  # one redraw, with every polygon
                continue
            n = max(1, int(self.chunk))
            start = time.perf_counter()
            layer.add(rest[:n], **POLYGON_STYLE)
            spent = time.perf_counter() - start
            # next chunk: as many polygons as fit in the time budget at the rate just seen (within 2x)
            self.chunk = float(np.clip(n * SHAPES_TURN_SECONDS / max(spent, 1e-4), n / 2, 2 * n))
            self._pending[0] = (layer, rest[n:])
            return True
        return False


class PolygonsExport:
    """The Export section: which Labels layer, and the button that writes one polygon per object."""

    def __init__(self, viewer) -> None:
        self._viewer = viewer
        self.source = ComboBox(choices=self._choices, label="Polygons of")
        self.button = PushButton(text="Export polygons…", tooltip="Write one polygon per object as CSV or GeoJSON")

    def widgets(self) -> list:
        return [c.heading("Export"), c.form(self.source), self.button]

    def _choices(self, *_) -> list:
        layers = c.labels_layers(self._viewer)
        # predictions first, newest first: the usual thing to export
        layers.sort(key=lambda lay: (roles.role(lay) != roles.PREDICTION, -self._viewer.layers.index(lay)))
        return [(lay.name, lay) for lay in layers]

    def export(self, path: str | Path | None = None, layer=None, parent=None) -> Path | None:
        """Write one polygon per object of a Labels layer as CSV or GeoJSON (by the file's extension); without
        ``path``, ask for one in a save dialog over ``parent``."""
        from ..contours import label_contours, write_contours

        layer = layer if layer is not None else self.source.value
        if layer is None:
            raise InputError("There is no Labels layer to export: predict first.")
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                parent,
                "Export polygons",
                f"{layer.name}.geojson",
                "GeoJSON (*.geojson);;CSV, one row per vertex (*.csv)",
            )
            if not path:
                return None
        contours = label_contours(np.asarray(layer.data))
        write_contours(contours, path)
        c.report_info(f"Wrote {len(contours)} polygons of '{layer.name}' to {path}.")
        return Path(path)
