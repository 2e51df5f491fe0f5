"""The user story of issue #3, through the widgets only: sample -> strokes -> Train -> Predict -> Metrics."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets import MetricsWidget, PredictWidget, TrainWidget

from .conftest import TINY, assert_unchanged, snapshot, wait_until


def test_sample_train_predict_metrics(qtbot, sample_viewer, messages, tmp_path):
    viewer = sample_viewer
    before = snapshot(viewer)
    train = TrainWidget(viewer)
    predict = PredictWidget(viewer)
    metrics = MetricsWidget(viewer)
    for name, widget in (("Train", train), ("Predict", predict), ("Metrics", metrics)):
        viewer.window.add_dock_widget(widget, name=name)

    # the strokes are picked by default; train a few steps with a tiny network
    assert train.pairs() == [(viewer.layers["nuclei"], viewer.layers["nuclei strokes"])]
    train.set_settings(**TINY)
    train._train.changed.emit(True)
    assert train.running
    wait_until(qtbot, lambda: not train.running, timeout=90)
    assert train._store.model is not None, messages
    assert train._plot.loss, "the loss curve saw no step"
    assert "Done" in train._status.value

    # predict every opened image with contours
    assert "trained here" in predict._model_info.value
    predict._predict.changed.emit(True)
    wait_until(qtbot, lambda: not predict.busy, timeout=90)
    layer = viewer.layers["nuclei prediction"]
    assert layer.data.shape == viewer.layers["nuclei"].data.shape
    assert layer.contour == 1 and layer.data.any()

    # the table scores it against the ground truth, paired by name
    qtbot.waitUntil(lambda: len(metrics.rows) >= 1, timeout=5000)
    row = metrics.rows[0]
    assert (row["image"], row["ground truth"]) == ("nuclei prediction", "nuclei ground truth")
    assert 0.0 <= row["dice"] <= 1.0 and 0.0 <= row["iou"] <= row["dice"]
    assert metrics._table.item(0, 2).text() == f"{row['dice']:.3f}"
    assert metrics.export_csv(tmp_path / "scores.csv").read_text().startswith("image,class,dice")

    # nothing the user made was modified, and nothing went wrong
    assert_unchanged(viewer, before, before)  # every layer that was there before
    assert not messages["error"], messages
    assert np.asarray(viewer.layers["nuclei strokes"].data).dtype == before["nuclei strokes"].dtype


def test_docks_opened_first_then_the_layers(qtbot, make_napari_viewer, messages):
    """A new user opens the three docks, then the sample: pairing follows, the truth is left for scoring."""
    from napari_unet.sample_data import make_nuclei_strokes_sample

    viewer = make_napari_viewer()
    train, predict, metrics = TrainWidget(viewer), PredictWidget(viewer), MetricsWidget(viewer)
    for name, widget in (("Train", train), ("Predict", predict), ("Metrics", metrics)):
        viewer.window.add_dock_widget(widget, name=name)
    assert train.pairs() == []
    for data, kwargs, kind in make_nuclei_strokes_sample():  # File > Open Sample, layer after layer
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    before = snapshot(viewer)
    assert train.pairs() == [(viewer.layers["nuclei"], viewer.layers["nuclei strokes"])]
    assert train._mode.value == "sparse" and "Scribbles" in train._mode_hint.value

    train.set_settings(**TINY)
    train._train.changed.emit(True)
    wait_until(qtbot, lambda: not train.running, timeout=90)
    assert train._store.model is not None, messages
    predict._predict.changed.emit(True)
    wait_until(qtbot, lambda: not predict.busy, timeout=90)
    qtbot.waitUntil(lambda: len(metrics.rows) >= 1, timeout=5000)
    assert metrics.rows[0]["ground truth"] == "nuclei ground truth"
    assert_unchanged(viewer, before, before)
    assert not messages["error"], messages
