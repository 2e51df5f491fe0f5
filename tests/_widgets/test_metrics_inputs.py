"""Metrics widget with the inputs a new user brings: instance layers under 'Per class', masks opened as images."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets._metrics import MetricsWidget
from napari_unet.layer_roles import PREDICTION, ROLE_KEY
from napari_unet.sample_data import nuclei_labels


def test_per_class_on_instance_labels_scores_foreground_and_says_so(make_napari_viewer):
    viewer = make_napari_viewer()
    truth = nuclei_labels()[:256, :256]
    pred = np.roll(truth, 2, axis=1)
    viewer.add_labels(truth, name="nuclei ground truth")
    viewer.add_labels(pred, name="nuclei prediction", metadata={ROLE_KEY: PREDICTION})
    widget = MetricsWidget(viewer)
    widget._multiclass.value = True
    rows = widget.update_table()
    per_image = [r for r in rows if "layer" in r]
    assert len(per_image) == 1  # was: one row per object id, 0.000 nearly everywhere
    assert per_image[0]["class"] == 1 and per_image[0]["dice"] > 0.8
    assert "class labels only" in widget._hint.value
    classes = np.zeros((64, 64), np.uint8)  # real class labels still get a row per class
    classes[:32], classes[32:] = 1, 2
    viewer.add_labels(classes, name="tissue ground truth")
    viewer.add_labels(classes, name="tissue prediction", metadata={ROLE_KEY: PREDICTION})
    widget._predictions.value = [viewer.layers["tissue prediction"]]
    rows = widget.update_table()
    assert [r["class"] for r in rows if "layer" in r] == [1, 2]


def test_a_mask_opened_as_an_image_is_recognised_and_converted(make_napari_viewer, tiny_model, messages):
    from napari_unet._widgets._predict import PredictWidget
    from napari_unet._widgets._state import get_store
    from napari_unet._widgets._train import TrainWidget
    from napari_unet.sample_data import nuclei

    viewer = make_napari_viewer()
    image = viewer.add_image(nuclei(), name="nuclei")
    truth = nuclei_labels()
    viewer.add_image(truth, name="nuclei_mask")  # File > Open makes an Image layer of a label TIFF
    viewer.add_labels(np.roll(truth, 1, axis=0), name="nuclei prediction", metadata={ROLE_KEY: PREDICTION})
    get_store(viewer).set(tiny_model, "tiny")
    train, predict = TrainWidget(viewer), PredictWidget(viewer)
    assert [r.image_layer for r in train._pairs.rows] == [image]  # not offered for training
    assert predict.chosen_images() == [image]  # nor for prediction
    metrics = MetricsWidget(viewer)
    assert metrics.rows == []
    assert "nuclei_mask" in metrics._hint.value and "Use as labels" in metrics._hint.value
    assert not metrics._convert.native.isHidden()
    (labels,) = metrics.convert_label_images()
    assert labels.name == "nuclei_mask" and np.array_equal(labels.data, truth)
    assert viewer.layers.index(labels) == 1
    rows = metrics.update_table()
    assert rows and rows[0]["ground truth"] == "nuclei_mask"
    assert metrics._convert.native.isHidden()
    assert not messages["error"]
