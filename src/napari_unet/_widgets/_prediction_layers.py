"""The layers a Predict run writes: one Labels layer per image (and a Shapes layer for its polygons).

Each Labels layer shows the array its job fills, so it is read-only until the job stops writing; the
layer's metadata says which image it comes from and whether it is complete.
"""

from __future__ import annotations

import numpy as np

from .. import layer_roles as roles
from ..jobs.predict import ImageJob
from . import _colors as colors
from . import _common as c
from ._corrections import tag_prediction
from ._layer_turns import BAND_PIXELS, append_in_turns, refresh_in_turns
from ._polygons import POLYGON_STYLE


def objects_text(layer) -> str:
    """' (12 objects)' for a finished prediction that counted its objects, else ''."""
    n = layer.metadata.get(roles.OBJECTS_KEY)
    return "" if n is None else f" ({n} object{'s' if n != 1 else ''})"


class PredictionLayers:
    """The jobs of the current run, their source images, and the layers made for them (None until made)."""

    def __init__(self, viewer) -> None:
        self._viewer = viewer
        self.jobs: list[ImageJob] = []
        self.sources: list = []  # the image layer of each job
        self.labels: list = []  # the Labels layer of each job, or None
        self.shapes: list = []  # the Shapes layer of each job, or None
        self.outputs: list = []  # Labels layers made by the last run, in order
        self._n_classes = 1
        self.contours = True  # contours asked for (a large plane gets them when complete: ``finish``)

    def start(self, jobs: list[ImageJob], sources: list, n_classes: int) -> None:
        self.jobs, self.sources, self._n_classes = jobs, sources, n_classes
        self.labels = [None] * len(jobs)
        self.shapes = [None] * len(jobs)
        self.outputs = []

    def involves(self, layer) -> bool:
        """True for a source image or an output of the run (removing one stops the run)."""
        return any(layer is x for x in self.sources + self.labels)

    def add(self, k: int, instances: bool, contours: bool) -> None:
        """Add the Labels layer of job ``k`` (its Shapes layer comes in another event-loop turn: ``add_shapes``;
        each costs napari 0.1-0.3 s of the GUI thread, too much for one turn: napari's own work for the Labels
        layer is spread over turns too, ``_layer_turns``)."""
        from napari.layers import Labels

        job, image = self.jobs[k], self.sources[k]
        layer = Labels(
            job.out,
            name=c.unique_name(self._viewer, f"{image.name} prediction"),
            scale=image.scale,
            translate=image.translate,
            opacity=0.8,
            metadata={
                roles.ROLE_KEY: roles.PREDICTION,
                roles.SOURCE_KEY: image.name,
                roles.COMPLETE_KEY: False,
                roles.INSTANCES_KEY: instances,
            },
        )
        # styled before it is in the viewer, so napari draws it once
        if not instances:  # classes in the palette of the strokes, legend and preview
            layer.colormap = colors.class_colormap(max(1, self._n_classes))
        # a large plane's contours come with its one redraw when complete (each redraw recomputes them)
        self.contours = contours
        layer.contour = 1 if contours and np.prod(job.out.shape[-2:]) <= BAND_PIXELS else 0
        layer.editable = False  # the job writes planes into its array: no painting until the image is done
        tag_prediction(layer)
        append_in_turns(self._viewer, layer)
        self._hide_previews()
        self.labels[k] = layer
        self.outputs.append(layer)

    def add_shapes(self, k: int) -> None:
        """Add job ``k``'s empty Shapes layer for its polygons (once its Labels layer is there, and still is)."""
        from napari.layers import Shapes

        job, image, layer = self.jobs[k], self.sources[k], self.labels[k]
        if self.shapes[k] is not None or layer is None or layer not in self._viewer.layers:
            return
        self.shapes[k] = Shapes(
            None,
            ndim=len(job.out.shape),
            name=c.unique_name(self._viewer, f"{image.name} polygons"),
            scale=image.scale,
            translate=image.translate,
            metadata={roles.ROLE_KEY: roles.POLYGONS, roles.SOURCE_KEY: image.name},
            **POLYGON_STYLE,
        )
        append_in_turns(self._viewer, self.shapes[k], select=False)  # the prediction stays the active layer
        self._viewer.layers.selection.active = layer

    def _hide_previews(self) -> None:
        """The Train dock's live preview under a prediction would blend with it: hidden (the user can show it)."""
        for layer in self._viewer.layers:
            if roles.role(layer) == roles.PREVIEW and layer.visible:
                layer.visible = False

    def finish(self, k: int, n_objects: int | None):
        """Mark job ``k``'s layer complete (with its object count) and editable; return it, or None."""
        layer = self.labels[k]
        if layer is not None:
            layer.metadata[roles.COMPLETE_KEY] = True
            if n_objects is not None:
                layer.metadata[roles.OBJECTS_KEY] = n_objects
            layer.editable = True
            # the thumbnail too, once; a large plane in bands, one per event-loop turn, its contours now
            contour = int(self.contours) if bool(layer.contour) != self.contours else None
            refresh_in_turns(layer, self._viewer, contour)
        return layer

    def complete(self) -> list:
        return [lay for lay in self.outputs if roles.is_complete(lay)]

    def set_contours(self, on: bool) -> None:
        self.contours = on
        for layer in self.outputs:
            if layer in self._viewer.layers:
                layer.contour = 1 if on else 0

    def mark_incomplete(self) -> None:
        """Cancel: the image in progress keeps what was written, named '(incomplete)'."""
        for layer in self.labels:
            if layer is not None and not roles.is_complete(layer):
                layer.name = c.unique_name(self._viewer, f"{layer.name} (incomplete)")
                layer.refresh()

    def unlock(self, layers=None) -> None:
        """The job no longer writes: let the user fix an incomplete result."""
        for layer in self.labels if layers is None else layers:
            if layer is not None and layer in self._viewer.layers:
                layer.editable = True

    def drop_unused_shapes(self) -> None:
        """Remove the (still empty) Shapes layers of images that were not completed: cancel or failure."""
        for k, shapes in enumerate(self.shapes):
            layer = self.labels[k] if k < len(self.labels) else None
            complete = layer is not None and roles.is_complete(layer)
            if shapes is not None and not complete and shapes in self._viewer.layers and not len(shapes.data):
                self._viewer.layers.remove(shapes)
            if not complete:
                self.shapes[k] = None

    def on_screen(self, layer, where: tuple) -> bool:
        """True if the plane at leading index ``where`` of ``layer`` is (possibly) visible now."""
        if not where or not layer.visible:
            return layer.visible
        try:
            viewer = self._viewer
            if viewer.dims.ndisplay != 2 or len(viewer.dims.displayed) != 2:
                return True
            point = np.asarray(layer.world_to_data(viewer.dims.point), float)
            lead = layer.ndim - 2
            displayed = {ax - (viewer.dims.ndim - layer.ndim) for ax in viewer.dims.displayed}
            if displayed != {lead, lead + 1}:
                return True  # a cut through the stack shows every plane
            return tuple(int(round(x)) for x in point[:lead]) == tuple(where)
        except Exception:  # when in doubt, refresh
            return True
