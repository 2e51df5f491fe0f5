"""Where to paint next: the uncertainty layer after Predict and 'Next unsure region'."""

from __future__ import annotations

import numpy as np

from napari_unet import layer_roles as roles

from .test_corrections_gui import predicted  # noqa: F401  (the fixture)


def test_uncertainty_layer_and_next_unsure_region(qtbot, sample_viewer, predicted, messages):  # noqa: F811
    from .conftest import wait_until

    viewer, widget = sample_viewer, predicted
    widget._uncertainty.compute.value = True
    widget.start_prediction()
    wait_until(qtbot, lambda: not widget.busy, timeout=120)
    assert not messages["error"], messages
    (layer,) = [lay for lay in viewer.layers if roles.role(lay) == roles.UNCERTAINTY]
    assert layer.name == "nuclei uncertainty" and layer.colormap.name == "magma"
    data = np.asarray(layer.data)
    assert data.dtype == np.float32 and data.shape == (512, 512) and data.min() >= 0 and data.max() <= 1
    assert data.max() > 0.5  # a 5-step model is unsure somewhere
    assert layer not in [lay for _, lay in widget._image_choice._choices()]  # never offered as an image


def test_next_unsure_region_skips_what_is_annotated(sample_viewer, predicted):  # noqa: F811
    viewer, widget = sample_viewer, predicted
    unsure = np.zeros((512, 512), np.float32)
    unsure[100:140, 300:360] = 0.9  # the largest
    unsure[400:420, 50:70] = 0.8
    unsure[20:30, 20:30] = 0.7
    layer = widget._uncertainty.add_layer(viewer.layers["nuclei"], unsure)
    assert roles.role(layer) == roles.UNCERTAINTY
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    first = widget.next_unsure_region()
    assert first.bbox == (100, 300, 140, 360)
    assert np.allclose(camera.center[-2:], (119.5, 329.5), atol=1)
    second = widget.next_unsure_region()
    assert second.bbox == (400, 50, 420, 70)  # the next one, not the same again
    assert "region 2 of 3" in widget._uncertainty.status.value
    strokes = viewer.layers["nuclei strokes"]  # a region painted over is annotated: not offered any more
    strokes.data[100:140, 300:360] = 1
    corrections = widget.make_editable()  # a reviewed correction counts as annotated too
    widget._corrections.mark_plane_reviewed(corrections)
    assert widget.next_unsure_region() is None
    assert "No unsure region left" in widget._uncertainty.status.value


def test_live_preview_shows_uncertainty_when_asked(qtbot, sample_viewer, messages, monkeypatch):
    """'Show uncertainty': each U-Net preview also fills one '... uncertainty' layer (updated in place) in the
    same region as the preview's labels; 'Next unsure region' works from it."""
    from napari_unet._widgets._train import TrainWidget
    from napari_unet._widgets._uncertainty import UncertaintyPanel
    from napari_unet.training.events import View

    from .conftest import TINY, wait_until

    viewer = sample_viewer
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    widget.set_settings(**{**TINY, "time_limit": 4, "preview_every": 1, "preview_uncertainty": True})
    view = View(0, (), (100, 300), (200, 420))  # a region smaller than the image (the test's viewer is not drawn)
    monkeypatch.setattr(widget._live_preview, "current_view", lambda pairs: view)
    (r0, r1), (c0, c1) = view.rows, view.cols
    widget.set_settings(preview_uncertainty=False)
    assert widget._live_preview.unsure.next.native.isHidden()
    widget.set_settings(preview_uncertainty=True)
    widget.start_training()

    def unsure_layers():
        return [lay for lay in viewer.layers if roles.role(lay) == roles.UNCERTAINTY]

    wait_until(qtbot, lambda: len(unsure_layers()) == 1, timeout=5)  # added in the turn after the click
    (layer,) = unsure_layers()
    wait_until(qtbot, lambda: not widget.running, timeout=60)
    assert not messages["error"], messages
    assert unsure_layers() == [layer]  # no new layer: updated in place
    assert layer.name == "nuclei uncertainty" and layer.colormap.name == "magma" and layer.visible
    data, preview = np.asarray(layer.data), viewer.layers["nuclei preview"]
    assert data.dtype == np.float32 and data.shape == preview.data.shape == (512, 512)
    assert data.min() >= 0 and data.max() <= 1 and data[r0:r1, c0:c1].max() > 0
    outside = np.ones(data.shape, bool)
    outside[r0:r1, c0:c1] = False
    assert not data[outside].any() and not np.asarray(preview.data)[outside].any()  # the preview's region
    layers = viewer.layers  # painting goes on undisturbed: the strokes stay on top
    assert layers.index(layers["nuclei strokes"]) > layers.index(layer)
    assert UncertaintyPanel(viewer, lambda *_: None).map_layer() is layer  # the Predict dock's finds it too
    assert not widget._live_preview.unsure.next.native.isHidden()  # shown while 'Show uncertainty' is ticked
    region = widget.next_unsure_region()
    if region is not None:  # a 4 s model is unsure somewhere, mostly; where it is, it is inside the preview
        assert r0 <= region.bbox[0] and region.bbox[2] <= r1 and c0 <= region.bbox[1] and region.bbox[3] <= c1
