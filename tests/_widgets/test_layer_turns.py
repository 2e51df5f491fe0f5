"""A Labels layer added in parts over event-loop turns ends up as ``viewer.add_labels`` would have made it."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets._layer_turns import DEFERRED_OVERLAYS, add_labels_in_turns


def test_the_layer_is_in_at_once_and_its_tools_and_selection_follow(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="image")
    layer = add_labels_in_turns(viewer, np.zeros((64, 64), np.int32), name="labels", opacity=0.8)
    assert layer in viewer.layers and layer.name == "labels" and layer.opacity == 0.8
    assert viewer.layers.selection.active is not layer  # selected in a later turn
    qtbot.waitUntil(lambda: viewer.layers.selection.active is layer, timeout=5000)
    assert all(layer._overlays[k].visible for k in DEFERRED_OVERLAYS)
    plain = viewer.add_labels(np.zeros((64, 64), np.int32))
    assert {k: o.visible for k, o in layer._overlays.items()} == {k: o.visible for k, o in plain._overlays.items()}
    layer.mode = "polygon"  # the polygon tool works on it
    layer.mode = "paint"


def test_a_layer_removed_at_once_keeps_its_tools(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    layer = add_labels_in_turns(viewer, np.zeros((32, 32), np.int32))
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: all(layer._overlays[k].visible for k in DEFERRED_OVERLAYS), timeout=5000)
    viewer.layers.append(layer)
    assert viewer.layers.selection.active is layer


def test_a_large_plane_written_in_place_is_redrawn_in_bands_as_a_full_refresh_would(qtbot, make_napari_viewer):
    from napari_unet._widgets._layer_turns import BAND_PIXELS, refresh_in_turns

    viewer = make_napari_viewer()
    side = 1280  # 1.6 Mpx: four bands
    assert side * side > 2 * BAND_PIXELS
    data = np.zeros((side, side), np.int32)
    layer = viewer.add_labels(data)
    before_thumbnail = layer.thumbnail.copy()
    data[100:900:40, :] = np.arange(1, side + 1) % 7  # written in place, as the prediction job does
    refresh_in_turns(layer, viewer, contour=1)
    assert layer.contour == 1  # at once; the plane follows in later turns
    assert not layer._slice.image.view[100:900].any()  # nothing redrawn in this turn yet
    qtbot.waitUntil(
        lambda: layer._slice.image.view[860].any() and not np.array_equal(layer.thumbnail, before_thumbnail),
        timeout=5000,
    )
    banded = layer._slice.image.view.copy()
    layer.refresh()
    np.testing.assert_array_equal(banded, layer._slice.image.view)


def test_a_small_plane_is_refreshed_at_once(make_napari_viewer):
    from napari_unet._widgets._layer_turns import refresh_in_turns

    viewer = make_napari_viewer()
    data = np.zeros((64, 64), np.int32)
    layer = viewer.add_labels(data)
    data[10:20, 10:20] = 3
    refresh_in_turns(layer, viewer, contour=1)
    assert layer.contour == 1 and layer._slice.image.view[15, 10:20].any()
