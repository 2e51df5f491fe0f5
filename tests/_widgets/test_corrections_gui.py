"""Correct a prediction in napari and train again: only what the user reviewed trains, as complete masks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet import layer_roles as roles
from napari_unet._widgets._predict import PredictWidget
from napari_unet._widgets._state import get_store
from napari_unet._widgets._train import TrainWidget
from napari_unet.annotation import Annotation

from .conftest import TINY, assert_unchanged, snapshot, wait_until


@pytest.fixture
def predicted(qtbot, sample_viewer, tiny_model):
    """The sample viewer with a finished instance prediction of 'nuclei' (the tiny model in memory)."""
    get_store(sample_viewer).set(tiny_model, "tiny test model")
    widget = PredictWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(widget, name="Predict")
    widget._all.value = False
    widget._images.value = [sample_viewer.layers["nuclei"]]
    widget.start_prediction()
    wait_until(qtbot, lambda: not widget.busy, timeout=60)
    return widget


def _largest_and_smallest(data: np.ndarray) -> tuple[int, int]:
    ids, counts = np.unique(data[data > 0], return_counts=True)
    return int(ids[np.argmax(counts)]), int(ids[np.argmin(counts)])


def test_predict_correct_and_train_again_trains_only_what_was_reviewed(
    qtbot, sample_viewer, predicted, monkeypatch, messages
):
    from napari_unet._widgets import _train

    viewer = sample_viewer
    (prediction,) = predicted.outputs
    before = snapshot(viewer)
    layer = predicted.make_editable()
    assert roles.role(layer) == roles.CORRECTIONS and layer is not prediction
    assert layer.metadata[roles.SOURCE_KEY] == "nuclei" and not prediction.visible
    wrong, _ = _largest_and_smallest(np.asarray(layer.data))
    far = int(np.max(layer.data))  # an object the user does not touch
    rows, cols = np.nonzero(layer.data == wrong)
    layer.fill((int(rows[0]), int(cols[0])), 0)  # delete one wrong object (napari's fill with 0)
    assert not np.any(layer.data == wrong)
    empty = np.argwhere(np.asarray(layer.data) == 0)
    spot = next(
        p
        for p in empty
        if 10 <= p[0] < 500 and 10 <= p[1] < 500 and not layer.data[p[0] - 6 : p[0] + 7, p[1] - 6 : p[1] + 7].any()
    )
    layer.brush_size = 9
    new_id = int(np.max(layer.data)) + 1
    layer.paint(tuple(int(v) for v in spot), new_id)  # paint one missed object
    assert np.any(layer.data == new_id)

    seen = {}
    real = _train.train_rounds

    def spy(images, labels, config, model, inbox, *rest):
        seen["labels"] = labels
        for event in real(images, labels, config, model, inbox, *rest):
            if type(event).__name__ == "Round":
                seen.setdefault("annotated", event.annotated)
            yield event

    monkeypatch.setattr(_train, "train_rounds", spy)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    train.set_settings(**TINY)
    train._files.finetune.value = True  # Train again: continue the model that predicted
    assert train.pairs() == [(viewer.layers["nuclei"], layer)]  # paired with its image by itself
    assert "a corrected prediction, trained as complete masks where reviewed" in train._annotations.hint.value
    train.start_training()
    wait_until(qtbot, lambda: not train.running, timeout=120)
    assert not messages["error"], messages

    assert any("predicts one foreground class" in m for m in messages["warning"])  # stays 1-class: said
    (annotation,) = seen["labels"]
    assert isinstance(annotation, Annotation) and annotation.mode == "dense"
    reviewed = annotation.reviewed
    assert reviewed[rows, cols].all()  # the deleted object: reviewed background now
    assert reviewed[np.asarray(layer.data) == new_id].all()  # the painted one
    assert not reviewed[np.asarray(layer.data) == far].any() or far in (wrong, new_id)
    assert 0 < reviewed.mean() < 0.25  # only around the edits, not the whole prediction
    assert 0 < seen["annotated"] <= reviewed.sum()  # the trainer saw only reviewed pixels as annotated
    assert_unchanged(viewer, before, ["nuclei", "nuclei strokes", "nuclei ground truth", prediction.name])


def test_duplicate_of_a_prediction_becomes_a_correction(sample_viewer, predicted, messages):
    (prediction,) = predicted.outputs
    sample_viewer.layers.selection.active = prediction
    sample_viewer.layers.selection = {prediction}
    from napari.layers._layer_actions import _duplicate_layer

    _duplicate_layer(sample_viewer.layers)
    copy = sample_viewer.layers[-1]
    assert copy is not prediction and roles.role(copy) == roles.CORRECTIONS
    assert roles.role(prediction) == roles.PREDICTION
    assert any("copy of a prediction" in m for m in messages["info"])


def test_the_layers_menu_corrects_the_selected_prediction(sample_viewer, predicted, messages):
    from app_model.types import MenuItem
    from napari._app_model import get_app_model

    app = get_app_model()
    command = "napari-unet-trainer.correct_prediction"
    items = [i for i in app.menus.get_menu("napari-unet-trainer.segment") if isinstance(i, MenuItem)]
    assert any(i.command.id == command for i in items)  # Layers > Segment > U-Net
    sample_viewer.layers.selection.active = sample_viewer.layers["nuclei"]
    app.commands.execute_command(command).result()
    assert any("'nuclei' is not a finished prediction" in m for m in messages["error"])
    assert sample_viewer.layers.selection.active is sample_viewer.layers["nuclei"]  # nothing made
    (prediction,) = predicted.outputs
    sample_viewer.layers.selection.active = prediction
    before = np.array(prediction.data, copy=True)
    app.commands.execute_command(command).result()  # napari fills in the viewer
    made = sample_viewer.layers.selection.active
    assert roles.role(made) == roles.CORRECTIONS and made is not prediction
    np.testing.assert_array_equal(made.data, before)
    np.testing.assert_array_equal(prediction.data, before)  # the prediction itself is never edited
    assert any("Predict dock" in m for m in messages["info"])


def test_mark_merge_and_split_from_the_dock(sample_viewer, predicted):
    layer = predicted.make_editable()
    panel = predicted._corrections
    a, b = _largest_and_smallest(np.asarray(layer.data))
    panel.merge_objects(a, b)
    assert not np.any(layer.data == b)
    new = panel.split_object(a)
    assert np.any(layer.data == new) and np.any(layer.data == a)
    from napari_unet._widgets._corrections import reviewed_of

    partly = reviewed_of(layer).mean()
    panel.mark_plane_reviewed()
    assert partly < 1 and reviewed_of(layer).all()
    assert "100% reviewed" in panel.status.value


def test_a_prediction_hides_the_live_preview_under_it(qtbot, sample_viewer, predicted):
    preview = sample_viewer.add_labels(
        np.zeros((512, 512), np.uint8), name="nuclei preview", metadata={roles.ROLE_KEY: roles.PREVIEW}
    )
    predicted.start_prediction()
    wait_until(qtbot, lambda: not predicted.busy, timeout=60)
    assert not preview.visible and all(lay.visible for lay in predicted.outputs)
