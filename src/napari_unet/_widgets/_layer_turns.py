"""Adding a Labels layer without stalling napari: the layer goes in at once, the rest of napari's work for it
follows in later event-loop turns, so no single turn waits long on it.

Appending a Labels layer costs napari's GUI thread 100-350 ms in one turn (Xvfb, 2 cores, more the busier
the machine): its canvas visual, layer controls and list row, its two editing overlays (the polygon tool's and
the brush stroke's vispy visuals: ~40% of the time in cProfile), and the switch of the layer controls to it (a
new layer is selected). The data's dtype makes no difference (int32, int64, uint8, uint16 cost the same), nor
does building the ``Labels`` object apart (5-10 ms for 512 x 512; so it is not worth a worker thread). Here the
overlays are made invisible before the append (napari creates an overlay's visual only once it is visible) and
visible again one per turn, then the layer is selected: the same layer as ``viewer.add_labels`` gives, in
parts. ``benchmarks/gui_stall.py`` on the sample, load average ~3: Predict's click 171 ms before, 57 ms after
(the overlays 34 and 13 ms in turns of their own).

These are napari internals (``Layer._overlays``, ``LayerList._activate_on_insert``; checked on napari 0.9.2): where they
are missing, the layer is appended the plain way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from qtpy.QtCore import QTimer

log = logging.getLogger("napari_unet")

DEFERRED_OVERLAYS = ("polygon", "brush_stroke")  # Labels' editing overlays, made visible in later turns
Step = tuple[str, Callable[[], object]]  # what it does, in a few words; the call


def add_labels_in_turns(viewer, data, select: bool = True, **kwargs):
    """``viewer.add_labels(data, **kwargs)`` with its editing overlays and its selection in later turns."""
    from napari.layers import Labels

    layer = Labels(data, **kwargs)
    append_in_turns(viewer, layer, select)
    return layer


def append_in_turns(viewer, layer, select: bool = True) -> None:
    """Append ``layer`` now (its visual, controls and row); its editing overlays, then its selection (if
    ``select``), each in a turn of its own."""
    overlays = getattr(layer, "_overlays", {})
    hidden = [(k, overlays[k]) for k in DEFERRED_OVERLAYS if k in overlays and getattr(overlays[k], "visible", False)]
    for _, overlay in hidden:
        overlay.visible = False
    layers = viewer.layers
    activate = getattr(layers, "_activate_on_insert", None)
    if isinstance(activate, bool):
        layers._activate_on_insert = False
    try:
        layers.append(layer)
    finally:
        if isinstance(activate, bool):
            layers._activate_on_insert = activate
    # an overlay is shown again even if the layer was removed meanwhile: a layer put back keeps its tools
    steps: list[Step] = [(f"{k} overlay", lambda o=o: setattr(o, "visible", True)) for k, o in hidden]
    if select and isinstance(activate, bool):  # (without the flag, the plain append selected it already)
        steps.append(("select", lambda: layer in viewer.layers and setattr(viewer.layers.selection, "active", layer)))
    in_turns(steps)


def in_turns(steps: list[Step]) -> None:
    """Run ``steps`` one per event-loop turn, in order (a failing step does not stop the next)."""
    if not steps:
        return

    def run() -> None:
        run_step(*steps[0])
        in_turns(steps[1:])

    QTimer.singleShot(0, run)


def run_step(what: str, step: Callable[[], object]) -> None:
    """One deferred step, ``what`` it does in a few words (a module function, so that ``benchmarks/gui_stall.py``
    can time each)."""
    try:
        step()
    except Exception:  # a nicety of napari's (a tool's overlay, the selection): never worth an error
        log.debug("a deferred step of adding a layer failed", exc_info=True)


# rows of a plane redrawn per event-loop turn: napari redraws a 2048 x 2048 Labels layer with contours in one
# 130-220 ms turn (its contour is two grey-scale filters over the plane); in bands of ~0.5 Mpx, ~45 ms a turn
BAND_PIXELS = 1 << 19


def refresh_in_turns(layer, viewer, contour: int | None = None) -> None:
    """``layer.refresh()`` for a Labels layer whose array was written in place, the shown plane in bands of rows,
    one per event-loop turn (napari's own partial redraw, as its brush uses); ``contour`` (if given) is set
    without the full redraw its setter makes. Small planes, 3D views and other napari versions: one refresh."""
    shown = getattr(getattr(layer, "_slice_input", None), "displayed", None)
    height, width = (layer.data.shape[d] for d in shown) if shown is not None and len(shown) == 2 else (0, 0)
    if not hasattr(layer, "_partial_labels_refresh") or height * width <= BAND_PIXELS:
        if contour is not None:
            layer.contour = contour  # (its setter refreshes)
        else:
            layer.refresh()
        return
    if contour is not None:
        layer._contour = int(contour)
        layer.events.contour()
    rows = max(1, BAND_PIXELS // width)

    def band(start: int) -> None:
        if layer not in viewer.layers or layer._slice_input.displayed != shown:
            return  # removed, or the view changed (napari redrew it in full then)
        where = [slice(None)] * layer.data.ndim
        where[shown[0]], where[shown[1]] = slice(start, min(start + rows, height)), slice(0, width)
        layer._updated_slice = tuple(where)
        layer._partial_labels_refresh()

    steps: list[Step] = [(f"rows {r}", lambda r=r: band(r)) for r in range(0, height, rows)]
    in_turns([*steps, ("thumbnail", layer._update_thumbnail)])
