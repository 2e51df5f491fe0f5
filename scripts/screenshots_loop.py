"""Screenshots of the loop after the first model, from the real napari window (run under Xvfb on a headless box).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_loop.py [--out docs] [--seconds 20]

Trains on the bundled sample's scribbles, predicts the image, makes the prediction editable, removes a wrong
object and paints a missed one as a person would (from the sample's ground truth), and shoots
``correct.png``; then shows the uncertainty layer of the prediction (centred by 'Next unsure region') and
shoots ``uncertainty.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import napari
import numpy as np
from screenshots import shoot, wait


def _errors(prediction: np.ndarray, truth: np.ndarray) -> tuple[int, int, int | None]:
    """What a person would fix in one view: a true object the prediction misses most (the largest of those
    missed wholly), the smallest predicted speck near it, and a predicted object near it that covers two or more
    true objects (None if there is none)."""
    from scipy import ndimage

    true_ids, sizes = np.unique(truth[truth > 0], return_counts=True)
    missed_share = np.asarray([np.mean(prediction[truth == t] == 0) for t in true_ids])
    missed = int(true_ids[np.lexsort((-sizes, -np.round(missed_share, 1)))[0]])
    ids, areas = np.unique(prediction[prediction > 0], return_counts=True)
    centres = np.asarray(ndimage.center_of_mass(prediction > 0, prediction, ids))
    distance = np.linalg.norm(centres - np.asarray(ndimage.center_of_mass(truth == missed)), axis=1)
    near = distance < 150  # in the same view
    speck = int(ids[near][np.argmin(areas[near])])

    def covered(i: int) -> int:
        inside = truth[prediction == i]
        return sum(np.sum(inside == t) > 0.3 * np.sum(truth == t) for t in np.unique(inside[inside > 0]))

    merged = [(areas[k], int(i)) for k, i in enumerate(ids) if near[k] and i != speck and covered(i) >= 2]
    return missed, speck, max(merged)[1] if merged else None


def _edit_boxes(viewer: napari.Viewer, edits: list[tuple[str, np.ndarray]]):
    """For the picture only: a labelled box around each edited object."""

    def box(mask):
        r, c = np.nonzero(mask)
        return [[r.min() - 5, c.min() - 5], [r.max() + 5, c.max() + 5]]

    return viewer.add_shapes(
        [box(mask) for _, mask in edits],
        shape_type="rectangle",
        edge_color="white",
        edge_width=1.5,
        face_color="transparent",
        name="edits (for the picture)",
        features={"what": [what for what, _ in edits]},
        text={"string": "{what}", "anchor": "upper_left", "color": "white", "size": 8, "translation": [-6, 0]},
    )


def _centre_on(viewer: napari.Viewer, mask: np.ndarray, zoom: float = 3.0, view=(830, 590)) -> None:
    """Centre on ``mask`` at ``zoom``, kept inside the image (``view``: canvas height, width in pixels)."""
    rows, cols = np.nonzero(mask)
    half = np.asarray(view, float) / zoom / 2
    centre = np.clip([rows.mean(), cols.mean()], half, np.asarray(mask.shape) - half)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9: scene.camera
    camera.center = tuple(float(x) for x in centre)
    camera.zoom = zoom


def _show_dock(widget) -> None:
    """Bring the tab of this dock to the front."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.native.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    if parent is not None:
        parent.raise_()


def _no_toasts(viewer: napari.Viewer) -> None:
    """Close the notification toasts, which would cover the canvas in the picture."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def _scroll_to(dock_widget, widget) -> None:
    """Scroll the dock so that ``widget`` (a section of it) is in view."""
    from qtpy.QtWidgets import QScrollArea

    area = dock_widget.native.findChild(QScrollArea)
    if area is not None:
        area.ensureWidgetVisible(widget.native, 0, 200)


def correct(viewer: napari.Viewer, predict, out: Path) -> None:
    """Make the prediction editable, fix three objects as a person would (napari's fill with 0, a painted
    object, the dock's Split), and shoot the result."""
    (prediction,) = [lay for lay in predict.outputs if lay.metadata.get("napari_unet_source") == "nuclei"]
    layer = predict.make_editable(prediction)
    truth = np.asarray(viewer.layers["nuclei ground truth"].data)
    missed, speck, merged = _errors(np.asarray(layer.data), truth)
    removed = np.asarray(layer.data) == speck
    r, c = np.argwhere(removed)[0]
    layer.fill((int(r), int(c)), 0)  # napari's fill bucket with label 0
    edits = [("removed (fill 0)", removed)]
    if merged is not None:
        before = np.asarray(layer.data) == merged
        predict._corrections.split_object(merged, layer)
        edits.append(("split (one click)", before))
    new_id = int(np.max(layer.data)) + 1
    where = np.nonzero((truth == missed) & (np.asarray(layer.data) == 0))
    layer.data_setitem(where, new_id)  # as painted with the brush, in one stroke
    painted = np.asarray(layer.data) == new_id
    edits.append(("painted", painted))
    print(f"removed {speck}, split {merged}, painted true object {missed} as {new_id}")
    layer.selected_label = new_id
    layer.contour = 1
    boxes = _edit_boxes(viewer, edits)
    viewer.layers.selection.active = layer
    layer.mode = "paint"
    for name in ("nuclei ground truth", "nuclei strokes", "nuclei uncertainty", "nuclei preview"):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    union = np.any([mask for _, mask in edits], axis=0)
    rows, cols = np.nonzero(union)
    zoom = min(3.0, 560 / (np.ptp(cols) + 80), 800 / (np.ptp(rows) + 80))  # every edit in view
    _centre_on(viewer, union, zoom=zoom)
    predict._corrections.update_status()
    _show_dock(predict)
    _scroll_to(predict, predict._corrections.status)
    _no_toasts(viewer)
    shoot(viewer, out / "correct.png")
    viewer.layers.remove(boxes)


def uncertainty(viewer: napari.Viewer, predict, out: Path) -> None:
    """Show the uncertainty layer of the prediction, centred on the largest unsure region."""
    for layer in viewer.layers:
        layer.visible = layer.name in ("nuclei", "nuclei uncertainty", "nuclei corrections")
    viewer.layers["nuclei corrections"].contour, viewer.layers["nuclei corrections"].opacity = 1, 0.7
    viewer.layers.selection.active = viewer.layers["nuclei uncertainty"]
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom = 2.0
    for _ in range(40):  # the next region, as a user clicking on, until one away from the border fills the view
        region = predict.next_unsure_region()
        if region is None or min(*region.centroid[-2:], *(512 - np.asarray(region.centroid[-2:]))) > 150:
            break
    _show_dock(predict)
    _scroll_to(predict, predict._uncertainty.status)
    _no_toasts(viewer)
    shoot(viewer, out / "uncertainty.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--seconds", type=float, default=20.0, help="training time budget")
    parser.add_argument("--model", type=Path, default=None, help="a model file to start from instead of training")
    parser.add_argument("--save-model", type=Path, default=None, help="save the trained model here (for --model)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(show=True, title="napari-unet-trainer")
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
    if args.model is not None:
        train.load_model(args.model)
    else:
        train.set_settings(time_limit=args.seconds)
        train.start_training()
        wait(args.seconds * 2 + 30, until=lambda: not train.running)
        if args.save_model is not None:
            train._files.save_annotations.value = False
            train.save_model(args.save_model)
    _, predict = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Predict", tabify=True)
    predict._all.value = False
    predict._images.value = [viewer.layers["nuclei"]]
    predict._instances.value = True
    predict._uncertainty.compute.value = True
    predict.start_prediction()
    wait(120, until=lambda: not predict.busy)
    correct(viewer, predict, args.out)
    uncertainty(viewer, predict, args.out)
    viewer.close()


if __name__ == "__main__":
    main()
