"""Issue 6: Stop, Ctrl-C or an exception mid-training never corrupt a model file, and the in-memory model stays
usable at its last completed step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import Done, InputError, Step, Trainer, load_model, predict, save_model, write_labels
from napari_unet.cli import main
from napari_unet.cli.train import POOR_MODEL_EXIT

TINY = dict(filters=4, depth=2, patch_size=32, batch_size=2, steps_per_epoch=3, time_limit=None, augment=False)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _fail_on_call(model, n: int, make):
    """Make the n-th forward pass of ``model`` (counting from 1) return/raise what ``make(output)`` gives,
    after the real forward ran (so BatchNorm statistics were already updated)."""
    original, calls = model.forward, {"n": 0}

    def forward(x):
        out = original(x)
        calls["n"] += 1
        return make(out) if calls["n"] == n else out

    model.forward = forward
    return calls


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_inside_a_step_leaves_the_model_at_its_last_step(data, error):
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=2, **TINY)

    def raise_(out):
        raise error

    _fail_on_call(trainer.model, 3, raise_)
    states = []
    with pytest.raises(type(error)):
        for event in trainer.run():
            if isinstance(event, Step):
                states.append(_state(trainer.model))
    assert trainer.steps == 2 and _same(_state(trainer.model), states[-1])  # BatchNorm statistics included
    snapshot = trainer.snapshot()
    assert predict(snapshot, image).shape == labels.shape
    # and it can go on training from there
    done = [e for e in trainer.run() if isinstance(e, Done)][0]
    assert done.steps == 6 and all(torch.isfinite(p).all() for p in done.model.parameters())


def test_a_nan_loss_skips_the_step_and_says_so(data):
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=1, **TINY)
    _fail_on_call(trainer.model, 2, lambda out: out * float("nan"))
    states = []
    with pytest.warns(RuntimeWarning, match="not finite"):
        for event in trainer.run():
            if isinstance(event, Step):
                states.append((event.step, _state(trainer.model)))
            if isinstance(event, Done):
                done = event
    assert done.skipped == 1 and done.steps == 3 and not done.stopped
    assert [s for s, _ in states] == [1, 2, 3]
    assert all(torch.isfinite(v).all() for v in done.model.state_dict().values() if v.is_floating_point())


def test_a_loss_that_stays_nan_stops_training_with_the_last_good_weights(data):
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=5, **TINY)
    run = trainer.run()
    assert isinstance(next(run), Step)  # one good step
    before = _state(trainer.model)
    original = trainer.model.forward
    trainer.model.forward = lambda x: original(x) * float("inf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = [e for e in run if isinstance(e, Done)][0]
    assert done.stopped and done.steps == 1 and done.skipped == 10
    assert any("Training stopped" in str(w.message) for w in caught)
    assert _same(_state(trainer.model), before)


def test_stop_before_the_first_step(data, tmp_path):
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=1, **TINY)
    trainer.stop()
    (done,) = list(trainer.run())
    assert done.stopped and done.steps == 0
    assert predict(done.model, image).shape == labels.shape


def test_interrupted_writes_leave_the_old_file(data, tmp_path, monkeypatch):
    image, labels = data
    path = write_labels(tmp_path / "l.tif", labels)
    before = path.read_bytes()

    def half_then_ctrl_c(file, data, **kw):
        with open(file, "wb") as f:
            f.write(b"II*\x00 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(tifffile, "imwrite", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_labels(path, labels * 0, overwrite=True)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["l.tif"]


def test_ctrl_c_while_predicting_a_stack_leaves_no_output(data, tmp_path, monkeypatch, capsys):
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=1, **TINY)
    model = [e for e in trainer.run() if isinstance(e, Done)][0].model
    save_model(model, tmp_path / "m.pt")
    np.save(tmp_path / "stack.npy", np.stack([image] * 4))
    import napari_unet.prediction as prediction

    original = prediction._labels_from_probs
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(prediction, "_labels_from_probs", interrupted)
    rc = main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "stack.npy"), "-o", str(tmp_path / "out")])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []  # neither a half-written TIFF nor a temporary file


# ---------------------------------------------------------------------------------------------- real Ctrl-C


@pytest.fixture
def train_files(tmp_path, data):
    image, labels = data
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    return tmp_path


def _start_training(folder, *extra):
    argv = [sys.executable, "-m", "napari_unet.cli", "train", str(folder / "img.tif"), "--labels",
            str(folder / "lab.tif"), "-o", str(folder / "m.pt"), "--time-limit", "120", "--filters", "4",
            "--depth", "2", "--patch-size", "32", "--batch-size", "2", "--no-plateau", *extra]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    err = bytearray()

    def pump():
        while chunk := proc.stderr.read1(4096):
            err.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    hang_guard = time.monotonic() + 600  # not a speed check: only keeps a hung child from hanging the suite
    while b"step=" not in err:  # the first progress output: training is under way
        assert proc.poll() is None, err.decode(errors="replace")
        if time.monotonic() > hang_guard:
            proc.kill()
            pytest.fail("the training process printed no progress in 10 minutes: it hangs")
        time.sleep(0.05)
    return proc, err, reader


def _finish(proc, reader, err):
    proc.wait(timeout=60)
    reader.join(timeout=10)  # the reader owns stderr until end of file
    return proc.returncode, proc.stdout.read().decode(), err.decode(errors="replace")


def test_ctrl_c_stops_after_the_step_and_saves_a_loadable_model(train_files):
    proc, err, reader = _start_training(train_files)
    proc.send_signal(signal.SIGINT)
    rc, out, err = _finish(proc, reader, err)
    assert rc in (0, POOR_MODEL_EXIT), err  # a few steps may make a poor model: it is saved and said so
    assert "stopping after this step" in err and "stopped" in out and "model saved" in out
    model = load_model(train_files / "m.pt")
    assert model.meta["training"]["steps"] >= 1
    assert sorted(p.name for p in train_files.iterdir()) == ["img.tif", "lab.tif", "m.pt"]


def test_a_second_ctrl_c_aborts_without_a_broken_file(train_files, data):
    """Whenever the second Ctrl-C lands (in the step, validation or saving), the model file is the old one or a
    complete new one; never half-written, and no temporary file is left."""
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=1, **TINY)
    save_model([e for e in trainer.run() if isinstance(e, Done)][0].model, train_files / "m.pt")
    old = (train_files / "m.pt").read_bytes()
    proc, err, reader = _start_training(train_files, "--overwrite")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    rc, out, err = _finish(proc, reader, err)
    assert rc in (0, 130), err
    assert "Traceback" not in err
    assert sorted(p.name for p in train_files.iterdir()) == ["img.tif", "lab.tif", "m.pt"]
    if rc == 130:
        assert "interrupted" in err, err[-600:]
    # the old file, or (when the second Ctrl-C came after the rename) the complete new one
    if (train_files / "m.pt").read_bytes() != old:
        assert load_model(train_files / "m.pt").meta["training"]["steps"] >= 1


def test_input_error_inside_a_step_is_reported_not_swallowed(data):
    image, labels = data
    trainer = Trainer(image, labels, mode="dense", epochs=1, **TINY)

    def bad(out):
        raise InputError("bad thing: do something")

    _fail_on_call(trainer.model, 1, bad)
    with pytest.raises(InputError):
        list(trainer.run())
    assert trainer.steps == 0
