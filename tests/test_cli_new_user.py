"""The command line tried as a new user would: inputs checked first, a progress bar that moves, a clear --help."""

import argparse
import csv

import numpy as np
import pytest
import tifffile
from skimage.draw import disk

from napari_unet import save_model
from napari_unet.cli import build_parser, main
from napari_unet.cli.train import POOR_MODEL_EXIT


@pytest.fixture
def model_file(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "m.pt")
    return tmp_path / "m.pt"


@pytest.mark.parametrize("name", ["missing.tif", "notes.txt"])
def test_predict_checks_inputs_before_creating_anything(model_file, tmp_path, capsys, name):
    (tmp_path / "notes.txt").write_text("hello")
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((32, 32), np.float32))
    out = tmp_path / "out"
    rc = main(["predict", str(model_file), str(image), str(tmp_path / name), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and name in err
    assert "predicting" not in err  # no progress bar started
    assert not out.exists()  # no empty output folder left behind


def test_predict_refuses_stitching_without_instances_up_front(model_file, tmp_path, capsys):
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((2, 32, 32), np.float32))
    rc = main(["predict", str(model_file), str(image), "-o", str(tmp_path / "out"), "--stitch-threshold", "0.3"])
    assert rc == 2 and "--instances" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_progress_counts_planes(model_file, tmp_path, capsys):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.random.default_rng(0).random((5, 32, 32)).astype(np.float32))
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((32, 32), np.float32))
    rc = main(["predict", str(model_file), str(stack), str(tmp_path / "one.tif"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "6/6" in err and "plane" in err  # 5 planes + 1 image, not 2 images


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((name, a) for a in sub._actions if not isinstance(a, argparse._HelpAction))


def test_help_describes_every_option():
    parser = build_parser()
    undescribed = [f"{cmd} {a.option_strings or a.dest}" for cmd, a in _options(parser) if not a.help]
    assert undescribed == []
    helps = {(cmd, a.dest): a.help for cmd, a in _options(parser)}
    assert "0.5" in helps[("predict", "threshold")]
    assert "instead of or with" not in helps[("train", "epochs")]
    assert "first" in helps[("train", "epochs")]
    demo = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["demo"]
    assert demo.description and "left half" in demo.description


def test_evaluate_csv_has_the_mean_row(tmp_path, capsys):
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 1
    pred = truth.copy()
    pred[5:10] = 0
    for name, a in [("t.tif", truth), ("p1.tif", pred), ("p2.tif", truth)]:
        tifffile.imwrite(tmp_path / name, a)
    args = ["evaluate", "--pred", str(tmp_path / "p1.tif"), str(tmp_path / "p2.tif")]
    rc = main([*args, "--truth", str(tmp_path / "t.tif"), str(tmp_path / "t.tif"), "--csv", str(tmp_path / "s.csv")])
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["image"] for r in rows] == ["p1.tif", "p2.tif", "mean"]
    assert float(rows[2]["dice"]) == pytest.approx((float(rows[0]["dice"]) + 1.0) / 2, abs=1e-5)


def test_train_multiclass_means_dense_and_ambiguous_labels_ask(tmp_path, capsys):
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    labels = np.zeros((64, 64), np.uint8)
    labels[disk((15, 15), 6)] = 1
    labels[disk((45, 20), 6)] = 2
    labels[disk((30, 48), 6)] = 3
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    tiny = ["--filters", "4", "--depth", "2", "--patch-size", "32", "--batch-size", "2", "--epochs", "1"]
    base = ["train", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif")]
    assert main([*base, "-o", str(tmp_path / "m.pt"), "--multiclass", *tiny]) in (0, POOR_MODEL_EXIT)
    assert capsys.readouterr().err.startswith("dense labels, 3 class(es)")
    thick = np.zeros((64, 64), np.uint8)
    thick[10:19, 10:37], thick[40:49, 20:47] = 1, 2
    tifffile.imwrite(tmp_path / "thick.tif", thick)
    base[3] = str(tmp_path / "thick.tif")
    assert main([*base, "-o", str(tmp_path / "m2.pt"), *tiny]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sparse or --dense" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m2.pt").exists()


@pytest.mark.parametrize(
    "stopped,plateau,why,reason",
    [
        (False, True, "plateau", "done: it had stopped improving"),
        (False, False, "time limit", "done: time budget used"),
        (True, False, "stopped", "stopped by you"),
    ],
)
def test_progress_bar_ends_full_with_the_reason(capsys, stopped, plateau, why, reason):
    """A run that ends early (a plateau, the time limit) leaves a full bar that says why, not one stuck at 34%."""
    from types import SimpleNamespace

    from napari_unet.cli._progress import run_training
    from napari_unet.training import Done, Step

    class Stub:
        config = SimpleNamespace(epochs=None, steps_per_epoch=20)

        def stop(self):
            pass

        def run(self):
            yield Step(34, 1, 0.5, 3.4, 0.34)
            yield Done(None, 34, 1, 3.4, 0.5, None, stopped, plateau=plateau, reason=why)

    done = run_training(Stub())
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # the bar as it was left
    assert done.steps == 34 and done.plateau == plateau
    assert "100%" in last and reason in last
