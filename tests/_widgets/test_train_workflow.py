"""The Train widget as a first-time user meets it: pairing follows the layers, truth is never taken by
itself, hints agree with the chosen mode, names are shown as written, errors stay readable."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from napari_unet._widgets._train import TrainWidget

from .conftest import TINY


def _strokes(shape=(64, 64)) -> np.ndarray:
    s = np.zeros(shape, np.uint8)
    s[10, 5:50] = 1
    s[40, 5:50] = 2
    return s


def test_pairing_follows_layers_added_renamed_and_removed(make_napari_viewer, messages):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)  # opened first, before any layer
    viewer.window.add_dock_widget(widget, name="Train")
    image = viewer.add_image(np.random.default_rng(0).random((64, 64)), name="Fluo_Hela_02_img")
    assert widget.pairs() == []
    labels = viewer.add_labels(_strokes(), name="my_annotations")  # opened after its image
    assert widget.pairs() == [(image, labels)]
    assert widget._mode.value == "sparse"
    labels.name = "renamed_labels"
    assert widget._pairs.rows[0].annotations.native.currentText() == "renamed_labels"
    assert widget._pairs.rows[0].use.native.text() == "Fluo_Hela_02_img"  # as written, underscores kept
    viewer.layers.remove(labels)
    assert widget.pairs() == []
    again = viewer.add_labels(_strokes(), name="second try")
    assert widget.pairs() == [(image, again)]
    assert not messages["error"]


def test_an_explicit_no_annotation_choice_sticks(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((64, 64)), name="cells")
    widget = TrainWidget(viewer)
    viewer.add_labels(_strokes(), name="cells strokes")
    widget._pairs.rows[0].annotations.value = None  # the user picks "—"
    viewer.add_labels(_strokes(), name="more strokes")
    assert widget.pairs() == [] and widget._pairs.rows[0].image_layer is image


def test_truth_is_never_taken_for_training_by_itself(sample_viewer, messages):
    viewer = sample_viewer
    viewer.layers.remove(viewer.layers["nuclei strokes"])
    widget = TrainWidget(viewer)
    assert widget.pairs() == []  # was: the ground truth, as dense training labels
    widget._train.changed.emit(True)
    assert not widget.running and "No annotations chosen" in messages["error"][-1]
    tagged = viewer.add_labels(np.asarray(viewer.layers["nuclei ground truth"].data), name="nuclei copy")
    tagged.metadata["napari_unet_role"] = "truth"  # opened as truth, whatever its name
    widget.refresh_pairs()
    assert widget.pairs() == []
    truth = viewer.layers["nuclei ground truth"]
    widget.set_pairs([(viewer.layers["nuclei"], truth)])  # the user's explicit choice is honoured
    assert widget.pairs() == [(viewer.layers["nuclei"], truth)]
    assert widget._mode.value == "dense"
    assert "Complete masks" in widget._mode_hint.value


def test_hints_agree_with_the_mode_and_say_what_to_do(qtbot, sample_viewer, messages):
    widget = TrainWidget(sample_viewer)
    layer = widget.new_scribble_layer()
    hint = widget._mode_hint.value
    assert widget._mode.value == "sparse"
    assert "Scribbles" in hint and "paint label 2" in hint
    assert "complete masks" not in hint.lower() and "0.0%" not in hint  # was: "Looks like complete masks: 0.0%"
    layer.data[100, 100:200] = 2
    layer.events.paint(value=[])
    qtbot.waitUntil(lambda: "label 1 on background" in widget._mode_hint.value, timeout=3000)
    layer.data[300, 100:200] = 1
    layer.events.paint(value=[])
    qtbot.waitUntil(lambda: "now paint" not in widget._mode_hint.value, timeout=3000)
    assert "Train" in widget._mode_hint.value


def test_ambiguous_labels_leave_the_mode_unset(make_napari_viewer, messages):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((100, 100)), name="cells")
    thick = np.zeros((100, 100), np.uint8)
    thick[10:19, 10:37], thick[60:69, 50:77] = 1, 2  # wide strokes, or objects?
    widget = TrainWidget(viewer)
    widget.set_settings(**TINY)
    layer = viewer.add_labels(thick, name="cells labels")
    assert widget.pairs() == [(image, layer)]
    assert widget._mode.value is None
    assert "Labels are" in widget._mode_hint.value
    widget._train.changed.emit(True)
    assert not widget.running and "Labels are" in messages["error"][-1]
    widget._mode.value = "sparse"
    assert "Scribbles" in widget._mode_hint.value


def test_dense_stack_hint_counts_the_planes_used(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((5, 64, 64), np.float32), name="stack")
    masks = np.zeros((5, 64, 64), np.uint16)
    masks[2][disk((20, 20), 8)] = 1
    masks[2][disk((44, 44), 8)] = 2
    widget = TrainWidget(viewer)
    viewer.add_labels(masks, name="stack masks")
    assert widget._mode.value == "dense"
    assert "1 of 5 planes" in widget._mode_hint.value


@pytest.mark.parametrize("when", ["start", "during"])
def test_last_error_stays_whole_in_the_status_line(sample_viewer, messages, when):
    widget = TrainWidget(sample_viewer)
    widget.set_pairs([])
    long_name = "a_layer_with_a_very_long_name_" * 4
    sample_viewer.add_labels(np.zeros((8, 8), np.uint8), name=long_name)
    if when == "start":
        widget._train.changed.emit(True)
        text = messages["error"][-1]
    else:
        from napari_unet.training.events import Notice

        text = f"Something about '{long_name}' happened: check it."
        widget._on_event(Notice(text))
    assert text in widget._message.value.replace("&#x27;", "'")  # whole, not a short-lived toast only


def test_one_palette_for_sample_strokes_new_layers_legend_and_predictions(qtbot, sample_viewer, tiny_model):
    from napari_unet._widgets import _colors as c
    from napari_unet._widgets._predict import PredictWidget
    from napari_unet._widgets._state import get_store
    from napari_unet.labels import scribble_color

    widget = TrainWidget(sample_viewer)
    sample = sample_viewer.layers["nuclei strokes"]
    new = widget.new_scribble_layer()
    for value in (1, 2):  # was: brown / cyan in the sample, blue / yellow in a new layer
        assert c.hex_color(sample, value) == c.hex_color(new, value) == scribble_color(value)
        assert scribble_color(value) in widget._annotations.legend.value
    get_store(sample_viewer).set(tiny_model, "tiny")
    predict = PredictWidget(sample_viewer)
    predict._instances.value = False
    predict._all.value = False
    predict._images.value = [sample_viewer.layers["nuclei"]]
    predict.start_prediction()
    qtbot.waitUntil(lambda: not predict.busy, timeout=60_000)
    (layer,) = predict.outputs
    assert c.hex_color(layer, 1) == scribble_color(2)  # class 1 in the colour of its strokes
