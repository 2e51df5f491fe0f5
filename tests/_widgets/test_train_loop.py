"""The loop after the first model: a run never silently replaces a better model, the warning counts every
step, buttons that cannot act are off while training, the plot says why there is no validation curve."""

from __future__ import annotations

import copy

import pytest

from napari_unet._widgets._train import TrainWidget
from napari_unet.training import Done

from .conftest import TINY, wait_until


@pytest.fixture
def train_widget(sample_viewer):
    widget = TrainWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(widget, name="Train")
    widget.set_settings(**TINY)
    return widget


def _with_history(model, steps: int, val_dice: float | None):
    """A copy of ``model`` whose record says it had ``steps`` steps and this held-out Dice."""
    model = copy.deepcopy(model)
    model.meta.setdefault("training", {})["history"] = [{"steps": steps, "seconds": 20.0, "val_dice": val_dice}]
    return model


def _finish(widget, previous, done: Done) -> None:
    """As if a run had started with ``previous`` in memory and ended with ``done``."""
    widget._files.hold(previous, "trained here")
    widget._previous = previous
    widget._on_done(done)


def test_a_worse_stopped_run_keeps_the_previous_model_and_offers_the_new(train_widget, tiny_model, messages):
    before = _with_history(tiny_model, 425, 0.90)
    after = _with_history(tiny_model, 428, 0.41)
    _finish(train_widget, before, Done(after, 3, 0, 0.5, 0.9, 0.41, True))
    store = train_widget._store
    assert store.model is before
    assert "Kept the previous model (val Dice 0.90 &gt; 0.41)" in train_widget._status.value
    assert "Kept the previous model (val Dice 0.90 > 0.41)." in messages["warning"]
    assert not train_widget._files.use_new.native.isHidden() and train_widget._files.finetune.value
    train_widget._files.use_new.changed.emit(True)
    assert store.model is after and train_widget._files.use_new.native.isHidden()


def test_a_run_with_no_step_keeps_the_previous_model(train_widget, tiny_model):
    before = _with_history(tiny_model, 425, None)
    _finish(train_widget, before, Done(_with_history(tiny_model, 0, None), 0, 0, 0.2, None, None, True))
    assert train_widget._store.model is before
    assert "stopped before any training step" in train_widget._status.value
    assert "not trained at all" not in train_widget._status.value  # the kept model has had 425 steps


def test_a_better_run_replaces_the_model(train_widget, tiny_model):
    before = _with_history(tiny_model, 425, 0.80)
    after = _with_history(tiny_model, 900, 0.85)
    _finish(train_widget, before, Done(after, 475, 20, 20.0, 0.3, 0.85, False))
    assert train_widget._store.model is after and train_widget._files.use_new.native.isHidden()


def test_the_trust_warning_counts_every_step_of_the_model(train_widget, tiny_model, messages):
    model = _with_history(tiny_model, 523, 0.9)  # 425 before, 98 in this run
    train_widget._on_done(Done(model, 98, 4, 5.0, 0.3, 0.9, True))
    assert "only 98 training steps" not in train_widget._status.value
    assert not any("98 training steps" in m for m in messages["warning"])


def test_stop_during_the_forest_keeps_the_earlier_model(qtbot, train_widget, tiny_model, messages):
    earlier = _with_history(tiny_model, 425, 0.9)
    train_widget._files.hold(earlier, "loaded")
    train_widget._files.finetune.value = False  # a new model from scratch, stopped before its first step
    train_widget.set_settings(time_limit=60)
    train_widget.start_training()
    assert not train_widget._files.save.enabled and not train_widget._files.export.enabled
    assert not train_widget._annotations.add_class_button.enabled
    train_widget.stop_training()
    wait_until(qtbot, lambda: not train_widget.running, timeout=60)
    assert train_widget._store.model is earlier
    assert "Kept the previous model" in train_widget._status.value
    assert train_widget._files.save.enabled and train_widget._annotations.add_class_button.enabled


def test_the_plot_says_when_nothing_could_be_held_out(train_widget, tiny_model):
    from napari_unet._widgets._plot import NO_VALIDATION_TIP
    from napari_unet.training import Epoch

    plot = train_widget._plot
    train_widget._run.step(Epoch(1, 5, 0.5, None, 1.0, 0.1))
    assert plot.no_validation and NO_VALIDATION_TIP in plot.toolTip()
    plot.grab()  # paints without error


def test_a_fine_tune_stopped_at_once_keeps_the_model_it_continued(qtbot, train_widget, tiny_model, messages):
    earlier = _with_history(tiny_model, 425, 0.9)
    train_widget._files.hold(earlier, "loaded")
    assert train_widget._files.finetune.value
    train_widget.set_settings(time_limit=60)
    train_widget.start_training()
    train_widget.stop_training()
    wait_until(qtbot, lambda: not train_widget.running, timeout=60)
    assert train_widget._store.model is earlier  # the object in memory, untouched
    assert "Kept the previous model" in train_widget._status.value
    assert "not trained at all" not in train_widget._status.value
