"""A useless model is said so: the verdict on Done, in the model file, from the CLI, and again at prediction."""

from __future__ import annotations

import pytest
import tifffile
import torch

from napari_unet.checkpoint import load_model, save_model
from napari_unet.cli import main
from napari_unet.cli.train import POOR_MODEL_EXIT
from napari_unet.meta import verdict
from napari_unet.model import UNet
from napari_unet.prediction import predict
from napari_unet.training import Done, Trainer
from napari_unet.training.verdict import OK, POOR, USELESS, PoorModelWarning, judge


def test_judge_says_why():
    assert judge(0.9, ({0, 1}, {0, 1})).word == OK
    poor = judge(0.3, ({0, 1}, {0, 1}))
    assert poor.word == POOR and "0.30" in poor.reason and "below 0.5" in poor.reason
    useless = judge(0.9, ({0, 1}, {1}))
    assert useless.word == USELESS and "every pixel class 1" in useless.reason
    assert judge(None, ({0, 1}, {0})).word == USELESS
    assert judge(None, ({0}, {0})).word == OK  # only background annotated: one class is right
    assert judge(None, None).word == OK


def _one_class_model() -> UNet:
    """A binary model that says foreground everywhere (its head is a constant)."""
    model = UNet(1, 1, filters=4, depth=2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(10.0)
    return model


def _useless_run(blobs) -> Done:
    image, labels = blobs
    trainer = Trainer(image, labels, model=_one_class_model(), mode="dense", instances=False, filters=4, depth=2,
                      patch_size=32, batch_size=2, epochs=1, steps_per_epoch=2, time_limit=None,
                      learning_rate=1e-12)  # fmt: skip
    return [e for e in trainer.run() if isinstance(e, Done)][0]


def test_a_model_that_predicts_one_class_is_useless_and_the_file_says_so(blobs, tmp_path):
    done = _useless_run(blobs)
    assert done.verdict == USELESS and not done.usable and "every pixel" in done.verdict_reason
    save_model(done.model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert verdict(loaded)[0] == USELESS
    with pytest.warns(PoorModelWarning, match="judged useless"):
        predict(loaded, blobs[0])


def test_a_good_model_is_ok_and_predicts_without_warning(tiny_model, blobs, recwarn):
    from napari_unet.meta import record_verdict

    record_verdict(tiny_model.meta, OK, "")
    predict(tiny_model, blobs[0])
    assert not [w for w in recwarn if issubclass(w.category, PoorModelWarning)]


def test_the_cli_saves_then_exits_3_and_predict_repeats_it(blobs, tmp_path, capsys):
    image, labels = blobs
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", (labels > 0).astype("uint8"))
    save_model(_one_class_model(), tmp_path / "base.pt")
    rc = main(["train", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"), "-o",
               str(tmp_path / "m.pt"), "--from", str(tmp_path / "base.pt"), "--dense", "--no-instances",
               "--epochs", "1", "--lr", "1e-12", "--patch-size", "32", "--batch-size", "2"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == POOR_MODEL_EXIT == 3
    assert "useless model" in err and "every pixel" in err
    assert verdict(load_model(tmp_path / "m.pt"))[0] == USELESS  # saved before the exit
    rc = main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "img.tif"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 0 and "judged useless" in err


def test_the_one_class_check_looks_where_the_strokes_are():
    import numpy as np

    from napari_unet.training.patches import Sample
    from napari_unet.training.verdict import plane_classes

    target = np.full((1024, 1024), -1, np.int16)
    target[900:910, 40:200] = 0  # strokes far from the centre: background and an object
    target[950:960, 40:200] = 1
    image = np.zeros((1, 1024, 1024), np.float32)
    classes = plane_classes(_one_class_model(), [Sample(image, target)], torch.device("cpu"), "fp32", False)
    assert classes == ({0, 1}, {1})
    assert judge(None, classes).word == USELESS
