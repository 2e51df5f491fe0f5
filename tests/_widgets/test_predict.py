"""Predict widget: new layers per image (2D, stacks, dask), contours, polygons, export, cancel, bad input."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

from napari_unet._widgets._predict import PredictWidget
from napari_unet._widgets._state import describe_model, get_store

from .conftest import assert_close_ends_cleanly, assert_unchanged, snapshot, wait_until


@pytest.fixture
def predict_widget(sample_viewer, tiny_model):
    get_store(sample_viewer).set(tiny_model, "tiny test model")
    widget = PredictWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(widget, name="Predict")
    return widget


def test_predicts_every_opened_image_into_new_layers(qtbot, predict_widget, sample_viewer, messages):
    image = sample_viewer.layers["nuclei"].data
    sample_viewer.add_image(np.stack([image[:128, :128]] * 3), name="stack")
    sample_viewer.add_image(da.from_array(image[:96, :160], chunks=(48, 80)), name="lazy")
    before = snapshot(sample_viewer)
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.busy, timeout=60)
    assert not messages["error"], messages
    out = {layer.metadata["napari_unet_source"]: layer for layer in predict_widget.outputs}
    assert set(out) == {"nuclei", "stack", "lazy"}
    assert out["nuclei"].name == "nuclei prediction"
    assert out["nuclei"].data.shape == (512, 512)
    assert out["stack"].data.shape == (3, 128, 128)
    assert out["lazy"].data.shape == (96, 160)
    assert all(layer.contour == 1 for layer in out.values())
    assert out["nuclei"].data.max() > 1  # instances: touching objects get their own ids
    first, last = out["stack"].data[0], out["stack"].data[2]
    np.testing.assert_array_equal(first > 0, last > 0)  # same plane, same answer
    assert not set(np.unique(first[first > 0])) & set(np.unique(last[last > 0]))  # ids unique across the stack
    assert_unchanged(sample_viewer, before, before)  # the user's layers are never modified
    assert "done" in predict_widget._progress.native.format()


def test_object_count_and_instances_default_for_a_boundary_model(qtbot, predict_widget, sample_viewer, tiny_model):
    import copy

    from napari_unet import UNet

    predict_widget._instances.value = False
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["nuclei"]]
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.running, timeout=60)
    (layer,) = predict_widget.outputs
    n = layer.metadata["napari_unet_objects"]
    assert n > 0 and f"({n} object" in predict_widget._status.value
    # a model trained on instance masks: instances are ticked when it becomes the model in memory
    boundary = UNet(tiny_model.in_channels, 2, 4, 2)
    boundary.meta = {**copy.deepcopy(tiny_model.meta), "instances": "boundary"}
    get_store(sample_viewer).set(boundary, describe_model(boundary, "trained"))
    assert predict_widget._instances.value
    assert "objects" in predict_widget._model_info.value
    predict_widget._instances.value = False  # the user's choice then stands
    predict_widget._update_model_info()
    assert not predict_widget._instances.value


def test_polygons_layer(qtbot, predict_widget, sample_viewer, messages, monkeypatch):
    from napari_unet._widgets import _polygons
    from napari_unet.jobs import predict as predict_jobs

    image = sample_viewer.layers["nuclei"].data
    sample_viewer.add_image(np.stack([image[:96, :96], image[96:192, :96]]), name="crop")
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["crop"]]
    predict_widget._polygons.value = True
    monkeypatch.setattr(_polygons, "SHAPES_CHUNK", 3)  # several chunks, as for a big image
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.busy, timeout=60)
    labels = predict_widget.outputs[0].data
    n = sum(len(np.unique(plane)) - 1 for plane in labels)
    shapes = sample_viewer.layers["crop polygons"]
    assert len(shapes.data) == n > 3
    assert {int(round(p[0, 0])) for p in shapes.data} == {0, 1}  # each polygon sits in its own plane
    # too many objects: a warning instead of a sluggish layer
    monkeypatch.setattr(predict_jobs, "MAX_SHAPES", 2)
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.busy, timeout=60)
    assert any("too many polygons" in m for m in messages["warning"])
    assert "crop polygons [2]" not in sample_viewer.layers


def test_semantic_labels_and_no_contours(qtbot, predict_widget, sample_viewer):
    predict_widget._instances.value = False
    predict_widget._contours.value = False
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["nuclei"]]
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.running, timeout=60)
    (layer,) = predict_widget.outputs
    assert layer.data.dtype == np.uint8 and layer.data.max() <= 1
    assert layer.contour == 0
    predict_widget._contours.value = True
    assert layer.contour == 1


def test_export_polygons(qtbot, predict_widget, tmp_path):
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.running, timeout=60)
    layer = predict_widget.outputs[0]
    n = len(np.unique(layer.data)) - 1
    geojson = predict_widget.export_polygons(tmp_path / "nuclei.geojson", layer)
    assert len(json.loads(geojson.read_text())["features"]) == n
    csv = predict_widget.export_polygons(tmp_path / "nuclei.csv", layer)
    assert csv.read_text().startswith("label,plane,vertex,y,x")


def test_cancel_takes_effect_at_once(qtbot, predict_widget, sample_viewer, messages):
    big = np.tile(sample_viewer.layers["nuclei"].data, (40, 1, 1))  # 40 planes: long enough to cancel
    sample_viewer.add_image(big, name="big stack")
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["big stack"]]
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: bool(predict_widget.outputs) and predict_widget._progress.value > 0, timeout=60)
    predict_widget._cancel.changed.emit(True)
    assert not predict_widget.running
    assert predict_widget._predict.enabled
    from qtpy.QtCore import QThreadPool

    assert QThreadPool.globalInstance().waitForDone(60_000)
    assert "(incomplete)" in predict_widget.outputs[0].name
    wait_until(qtbot, lambda: predict_widget.outputs[0].editable, timeout=5)  # the user may fix it, once stopped
    assert not messages["error"]


def test_cancel_keeps_the_layer_locked_until_the_job_has_stopped(qtbot, predict_widget, sample_viewer, monkeypatch):
    import threading

    from napari_unet._widgets import _predict
    from napari_unet.jobs.events import PlaneDone

    writing = threading.Event()
    release = threading.Event()
    real = _predict.predict_job

    def slow_job(*args):
        for event in real(*args):
            yield event
            if isinstance(event, PlaneDone):
                writing.set()
                release.wait(10)  # a plane still being computed and written after Cancel

    monkeypatch.setattr(_predict, "predict_job", slow_job)
    sample_viewer.add_image(np.stack([sample_viewer.layers["nuclei"].data[:64, :64]] * 3), name="stack")
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["stack"]]
    predict_widget.start_prediction()
    qtbot.waitUntil(writing.is_set, timeout=60_000)
    predict_widget._cancel.changed.emit(True)
    (layer,) = predict_widget.outputs
    assert not predict_widget.running
    qtbot.wait(100)
    assert not layer.editable  # was: editable at once, while the job could still write over the user's edits
    release.set()
    wait_until(qtbot, lambda: layer.editable, timeout=10)


def test_prediction_layer_is_read_only_while_the_job_writes_it(qtbot, predict_widget, sample_viewer):
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["nuclei"]]
    predict_widget.start_prediction()
    (layer,) = predict_widget.outputs
    assert predict_widget.running
    assert not layer.editable
    wait_until(qtbot, lambda: not predict_widget.running, timeout=60)
    assert layer.metadata["napari_unet_complete"]
    assert layer.editable


@pytest.mark.parametrize("case", ["no model", "no image", "wrong channels"])
def test_bad_input_shows_an_error(make_napari_viewer, sample_viewer, tiny_model, messages, case):
    viewer = sample_viewer
    if case == "no image":
        viewer = make_napari_viewer()
    if case == "wrong channels":
        viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="rgb", rgb=True)
    if case != "no model":
        get_store(viewer).set(tiny_model, "tiny")
    widget = PredictWidget(viewer)
    before = snapshot(viewer)
    widget._predict.changed.emit(True)
    assert not widget.running
    assert len(messages["error"]) == 1, messages
    assert {"no model": "no model", "no image": "No image", "wrong channels": "channel"}[case] in messages["error"][0]
    assert len(viewer.layers) == len(before)
    assert_unchanged(viewer, before, before)


def test_model_file(qtbot, sample_viewer, tiny_model, tmp_path, messages):
    from napari_unet import save_model

    path = save_model(tiny_model, tmp_path / "m.pt")
    widget = PredictWidget(sample_viewer)
    widget._source.value = "file"
    widget._file.value = path
    widget.start_prediction()
    wait_until(qtbot, lambda: not widget.running, timeout=60)
    assert widget.outputs and widget.outputs[0].data.shape == (512, 512)
    assert not messages["error"]


def test_closing_the_viewer_during_prediction_ends_the_worker(qtbot, predict_widget, sample_viewer, messages, caplog):

    big = np.tile(sample_viewer.layers["nuclei"].data, (40, 1, 1))
    sample_viewer.add_image(big, name="big stack")
    predict_widget._polygons.value = True
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: predict_widget._progress.value > 0, timeout=60)
    assert_close_ends_cleanly(qtbot, sample_viewer, messages, caplog)


def test_stack_instance_ids_unique_and_linked_through_z(qtbot, predict_widget, sample_viewer):
    plane = sample_viewer.layers["nuclei"].data[:128, :128]
    sample_viewer.add_image(np.stack([plane] * 3), name="z stack")
    predict_widget._all.value = False
    predict_widget._images.value = [sample_viewer.layers["z stack"]]
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.busy, timeout=60)
    ids = [set(np.unique(p[p > 0]).tolist()) for p in predict_widget.outputs[0].data]
    assert ids[0] and not ids[0] & ids[1] and not ids[1] & ids[2]  # was: 1, 2, ... in every plane
    predict_widget._stitch.value = 0.5
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.busy, timeout=60)
    linked = predict_widget.outputs[0].data
    np.testing.assert_array_equal(linked[0], linked[2])  # the same objects keep their ids through Z


def test_averaging_flips_gives_the_core_tta_labels(qtbot, predict_widget, sample_viewer, tiny_model):
    """'Average 8 flips' predicts what ``predict(..., tta=True)`` does; a volume model has no such option."""
    from napari_unet import UNet, predict

    predict_widget._instances.value = False
    predict_widget._options.tta.value = True
    predict_widget._all.value = False
    image = sample_viewer.layers["nuclei"]
    predict_widget._images.value = [image]
    predict_widget.start_prediction()
    wait_until(qtbot, lambda: not predict_widget.running, timeout=60)
    (layer,) = predict_widget.outputs
    expected = predict(tiny_model, np.asarray(image.data), tta=True)
    assert np.array_equal(layer.data, expected)
    assert not np.array_equal(expected, predict(tiny_model, np.asarray(image.data)))  # the option did something
    predict_widget._options.default_instances(UNet(1, 1, 4, 2, spatial_dims=3))
    assert not predict_widget._options.tta.enabled and not predict_widget._options.tta.value
