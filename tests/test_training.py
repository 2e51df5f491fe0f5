import threading

import numpy as np
import pytest
import torch

from napari_unet import Done, Epoch, InputError, Step, TrainConfig, Trainer, predict, train


def test_events_and_trained_model(blobs, tiny):
    image, labels = blobs
    events = list(Trainer(image, labels, mode="dense", **tiny).run())
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == 3 and [s.step for s in steps] == [1, 2, 3]
    assert isinstance(events[-2], Epoch) and isinstance(events[-1], Done)
    assert 0 < steps[0].fraction < steps[-1].fraction == 1.0
    done = events[-1]
    assert done.steps == 3 and not done.stopped
    meta = done.model.meta
    assert meta["label_mode"] == "dense" and meta["normalization"]["method"] == "percentile"
    assert meta["training"]["history"][-1]["data_shapes"] == [[64, 80]]


def test_learns_the_blobs(blobs):
    image, labels = blobs
    model = train(
        image,
        labels,
        mode="dense",
        filters=8,
        depth=2,
        patch_size=32,
        epochs=4,
        steps_per_epoch=20,
        time_limit=None,
        learning_rate=5e-3,
    )
    from napari_unet import evaluate

    (row,) = evaluate(predict(model, image), labels)
    assert row["dice"] > 0.9


def test_seeded_runs_are_reproducible(blobs, tiny):
    image, labels = blobs
    a = train(image, labels, seed=3, precision="fp32", **tiny)
    b = train(image, labels, seed=3, precision="fp32", **tiny)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_stop_takes_effect_within_one_step(blobs, tiny):
    image, labels = blobs
    trainer = Trainer(image, labels, **{**tiny, "epochs": None, "time_limit": 600})
    events = []
    for event in trainer.run():
        events.append(event)
        if len(events) == 2:
            threading.Thread(target=trainer.stop).start()
            threading.Event().wait(0.05)
    done = events[-1]
    assert isinstance(done, Done) and done.stopped and done.steps <= 3


def test_time_limit(blobs, tiny):
    image, labels = blobs
    done = list(Trainer(image, labels, **{**tiny, "epochs": None, "time_limit": 0.5}).run())[-1]
    assert done.elapsed < 5 and done.steps >= 1


def test_sparse_scribbles_and_fine_tuning(blobs, tiny):
    image, labels = blobs
    strokes = np.zeros_like(labels)
    strokes[15, 10:20] = 2
    strokes[2, 2:40] = 1
    model = train(image, strokes, **tiny)
    assert model.meta["label_mode"] == "sparse" and model.n_classes == 1
    tuned = train(image, labels, model=model, mode="dense", **tiny)
    assert tuned is model and len(tuned.meta["training"]["history"]) == 2


def test_stacks_multichannel_and_multiclass(tiny):
    rng = np.random.default_rng(0)
    stack = rng.random((3, 40, 40, 2)).astype(np.float32)  # Z, Y, X, C
    labels = np.zeros((3, 40, 40), np.uint8)
    labels[:, 5:15, 5:15], labels[:, 25:35, 25:35] = 1, 2
    model = train(stack, labels, mode="dense", multiclass=True, **tiny)
    assert model.in_channels == 2 and model.n_classes == 2
    out = predict(model, stack)
    assert out.shape == (3, 40, 40) and out.max() <= 2


def test_validation_dice_is_reported_with_enough_annotation(tiny):
    rng = np.random.default_rng(1)
    image = rng.random((128, 128)).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    epochs = [e for e in Trainer(image, labels, mode="dense", **tiny).run() if isinstance(e, Epoch)]
    assert epochs and epochs[0].val_dice is not None and 0 <= epochs[0].val_dice <= 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"time_limit": None, "epochs": None}, "never end"),
        ({"patch_size": 4}, "patch_size"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"mode": "bogus"}, "mode"),
        ({"no_such_option": 1}, "Unknown training option"),
    ],
)
def test_bad_config(blobs, kwargs, match):
    image, labels = blobs
    with pytest.raises(InputError, match=match):
        Trainer(image, labels, **kwargs)


def test_bad_data(blobs, tiny):
    image, labels = blobs
    with pytest.raises(InputError, match="pixel for pixel"):
        Trainer(image, labels[:10], **tiny)
    with pytest.raises(InputError, match="one label image per image"):
        Trainer([image, image], [labels], **tiny)
    with pytest.raises(InputError, match="Nothing is annotated"):
        Trainer(image, np.zeros_like(labels), mode="sparse", **tiny)


def test_config_defaults_are_sane():
    cfg = TrainConfig()
    assert cfg.time_limit == 60 and cfg.filters == 16 and cfg.depth == 4


def test_a_continued_schedule_starts_where_the_session_is(blobs, tiny):
    image, labels = blobs
    fresh = Trainer(image, labels, **tiny)
    later = Trainer(image, labels, **{**tiny, "schedule_start": 0.9})
    fresh._set_lr(0.0)
    later._set_lr(0.0)
    lr_fresh = fresh.optimizer.param_groups[0]["lr"]
    lr_later = later.optimizer.param_groups[0]["lr"]
    assert lr_fresh == pytest.approx(TrainConfig().learning_rate / 10)  # warm-up
    assert lr_later < 0.1 * TrainConfig().learning_rate and lr_later > 0  # late in the cosine, no warm-up restart
    with pytest.raises(InputError, match="schedule_start"):
        TrainConfig(schedule_start=1.0)
