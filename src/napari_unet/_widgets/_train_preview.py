"""The live preview while training: which region the user looks at, and the layers the session's ``Preview``
events are drawn into (its labels; with 'Show uncertainty', where the model is unsure)."""

from __future__ import annotations

import numpy as np

from .. import layer_roles as roles
from ..training.events import Preview, View
from . import _colors as colors
from . import _common as c
from ._layer_turns import append_in_turns, in_turns

MAX_MIRRORED_PLANE = 4096 * 4096  # up to this plane size the preview layer holds a whole plane (written in place)
MIN_VIEW_SIDE = 64  # the preview predicts at least this many pixels per side, so the network sees some context


class LivePreview:
    """The preview layers of one Train dock (the labels and, with 'Show uncertainty', the uncertainty map) and
    the visible region of the running session's images.

    ``note`` says why there is no preview (e.g. a 3D view), for the status line.
    """

    def __init__(self, viewer, message) -> None:
        from ._uncertainty import UncertaintyPanel

        self._viewer = viewer
        # 'Next unsure region' over the uncertainty layer (shown with 'Show uncertainty')
        self.unsure = UncertaintyPanel(viewer, message, "tick 'Show uncertainty' (Advanced settings) and train.")
        self.layer = None
        self._image = None  # the image layer the preview layer belongs to
        self.unsure_layer = None  # the preview's uncertainty layer (an Image, found by 'Next unsure region')
        self._unsure_image = None
        self.off_this_run = False  # the user removed the preview layer during this run
        self.unsure_off_this_run = False  # the user removed the uncertainty layer during this run
        self.note = ""

    def start_run(self) -> None:
        self.off_this_run = self.unsure_off_this_run = False
        self.note = ""

    def forget(self, layer) -> None:
        """A layer was removed; if it was a preview layer, the next run adds a new one."""
        if layer is self.layer:
            self.layer = None
        if layer is self.unsure_layer:
            self.unsure_layer = None

    def apply_settings(self, inbox, settings) -> None:
        """Hand the preview settings (``_train_settings.PREVIEW``) to the running session: they apply at once."""
        inbox.preview = bool(settings.preview.value) and not self.off_this_run
        inbox.preview_interval = float(settings.preview_every.value)
        inbox.uncertainty = bool(settings.preview_uncertainty.value) and not self.unsure_off_this_run

    def unsure_widgets(self, settings) -> list:
        """'Next unsure region' and its status line, shown while 'Show uncertainty' is ticked."""
        widgets = [self.unsure.next, self.unsure.status]

        def follow(*_) -> None:
            for w in widgets:
                w.visible = bool(settings.preview_uncertainty.value)

        settings.preview_uncertainty.changed.connect(follow)
        if not settings.preview_uncertainty.value:
            follow()  # (never shown before they have a parent: they would pop up as windows)
        return widgets

    def removed_during_run(self, layer, inbox) -> None:
        """The user removed a preview layer while training: that part of the preview stops for this run."""
        if layer is self.layer:
            self.off_this_run, inbox.preview = True, False
        elif layer is self.unsure_layer:
            self.unsure_off_this_run, inbox.uncertainty = True, False

    def hide(self) -> None:
        """The run's model was not kept: its preview layers show a model that is gone."""
        for layer in (self.layer, self.unsure_layer):
            if layer is not None:
                layer.visible = False

    def prepare(self, pairs: list[tuple], n_classes: int, uncertainty: bool = False) -> None:
        """Add the (empty) preview layers when Train is clicked, so no layer is created while training runs.

        Adding a layer costs napari a few hundred ms on the GUI thread (visuals, layer controls); during
        training the preview then only writes the predicted box into these layers and refreshes them.
        """
        image = pairs[0][0]
        shape = _plane_shape(image)
        if shape is None:
            return  # huge planes: the layers are created with the first preview, sized to the predicted box
        if not self._current(self.layer, self._image, image):
            self._add_layer(pairs, image, np.zeros(shape, np.uint8), image.translate, n_classes)
        if uncertainty and not self._current(self.unsure_layer, self._unsure_image, image):
            # in the next event-loop turn: two new layers in one turn would make the click wait twice as long
            in_turns([("uncertainty layer", lambda: self._prepare_unsure(pairs, image, shape))])

    def _prepare_unsure(self, pairs: list[tuple], image, shape: tuple[int, ...]) -> None:
        """The empty uncertainty layer, unless a preview made it already (or its image is gone)."""
        if not self._current(self.unsure_layer, self._unsure_image, image) and image in self._viewer.layers:
            self._add_unsure(pairs, image, np.zeros(shape, np.float32), image.translate)

    def _current(self, layer, owner, image) -> bool:
        return layer is not None and layer in self._viewer.layers and owner is image

    def _add_layer(self, pairs: list[tuple], image, data: np.ndarray, translate, n_classes: int):
        from napari.layers import Labels

        layer = Labels(
            data,
            name=c.unique_name(self._viewer, f"{image.name} preview"),
            scale=image.scale,
            translate=translate,
            opacity=0.45,
            colormap=colors.class_colormap(max(n_classes, 1)),
            metadata={roles.ROLE_KEY: roles.PREVIEW},
        )
        layer.editable = False
        append_in_turns(self._viewer, layer, select=False)  # napari's work for it spread over turns
        self.layer, self._image = layer, image
        self._below_annotations(pairs, image, layer)
        return layer

    def _add_unsure(self, pairs: list[tuple], image, data: np.ndarray, translate):
        from ._uncertainty import add_uncertainty_layer

        layer = add_uncertainty_layer(self._viewer, image, data, translate, select=False)
        self.unsure_layer, self._unsure_image = layer, image
        self._below_annotations(pairs, image, layer)
        return layer

    def _below_annotations(self, pairs: list[tuple], image, layer) -> None:
        """Keep the user's annotation layer on top and active, so painting goes on undisturbed."""
        layers = self._viewer.layers
        for img, lab in pairs:
            if img is image and lab in layers:
                if layers.index(layer) > layers.index(lab):
                    layers.move(layers.index(layer), layers.index(lab))
                layers.selection.active = lab

    def show(self, p: Preview, pairs: list[tuple]) -> None:
        """Draw the predicted box into the preview layers (new layers if there are none for this image)."""
        image = pairs[p.view.image][0]
        n_max = int(p.labels.max()) if p.labels.size else 0
        layer = self._draw(
            self.layer if self._image is image else None, p, image, p.labels,
            lambda data, translate: self._add_layer(pairs, image, data, translate, n_max),
        )  # fmt: skip
        if n_max > len(layer.colormap.color_dict) - 2:
            layer.colormap = colors.class_colormap(n_max)
        if p.uncertainty is not None and not self.unsure_off_this_run:
            self._draw(
                self.unsure_layer if self._unsure_image is image else None, p, image, p.uncertainty,
                lambda data, translate: self._add_unsure(pairs, image, data, translate),
            )  # fmt: skip

    def _draw(self, layer, p: Preview, image, box: np.ndarray, add):
        """Write ``box`` (the view's labels or uncertainty) into ``layer``, or into a new one from ``add``."""
        scale = np.asarray(image.scale, float)
        lead = len(p.view.plane)
        if layer is not None and layer not in self._viewer.layers:
            layer = None
        mirrored = _plane_shape(image)
        (r0, r1), (c0, c1) = p.view.rows, p.view.cols
        if mirrored is not None:
            # the layer mirrors one whole plane: write the predicted box into it, clear the rest
            translate = np.asarray(image.translate, float) + np.array(p.view.plane + (0, 0), float) * scale
            if layer is None or tuple(layer.data.shape) != mirrored:
                if layer is not None:
                    self._viewer.layers.remove(layer)
                layer = add(np.zeros(mirrored, box.dtype), translate)
            data = layer.data
            data[...] = 0
            data[(0,) * lead + (slice(r0, r1), slice(c0, c1))] = box
        else:
            data = box.reshape((1,) * lead + box.shape)
            translate = np.asarray(image.translate, float) + np.array(p.view.plane + (r0, c0), float) * scale
            if layer is None:
                layer = add(data, translate)
        if not np.allclose(np.asarray(layer.translate, float), translate):
            layer.translate = translate
        if mirrored is not None:
            layer.refresh(thumbnail=False)
        else:
            layer.data = data
        return layer

    def current_view(self, pairs: list[tuple]) -> View | None:
        """The visible box of the preview image, in its data coordinates, or None (e.g. in 3D view).

        Sets ``note`` to the reason when there is no preview, for the status line.
        """
        viewer = self._viewer
        self.note = ""
        if not pairs:
            return None
        if viewer.dims.ndisplay != 2:
            self.note = "No live preview in 3D view: switch to 2D view to see it."
            return None
        active = viewer.layers.selection.active
        index = max((k for k, pair in enumerate(pairs) if any(active is x for x in pair)), default=0)
        image = pairs[index][0]
        shape = c.layer_spatial_shape(image)
        # the preview predicts planes of the last two axes; shown transposed (rows and columns swapped) is fine
        if sorted(viewer.dims.displayed) != [viewer.dims.ndim - 2, viewer.dims.ndim - 1]:
            self.note = (
                "No live preview: the view shows a cut through the stack (other axes than the last two); "
                "the preview predicts image planes. Reset the axis order (Transpose / Roll buttons) to see it."
            )
            return None
        point = np.asarray(image.world_to_data(viewer.dims.point), float)[-len(shape) :]
        plane = tuple(int(np.clip(round(x), 0, s - 1)) for x, s in zip(point[:-2], shape[:-2], strict=True))
        corners = np.asarray(image.corner_pixels)
        (r0, c0), (r1, c1) = corners[0, -2:], corners[1, -2:]
        h, w = shape[-2:]
        if r1 - r0 < 8 or c1 - c0 < 8:  # not drawn yet: the whole plane
            r0, c0, r1, c1 = 0, 0, h, w
        r0, c0 = max(0, int(r0) - 8), max(0, int(c0) - 8)
        r1, c1 = min(h, int(r1) + 9), min(w, int(c1) + 9)
        return View(index, plane, _widen(r0, r1, h, MIN_VIEW_SIDE), _widen(c0, c1, w, MIN_VIEW_SIDE))


def _plane_shape(image) -> tuple[int, ...] | None:
    """Shape of the preview layer (one plane of the image), or None if a plane is too large to mirror."""
    shape = c.layer_spatial_shape(image)
    if int(np.prod(shape[-2:])) > MAX_MIRRORED_PLANE:
        return None
    return (1,) * (len(shape) - 2) + tuple(shape[-2:])


def _widen(lo: int, hi: int, size: int, minimum: int) -> tuple[int, int]:
    if hi - lo >= minimum or size <= minimum:
        return (lo, hi) if size > minimum else (0, size)
    mid = (lo + hi) // 2
    lo = int(np.clip(mid - minimum // 2, 0, size - minimum))
    return lo, lo + minimum
