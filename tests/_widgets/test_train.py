"""Train widget: pairing, scribble layers, bad input, Stop within a second, clean ends."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_unet._widgets._train import TrainWidget

from .conftest import TINY, assert_close_ends_cleanly, assert_unchanged, snapshot, wait_until


@pytest.fixture
def train_widget(sample_viewer):
    widget = TrainWidget(sample_viewer)
    sample_viewer.window.add_dock_widget(widget, name="Train")
    widget.set_settings(**TINY)
    return widget


def test_default_pairing_takes_the_strokes(train_widget, sample_viewer):
    assert train_widget.pairs() == [(sample_viewer.layers["nuclei"], sample_viewer.layers["nuclei strokes"])]
    assert train_widget._mode.value == "sparse"
    assert "background" in train_widget._annotations.legend.value


def test_pairing_is_explicit_when_asked(train_widget, sample_viewer):
    truth = sample_viewer.layers["nuclei ground truth"]
    train_widget.set_pairs([(sample_viewer.layers["nuclei"], truth)])
    assert train_widget.pairs()[0][1] is truth
    assert train_widget._mode.value == "dense"  # suggested from the data


def test_new_scribble_layer_and_classes(train_widget, sample_viewer, messages):
    layer = train_widget.new_scribble_layer()
    assert layer.data.shape == sample_viewer.layers["nuclei"].data.shape
    assert not layer.data.any()
    assert layer.selected_label == 2 and layer.mode == "paint"
    assert train_widget.pairs() == [(sample_viewer.layers["nuclei"], layer)]
    assert "2 foreground" in train_widget._annotations.legend.value
    train_widget.add_class()
    assert layer.selected_label == 3
    assert "3 class 2" in train_widget._annotations.legend.value
    assert not messages["error"]


def test_explicit_label_mode_survives_a_refresh(train_widget, sample_viewer):
    assert train_widget._mode.value == "sparse"  # guessed from the strokes
    train_widget._mode.value = "dense"  # the user's explicit choice
    sample_viewer.add_image(np.zeros((64, 64), np.float32), name="another image")
    assert train_widget._mode.value == "dense"
    train_widget.refresh_pairs()
    assert train_widget._mode.value == "dense"


def _large_scribbles(viewer) -> tuple:
    """A 1536 x 1536 image with the sample's strokes tiled 3 x 3: above SYNC_GUESS_PIXELS."""
    image = viewer.add_image(np.tile(viewer.layers["nuclei"].data, (3, 3)), name="large")
    strokes = viewer.add_labels(np.tile(viewer.layers["nuclei strokes"].data, (3, 3)), name="large strokes")
    return image, strokes


def test_the_mode_of_large_layers_is_guessed_off_the_gui_thread(train_widget, sample_viewer, qtbot):
    from napari_unet._widgets import _train_annotations

    image, strokes = _large_scribbles(sample_viewer)
    assert strokes.data.size > _train_annotations.SYNC_GUESS_PIXELS
    train_widget._mode.value = None
    train_widget.set_pairs([(image, strokes)])
    assert train_widget._mode.value is None  # not yet: the guess runs in a worker
    wait_until(qtbot, lambda: train_widget._mode.value == "sparse", 30)
    assert "Scribbles" in train_widget._mode_hint.value


def test_a_mode_chosen_while_the_guess_runs_is_kept(train_widget, sample_viewer, qtbot):
    image, strokes = _large_scribbles(sample_viewer)
    train_widget.set_pairs([(image, strokes)])
    train_widget._mode.value = "dense"  # the user's choice, before the guess (sparse) comes back
    wait_until(qtbot, lambda: train_widget._annotations.guess_pending is None, 30)
    assert train_widget._mode.value == "dense"


def test_train_clicked_while_the_guess_runs_uses_the_guess(train_widget, sample_viewer):
    image, strokes = _large_scribbles(sample_viewer)
    train_widget._mode.value = None
    train_widget.set_pairs([(image, strokes)])
    train_widget._annotations.settle_guess()  # what start_training does first
    assert train_widget._mode.value == "sparse" and train_widget._annotations.guess_pending is None


def test_add_class_in_dense_mode_selects_a_new_class(train_widget, sample_viewer):
    truth = sample_viewer.layers["nuclei ground truth"]
    train_widget.set_pairs([(sample_viewer.layers["nuclei"], truth)])
    assert train_widget._mode.value == "dense"
    train_widget._settings.multiclass.value = True
    max_label = int(np.asarray(truth.data).max())
    train_widget.add_class()
    assert truth.selected_label == max_label + 1


@pytest.mark.parametrize("case", ["no image", "no labels", "nothing annotated", "bad setting"])
def test_bad_input_shows_an_error_and_changes_nothing(make_napari_viewer, sample_viewer, messages, case):
    viewer = sample_viewer
    if case == "no image":
        viewer = make_napari_viewer()
    elif case == "nothing annotated":
        viewer.add_labels(np.zeros((512, 512), np.uint8), name="empty strokes")
    widget = TrainWidget(viewer)
    widget.set_settings(**TINY)
    if case == "no labels":
        widget.set_pairs([])
    elif case == "nothing annotated":
        widget.set_pairs([(viewer.layers["nuclei"], viewer.layers["empty strokes"])])
    elif case == "bad setting":
        widget.set_settings(time_limit=0, epochs=0)
    before = snapshot(viewer)
    widget._train.changed.emit(True)  # the button's handler, as a click runs it
    assert not widget.running
    assert len(messages["error"]) == 1, messages
    text = messages["error"][0]
    expected = {"no image": "image", "no labels": "annotations", "nothing annotated": "Nothing is annotated"}
    assert expected.get(case, "time limit") in text
    assert "Traceback" not in text
    assert_unchanged(viewer, before, before)
    assert len(viewer.layers) == len(before)


def test_only_background_reports_the_core_error(qtbot, train_widget, sample_viewer, messages):
    only_bg = (sample_viewer.layers["nuclei strokes"].data == 1).astype(np.uint8)
    layer = sample_viewer.add_labels(only_bg, name="background strokes")
    train_widget.set_pairs([(sample_viewer.layers["nuclei"], layer)])
    train_widget._mode.value = "sparse"  # as scribbles, only background is painted
    train_widget.start_training()
    wait_until(qtbot, lambda: not train_widget.running)
    assert any("Only background is annotated" in m for m in messages["error"]), messages
    assert train_widget._store.model is None


def _started(widget) -> bool:
    return len(widget._plot.loss) >= 2


def test_stop_takes_effect_after_the_current_step(qtbot, train_widget, sample_viewer, messages):
    before = snapshot(sample_viewer)
    train_widget.set_settings(time_limit=120, until_plateau=False)
    train_widget.start_training()
    assert train_widget.running and train_widget._stop.enabled
    wait_until(qtbot, lambda: _started(train_widget), timeout=60)
    at_click = train_widget._inbox._trainer.steps
    train_widget._stop.changed.emit(True)
    wait_until(qtbot, lambda: not train_widget.running, timeout=60)
    # the step under way when Stop was clicked may finish, no more (latency: benchmarks/gui_train_stop_cycles.py)
    assert int(re.search(r"Done: (\d+) steps", train_widget._status.value).group(1)) <= at_click + 1
    assert train_widget._store.model is not None  # the model so far is kept
    assert "stopped" in train_widget._store.description
    assert train_widget._train.enabled and not train_widget._stop.enabled
    assert not messages["error"]
    assert_unchanged(sample_viewer, before, ["nuclei", "nuclei strokes", "nuclei ground truth"])


def test_new_strokes_start_a_new_round(qtbot, train_widget, sample_viewer, monkeypatch):
    from napari_unet.jobs import train_session

    monkeypatch.setattr(train_session, "MIN_ROUND_SECONDS", 0.0)
    train_widget.set_settings(time_limit=60, until_plateau=False)
    train_widget.start_training()
    wait_until(qtbot, lambda: _started(train_widget), timeout=60)
    strokes = sample_viewer.layers["nuclei strokes"]
    strokes.paint((10, 10), 1)  # as a brush stroke does: fires events.paint
    wait_until(qtbot, lambda: len(train_widget._plot.rounds) >= 1, timeout=20)
    train_widget.stop_training()
    wait_until(qtbot, lambda: not train_widget.running, timeout=5)


def test_live_preview_layer(qtbot, train_widget, sample_viewer):
    train_widget.set_settings(time_limit=4, preview_every=1)
    train_widget.start_training()
    wait_until(qtbot, lambda: not train_widget.running, timeout=60)
    preview = sample_viewer.layers["nuclei preview"]
    assert preview.data.ndim == 2 and preview.data.any()
    assert preview.metadata["napari_unet_role"] == "preview"
    # the annotation layer stays above the preview, so painting goes on undisturbed
    layers = sample_viewer.layers
    assert layers.index(layers["nuclei strokes"]) > layers.index(preview)


def test_failing_final_preview_keeps_the_model(qtbot, train_widget, sample_viewer, monkeypatch, messages):
    from napari_unet.jobs import previews

    def broken(self, model, view):
        raise RuntimeError("preview broke")

    monkeypatch.setattr(previews.Previewer, "__call__", broken)
    train_widget.set_settings(time_limit=2, preview_every=1)
    train_widget.start_training()
    wait_until(qtbot, lambda: not train_widget.running, timeout=60)
    assert train_widget._store.model is not None
    assert "Done" in train_widget._status.value
    assert not messages["error"], messages


class _NoFullPlane(np.ndarray):
    """An image that fails if a whole plane is read: large planes must be cropped before any conversion."""

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(out, np.ndarray) and out.ndim >= 2 and max(out.shape[:2]) > 100:
            raise AssertionError(f"read {out.shape} of a large plane")
        return out

    def __array__(self, *args, **kwargs):
        if self.ndim >= 2 and max(self.shape[-2:]) > 100:
            raise AssertionError("converted the whole image")
        return np.asarray(self.view(np.ndarray), *args, **kwargs)


@pytest.mark.parametrize("rgb", [False, True])
def test_large_plane_preview_reads_only_the_crop(tiny_model, monkeypatch, rgb):
    from napari_unet.jobs import previews
    from napari_unet.training.events import View

    monkeypatch.setattr(previews, "LARGE_PLANE", 100 * 100)
    rng = np.random.default_rng(0)
    shape = (2, 300, 300, 3) if rgb else (2, 300, 300)
    image = rng.random(shape).astype(np.float32).view(_NoFullPlane)
    previewer = previews.Previewer([image], [rgb])
    if rgb:  # the tiny model has one input channel: check only what is read
        box = (slice(10, 74), slice(20, 84))
        assert previews.plane_chw(image, (1,), True, box).shape == (3, 64, 64)
        return
    labels = previewer(tiny_model, View(0, (1,), (10, 74), (20, 84)))
    assert labels.shape == (64, 64)
    assert not previewer.cache


@pytest.mark.parametrize("name", ["nuclei strokes", "nuclei"])
def test_removing_an_input_layer_stops_cleanly(qtbot, train_widget, sample_viewer, messages, name):
    before = snapshot(sample_viewer)
    train_widget.set_settings(time_limit=120, until_plateau=False)
    train_widget.start_training()
    wait_until(qtbot, lambda: _started(train_widget), timeout=60)
    sample_viewer.layers.remove(name)
    wait_until(qtbot, lambda: not train_widget.running, timeout=5)
    qtbot.wait(50)
    assert not messages["error"]
    assert any(f"'{name}' was removed" in m for m in messages["warning"])
    assert train_widget._store.model is not None
    assert "stopped" in train_widget._progress.native.format()
    assert_unchanged(sample_viewer, before, [n for n in before if n != name])


def test_train_stop_cycles_leave_no_threads(qtbot, train_widget, sample_viewer, messages):
    import threading

    from qtpy.QtCore import QThreadPool

    def cycle() -> None:
        train_widget.start_training()
        wait_until(qtbot, lambda: _started(train_widget), timeout=60)
        train_widget.stop_training()
        wait_until(qtbot, lambda: not train_widget.running, timeout=5)

    train_widget.set_settings(time_limit=120, until_plateau=False, preview_every=1)
    cycle()  # the first run starts what lives on (torch's thread pool, napari's worker pool)
    pool = QThreadPool.globalInstance()
    assert pool.waitForDone(5000)
    threads = threading.active_count()
    for _ in range(5):
        cycle()
    assert pool.waitForDone(5000)
    qtbot.waitUntil(lambda: threading.active_count() <= threads, timeout=5000)
    assert pool.activeThreadCount() == 0
    assert not messages["error"], messages


def test_skipped_steps_are_reported(train_widget, tiny_model, messages):
    from napari_unet.training import Done

    train_widget._on_done(Done(tiny_model, 500, 25, 60.0, 0.5, None, False, skipped=3))
    assert any("3 training steps were skipped" in m for m in messages["warning"]), messages
    train_widget._on_done(Done(tiny_model, 500, 25, 60.0, 0.5, None, False))
    assert len(messages["warning"]) == 1


def test_too_few_steps_are_said_plainly(train_widget, tiny_model, messages):
    from napari_unet.training import Done

    tiny_model.meta["training"]["history"] = [{"steps": 21}]  # the warning counts every step the model has had
    train_widget._on_done(Done(tiny_model, 21, 1, 60.0, 0.5, 0.34, False))
    assert "Not to be trusted yet" in train_widget._status.value and "Train longer" in train_widget._status.value
    assert any("only 21 training steps" in m for m in messages["warning"]), messages


def test_an_early_end_shows_a_full_bar_that_says_why(train_widget, tiny_model):
    from napari_unet.training import Done, TrainConfig
    from napari_unet.training.events import EPOCHS, PLATEAU, STOPPED, TIME_LIMIT

    bar = train_widget._progress
    train_widget._run.start(TrainConfig(time_limit=120))
    bar.value = 340  # a run that ends at 34% of its budget
    train_widget._on_done(Done(tiny_model, 200, 10, 40.0, 0.5, 0.8, False, plateau=True, reason=PLATEAU))
    assert bar.value == bar.max and bar.native.format() == "done: it had stopped improving"
    assert "(it had stopped improving)" in train_widget._status.value
    bar.value = 340
    train_widget._on_done(Done(tiny_model, 200, 10, 40.0, 0.5, 0.8, True, reason=STOPPED))
    assert bar.value == bar.max and bar.native.format() == "stopped"
    # a plateau seen late, whose annealing the budget cut short: the budget ended the run, and both say so
    train_widget._on_done(Done(tiny_model, 600, 30, 119.0, 0.5, 0.8, False, plateau=True, reason=TIME_LIMIT))
    assert bar.native.format() == "done: time budget used"
    assert "stopped improving" not in train_widget._status.value
    train_widget._run.start(TrainConfig(time_limit=None, epochs=3))
    train_widget._on_done(Done(tiny_model, 60, 3, 19.0, 0.5, 0.8, False, reason=EPOCHS))
    assert bar.value == bar.max and bar.native.format() == "done: 3 epochs"


def test_preview_when_transposed_and_why_not_in_3d(qtbot, train_widget, sample_viewer):
    sample_viewer.dims.order = (1, 0)  # the Transpose button
    train_widget.set_settings(time_limit=4, preview_every=1)
    train_widget.start_training()
    wait_until(qtbot, lambda: not train_widget.running, timeout=60)
    preview = sample_viewer.layers["nuclei preview"]
    assert preview.data.shape == (512, 512) and preview.data.any()
    assert train_widget._live_preview.note == ""
    sample_viewer.dims.ndisplay = 3
    assert train_widget._live_preview.current_view(train_widget.pairs()) is None
    assert "3D" in train_widget._live_preview.note


def test_closing_the_viewer_during_training_ends_the_worker(qtbot, train_widget, sample_viewer, messages, caplog):

    train_widget.set_settings(time_limit=120, until_plateau=False)
    train_widget.start_training()
    wait_until(qtbot, lambda: _started(train_widget), timeout=60)
    assert_close_ends_cleanly(qtbot, sample_viewer, messages, caplog)


def test_save_and_load_model_with_annotations(qtbot, train_widget, sample_viewer, tiny_model, tmp_path):
    import tifffile

    train_widget._store.set(tiny_model, "test model")
    path = train_widget.save_model(tmp_path / "unet.pt")
    assert path.is_file()
    saved = tifffile.imread(tmp_path / "unet.nuclei_strokes.tif")
    np.testing.assert_array_equal(saved, sample_viewer.layers["nuclei strokes"].data)
    train_widget._store.set(None, "nothing")
    model = train_widget.load_model(path)
    assert model.n_classes == tiny_model.n_classes
    assert train_widget._store.model is model and train_widget._files.finetune.value


def test_loading_a_junk_file_shows_an_error(train_widget, messages, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    train_widget._files.load.changed.disconnect()
    from napari_unet._widgets._common import guarded

    guarded(train_widget.load_model)(junk)
    assert len(messages["error"]) == 1 and "not a napari-unet model" in messages["error"][0]


def test_quitting_right_after_opening_train_does_not_abort(tmp_path):
    """The warm-up thread must never crash the application: quit while it is inside torch, exit code 0."""
    import os
    import subprocess
    import sys

    script = tmp_path / "quit_early.py"
    script.write_text(
        "import napari\n"
        "from qtpy.QtCore import QTimer\n"
        "from napari_unet._widgets._train import TrainWidget\n"
        "viewer = napari.Viewer()\n"
        "viewer.window.add_dock_widget(TrainWidget(viewer))\n"
        "QTimer.singleShot(300, viewer.close)\n"
        "napari.run()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NAPARI_UNET_NO_WARMUP"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr


def test_the_forest_gives_the_first_preview_before_the_first_step():
    """Scribbles: the pseudo-labelling forest's answer is shown at once; the U-Net's replaces it later."""
    from napari_unet.jobs.train_session import Inbox, train_rounds
    from napari_unet.sample_data import nuclei, nuclei_labels, nuclei_strokes
    from napari_unet.training import Done, Preview, Step, TrainConfig, View

    inbox = Inbox(preview=True, preview_interval=0.0)
    inbox.post_view(View(0, (), (0, 512), (0, 512)))
    cfg = TrainConfig(time_limit=None, epochs=1, steps_per_epoch=3, filters=4, depth=2, patch_size=32, batch_size=2)
    events = list(train_rounds([nuclei()], [nuclei_strokes()], cfg, None, inbox))
    kinds = [type(e) for e in events]
    first_preview, first_step = kinds.index(Preview), kinds.index(Step)
    assert first_preview < first_step
    forest = events[first_preview].labels
    truth = nuclei_labels() > 0
    dice = 2 * np.count_nonzero((forest > 0) & truth) / (np.count_nonzero(forest) + np.count_nonzero(truth))
    assert forest.shape == (512, 512) and dice > 0.7
    # 3 U-Net steps cannot beat it: no U-Net preview until the final one, taken from the trained model
    assert kinds.count(Preview) == 2 and kinds[-2] is Preview and kinds[-1] is Done
