"""Continuing a model: the better of before and after is kept, mistakes are trained on more, steps add up."""

import copy

import numpy as np
import tifffile
import torch

from napari_unet import Done, Trainer, train
from napari_unet.checkpoint import load_model, save_model
from napari_unet.cli import main
from napari_unet.cli.train import POOR_MODEL_EXIT
from napari_unet.labels import Annotation
from napari_unet.meta import total_steps
from napari_unet.training import trust_warning
from napari_unet.training.continuation import keep_previous, wrong_pixels

# a run meant to ruin a good model: a huge learning rate, no plateau stop
RUIN = dict(mode="dense", instances=False, learning_rate=5.0, patch_size=32, batch_size=2, epochs=2,
            steps_per_epoch=5, time_limit=None, augment=False, val_fraction=0.3)  # fmt: skip


def _weights(model) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().copy() for p in model.state_dict().values()]


def test_a_worse_run_gives_the_previous_model_back(tiny_model, blobs):
    image, labels = blobs
    before = _weights(tiny_model)
    steps_before = total_steps(tiny_model)
    done = list(Trainer(image, labels, model=tiny_model, **RUIN).run())[-1]
    assert done.steps == 10 and done.kept_previous
    assert done.trained_val_dice < done.previous_val_dice and done.val_dice == done.previous_val_dice
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(done.model), strict=True))
    assert done.model is tiny_model and total_steps(done.model) == steps_before  # its record is the old one too
    # the Python API returns the better model as well
    returned = train(image, labels, model=tiny_model, **RUIN)
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(returned), strict=True))


def test_a_better_run_is_kept(blobs):
    image, labels = blobs
    rough = train(image, labels, mode="dense", instances=False, filters=4, depth=2, patch_size=32, batch_size=2,
                  epochs=1, steps_per_epoch=2, time_limit=None, val_fraction=0.3)  # fmt: skip
    done = list(Trainer(image, labels, model=rough, mode="dense", instances=False, patch_size=32, batch_size=4,
                        learning_rate=5e-3, epochs=6, steps_per_epoch=10, time_limit=None, val_fraction=0.3,
                        until_plateau=False).run())[-1]  # fmt: skip
    assert not done.kept_previous and done.trained_val_dice >= done.previous_val_dice
    assert total_steps(done.model) == 2 + done.steps


def test_a_run_stopped_before_its_first_step_keeps_the_model(tiny_model, blobs):
    image, labels = blobs
    before = _weights(tiny_model)
    trainer = Trainer(image, labels, model=tiny_model, mode="dense", instances=False, epochs=1, time_limit=None)
    trainer.stop()
    done = list(trainer.run())[-1]
    assert done.steps == 0 and done.kept_previous
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(done.model), strict=True))


def test_the_rule():
    assert keep_previous(0, False, None, None)
    assert keep_previous(3, True, None, None)  # stopped after 3 steps, nothing to judge by: not good enough
    assert not keep_previous(300, False, None, None)
    assert keep_previous(300, False, 0.9, 0.8) and not keep_previous(300, False, 0.8, 0.9)


def test_wrong_pixels_are_where_the_model_errs(tiny_model, blobs):
    from napari_unet.normalization import normalize
    from napari_unet.training.patches import Sample

    image, labels = blobs
    target = (labels > 0).astype(np.int16)
    target[:, :10] = 1 - target[:, :10]  # a strip labelled the wrong way round
    sample = Sample(normalize(image[None].astype(np.float32)), target)
    wrong = wrong_pixels(tiny_model, [sample], False, torch.device("cpu"), "fp32")[0]
    assert wrong[:, :10].mean() > 0.9 and wrong[:, 10:].mean() < 0.05


def test_the_trust_warning_counts_every_step_of_the_model(tiny_model):
    steps = total_steps(tiny_model)  # 80 from the fixture's training
    model = copy.deepcopy(tiny_model)
    model.meta["training"]["history"].append({"steps": 15})
    warning = trust_warning(Done(model, 15, 0, 5.0, 0.3, None, True))
    assert f"only {steps + 15} training steps" in warning and f"{steps} of them in earlier runs" in warning
    model.meta["training"]["history"].append({"steps": 500})
    assert trust_warning(Done(model, 15, 0, 5.0, 0.3, None, True)) is None


def test_cli_from_says_which_model_it_kept(tmp_path, tiny_model, blobs, capsys):
    image, labels = blobs
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    save_model(tiny_model, tmp_path / "prev.pt")
    args = ["train", str(tmp_path / "img.tif"), "--labels", f"{tmp_path / 'lab.tif'}:dense", "--from",
            str(tmp_path / "prev.pt"), "-o", str(tmp_path / "next.pt"), "--lr", "5", "--epochs", "2",
            "--batch-size", "2", "--patch-size", "32", "--no-augment", "--no-instances"]  # fmt: skip
    assert main(args) in (0, POOR_MODEL_EXIT)  # a tiny model may be judged poor; it is saved either way
    out = capsys.readouterr().out
    assert "Kept the previous model" in out and "the model of" in out
    kept, prev = load_model(tmp_path / "next.pt"), load_model(tmp_path / "prev.pt")
    assert all(np.array_equal(a, b) for a, b in zip(_weights(kept), _weights(prev), strict=True))


def test_cli_mixes_scribbles_and_reviewed_masks(tmp_path, blobs, capsys):
    image, labels = blobs
    scribbles = np.zeros_like(labels)
    scribbles[15, 10:20], scribbles[2, 5:70] = 2, 1
    reviewed = np.zeros(labels.shape, np.uint8)
    reviewed[:32] = 1
    for name, arr in [("img", image), ("scr", scribbles), ("lab", labels), ("rev", reviewed)]:
        tifffile.imwrite(tmp_path / f"{name}.tif", arr)
    args = ["train", str(tmp_path / "img.tif"), str(tmp_path / "img.tif"), "--labels",
            f"{tmp_path / 'scr.tif'}:sparse", f"{tmp_path / 'lab.tif'}:dense", "--reviewed", "-",
            str(tmp_path / "rev.tif"), "-o", str(tmp_path / "m.pt"), "--epochs", "1", "--batch-size", "2",
            "--patch-size", "32", "--filters", "4", "--depth", "2"]  # fmt: skip
    assert main(args) in (0, POOR_MODEL_EXIT)  # a tiny model may be judged poor; it is saved either way
    err = capsys.readouterr().err
    assert "mixed (per file) labels" in err and "boundary" in err
    expected = np.count_nonzero(scribbles) + int(reviewed.sum())
    assert f"{expected} annotated pixels" in err


def test_train_takes_annotations(blobs):
    image, labels = blobs
    model = train([image], [Annotation(labels, "dense")], filters=4, depth=2, patch_size=32, batch_size=2,
                  epochs=1, steps_per_epoch=2, time_limit=None)  # fmt: skip
    assert model.meta["instances"] == "boundary"


def test_a_session_stopped_after_a_few_steps_keeps_the_model_it_started_from(tiny_model, blobs):
    """The Train dock's case: Train again, Stop after 3 steps: the model in memory must come back."""
    from napari_unet.jobs.train_session import Inbox, train_rounds
    from napari_unet.training import Notice, Step, TrainConfig

    image, labels = blobs
    before = _weights(tiny_model)
    inbox = Inbox(preview=False)
    cfg = TrainConfig(mode="dense", instances=False, time_limit=None, epochs=5, steps_per_epoch=10,
                      patch_size=32, batch_size=2, learning_rate=5.0)  # fmt: skip
    events = []
    for event in train_rounds([image], [labels], cfg, tiny_model, inbox):
        events.append(event)
        if isinstance(event, Step) and event.step == 3:
            inbox.stop()
    done = events[-1]
    assert done.stopped and done.steps == 3 and done.kept_previous
    assert any(isinstance(e, Notice) and "Kept the previous model" in e.message for e in events)
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(done.model), strict=True))


def test_a_trained_model_continued_on_scribbles_labels_the_rest_itself(tiny_model, blobs):
    from napari_unet.training.continuation import OwnLabels

    image, labels = blobs
    scribbles = np.zeros_like(labels)
    scribbles[15, 10:20], scribbles[2, 5:70] = 2, 1
    tiny_model.meta["training"]["history"].append({"steps": 100})  # trained enough to trust its own labels
    trainer = Trainer(image, scribbles, model=tiny_model, mode="sparse", epochs=1, steps_per_epoch=2,
                      patch_size=32, batch_size=2, time_limit=None)  # fmt: skip
    done = list(trainer.run())[-1]
    assert isinstance(trainer.labeler, OwnLabels) and done.steps == 2
    dense = trainer.labeler.dense[0]
    assert (dense[labels > 0] == 1).mean() > 0.8 and (dense[labels == 0] == 0).mean() > 0.8
    assert dense[15, 10:20].tolist() == [1] * 10  # the strokes stay as painted


def test_a_continued_run_averages_its_weights_with_the_start(tiny_model, blobs):
    """blend_previous: the kept model is the average of the starting and the trained weights (what a few
    correcting strokes taught, without the drift of the rest of the network)."""
    image, labels = blobs
    start = _weights(tiny_model)
    run = dict(mode="dense", instances=False, patch_size=32, batch_size=2, epochs=1, steps_per_epoch=3,
               time_limit=None, val_fraction=0.3, threads=1, keep_better=False, seed=3)  # fmt: skip
    trained = _weights(train(image, labels, model=copy.deepcopy(tiny_model), blend_previous=0.0, **run))
    blended = _weights(train(image, labels, model=copy.deepcopy(tiny_model), blend_previous=0.5, **run))
    floats = [k for k, a in enumerate(start) if a.dtype.kind == "f" and not np.array_equal(a, trained[k])]
    assert floats  # the run changed the weights
    for k in floats:
        np.testing.assert_allclose(blended[k], 0.5 * (start[k] + trained[k]), rtol=1e-4, atol=1e-5)
    # a first run has nothing to blend with: it trains as before
    fresh = train(image, labels, filters=4, depth=2, blend_previous=0.5,
                  **{k: v for k, v in run.items() if k != "keep_better"})  # fmt: skip
    assert total_steps(fresh) == 3


def test_the_running_average_of_weights_follows_each_step(tiny_model):
    """WeightAverage: an exponential moving average of the floating weights and buffers, copied back at the end."""
    from napari_unet.training.continuation import WeightAverage

    model = copy.deepcopy(tiny_model)
    start = _weights(model)
    average = WeightAverage(model, decay=0.75)
    average.updates = 100  # past the warm-up, the decay is the one asked for
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(4.0)
    average.update(model)  # 0.75 x start + 0.25 x (start + 4) = start + 1
    average.copy_to(model)
    for a, b in zip(start, _weights(model), strict=True):
        np.testing.assert_allclose(b, a + 1.0 if a.dtype.kind == "f" else a, rtol=1e-6, atol=1e-6)


def test_a_continued_run_keeps_its_patch_size_on_a_short_budget(blobs, monkeypatch):
    """A short budget halves the patches of a first run; a continued model keeps the size it learnt at."""
    import napari_unet.training.schedule as schedule

    monkeypatch.setattr(schedule, "SHORT_RUN_STEPS", 10**9)  # every timed budget counts as short
    image, labels = blobs
    run = dict(mode="dense", instances=False, filters=4, depth=2, patch_size=32, batch_size=4, time_limit=60.0,
               epochs=1, steps_per_epoch=3, threads=1)  # fmt: skip
    first = Trainer(image, labels, **run)
    done = list(first.run())[-1]
    assert first.small_patch == 16 and done.steps == 3
    again = Trainer(image, labels, model=done.model, **run)
    list(again.run())
    assert again.small_patch is None
