"""Commands of the *Layers > Segment > U-Net* menu that act on the selected layer, without opening a dock.

napari (0.9) lets plugins add to its Layers menu, not to the layer list's right-click menu; so *Correct the
selected prediction* lives here, beside the docks. napari fills ``viewer`` from the type hint, which it
resolves in this module's globals: hence ``napari`` is imported here (napari is running when it is called).
"""

from __future__ import annotations

import napari

from .. import layer_roles as roles
from . import _common as c
from ._corrections import REMOVE_TIP, make_correction_layer


def correct_selected_prediction(viewer: napari.viewer.Viewer) -> None:
    """The Predict dock's *Correct this prediction* for the selected layer: an editable copy, paired with its
    image in the Train dock, where only what the user reviews trains as complete masks. Anything else
    selected: a red notification that says what to select (no traceback)."""
    layer = viewer.layers.selection.active
    if layer is None or roles.role(layer) != roles.PREDICTION or not roles.is_complete(layer):
        what = "nothing is selected" if layer is None else f"'{layer.name}' is not a finished prediction"
        c.report_error(
            f"Correct the selected prediction: {what}. Select a layer that Predict made (in the layer list), "
            "then choose Layers > Segment > U-Net > Correct the selected prediction again."
        )
        return
    made = make_correction_layer(viewer, layer)
    c.report_info(
        f"Fix '{made.name}' with napari's tools; {REMOVE_TIP[0].lower()}{REMOVE_TIP[1:]} Merge, split and "
        "'Mark plane reviewed' are in the Predict dock; Train again in the Train dock."
    )
