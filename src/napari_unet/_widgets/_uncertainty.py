"""Where to paint next, in the Predict dock and beside the Train dock's live preview: the uncertainty map of a
prediction as an Image layer, and 'Next unsure region', which centres the view on the largest unsure region
nobody has annotated yet.

The map and the regions are the core's (``uncertainty``: entropy over test-time flips and rotations,
``unsure_regions``); this module only adds the layer and moves the view.
"""

from __future__ import annotations

import html

import numpy as np
from magicgui.widgets import CheckBox, PushButton

from .. import layer_roles as roles
from ..errors import InputError
from . import _common as c
from ._corrections import is_correction, reviewed_of
from ._layer_turns import append_in_turns
from ._pairing import looks_like_truth

COMPUTE_TIP = (
    "Also map where the model is unsure (0 = sure, 1 = unsure): the entropy of its probabilities averaged over "
    "8 flips and rotations of the image, so it takes about 8 times as long as the prediction. Shown as a "
    "'... uncertainty' layer; paint where it is bright."
)
NEXT_TIP = (
    "Centre the view on the largest unsure region that no annotation layer covers yet (scribbles, or the "
    "reviewed part of a correction); click again for the next one."
)
MISSING = "tick 'Uncertainty map' and click Predict."
COLORMAP = "magma"
OPACITY = 0.5


def add_uncertainty_layer(viewer, image, data: np.ndarray, translate=None, select: bool = True):
    """An uncertainty layer over ``image`` (after Predict, or the Train dock's live preview): one look for both,
    and the role by which 'Next unsure region' finds it. Its selection (if ``select``) follows in a later
    event-loop turn (``_layer_turns``)."""
    from napari.layers import Image

    layer = Image(
        data,
        name=c.unique_name(viewer, f"{image.name} uncertainty"),
        scale=image.scale[-data.ndim :],
        translate=image.translate[-data.ndim :] if translate is None else translate,
        colormap=COLORMAP,
        opacity=OPACITY,
        blending="additive",
        contrast_limits=(0.0, 1.0),
        metadata={roles.ROLE_KEY: roles.UNCERTAINTY, roles.SOURCE_KEY: image.name},
    )
    append_in_turns(viewer, layer, select)
    return layer


class UncertaintyPanel:
    """'Uncertainty map' (computed with the next prediction) and 'Next unsure region'."""

    def __init__(self, viewer, message, missing: str = MISSING) -> None:
        self._viewer = viewer
        self._missing = missing  # what to do when there is no map yet
        self.compute = CheckBox(value=False, text="Uncertainty map (where to paint next)", tooltip=COMPUTE_TIP)
        self.next = PushButton(text="Next unsure region", tooltip=NEXT_TIP)
        self.status = c.wrapping_label()
        self._seen: list[tuple[int, tuple]] = []  # (id of the map layer, region box) already shown
        self._layers: dict[int, object] = {}  # job index -> its uncertainty layer, in the current run
        self.next.changed.connect(c.guarded(lambda: self.next_unsure_region(), message))

    def widgets(self) -> list:
        return [self.compute, self.next, self.status]

    def start_run(self) -> None:
        self._layers = {}

    def plane_done(self, index: int, image, data: np.ndarray) -> None:
        """A plane of job ``index``'s map is written: its layer appears with the first one, then refreshes."""
        layer = self._layers.get(index)
        if layer is None or layer not in self._viewer.layers:
            self._layers[index] = self.add_layer(image, data)
        else:
            layer.refresh()

    def add_layer(self, image, data: np.ndarray):
        """The uncertainty layer of ``image`` (the job's array, filled plane by plane), under the prediction."""
        return add_uncertainty_layer(self._viewer, image, data)

    def map_layer(self):
        """The uncertainty layer to search: the selected one, else the last one in the viewer."""
        active = self._viewer.layers.selection.active
        if active is not None and roles.role(active) == roles.UNCERTAINTY:
            return active
        layer = next((lay for lay in reversed(self._viewer.layers) if roles.role(lay) == roles.UNCERTAINTY), None)
        if layer is None:
            raise InputError(f"There is no uncertainty map yet: {self._missing}")
        return layer

    def annotated(self, layer) -> np.ndarray:
        """What is annotated already over the map: painted scribbles or masks, the reviewed part of corrections
        (never the ground truth, nor the plugin's outputs)."""
        shape = tuple(layer.data.shape)
        done = np.zeros(shape, bool)
        from napari.layers import Labels

        for lab in self._viewer.layers:
            if not isinstance(lab, Labels) or tuple(lab.data.shape) != shape:
                continue
            if roles.role(lab) in roles.OUTPUT_ROLES or looks_like_truth(lab):
                continue
            done |= reviewed_of(lab) if is_correction(lab) else np.asarray(lab.data) != 0
        return done

    def next_unsure_region(self):
        """Centre the view on the largest unsure region not yet annotated (and not shown before); the region."""
        from ..uncertainty import unsure_regions

        layer = self.map_layer()
        regions = unsure_regions(np.asarray(layer.data), self.annotated(layer))
        if not regions:
            self.status.value = "<small>No unsure region left that is not annotated.</small>"
            return None
        fresh = [r for r in regions if (id(layer), r.bbox) not in self._seen]
        if not fresh:  # every region shown once: start again from the largest
            self._seen = [s for s in self._seen if s[0] != id(layer)]
            fresh = regions
        region = fresh[0]
        self._seen.append((id(layer), region.bbox))
        self._centre(layer, region)
        rank = regions.index(region) + 1
        self.status.value = (
            f"<small>Unsure region {rank} of {len(regions)} in <b>{html.escape(layer.name)}</b>: "
            f"{region.area:,} pixels, mean uncertainty {region.mean:.2f}. Paint or correct it, then train again."
            "</small>"
        )
        return region

    def _centre(self, layer, region) -> None:
        """Move the dims to the region's plane and the camera to its centre (the zoom stays the user's)."""
        viewer = self._viewer
        world = np.asarray(layer.data_to_world(np.asarray(region.centroid, float)), float)
        lead = layer.ndim - 2
        if lead > 0:
            step = list(viewer.dims.point)
            offset = viewer.dims.ndim - layer.ndim
            for axis in range(lead):
                step[offset + axis] = world[axis]
            viewer.dims.point = step
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9: scene.camera
        camera.center = tuple(world[-2:])
