"""The command line contract: train, predict, evaluate, demo; bad input is one line and a non-zero exit."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet import load_model
from napari_unet.cli import main
from napari_unet.cli.train import POOR_MODEL_EXIT

TINY_ARGS = ["--filters", "4", "--depth", "2", "--patch-size", "32", "--batch-size", "2"]
TRAINED = (0, POOR_MODEL_EXIT)  # a tiny model may be judged poor (exit code 3); it is saved either way


@pytest.fixture
def files(tmp_path, blobs):
    image, labels = blobs
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    np.save(tmp_path / "stack.npy", np.stack([image, image[::-1]]))
    return tmp_path


def test_train_predict_evaluate(files, capsys):
    model = files / "m.pt"
    rc = main(
        [
            "train",
            str(files / "img.tif"),
            "--labels",
            str(files / "lab.tif"),
            "-o",
            str(model),
            "--dense",
            "--epochs",
            "1",
            *TINY_ARGS,
        ]
    )
    assert rc in TRAINED and load_model(model).meta["label_mode"] == "dense"
    assert "model saved to" in capsys.readouterr().out

    out = files / "out"
    rc = main(
        [
            "predict",
            str(model),
            str(files / "img.tif"),
            str(files / "stack.npy"),
            "-o",
            str(out),
            "--instances",
            "--contours",
            "geojson",
        ]
    )
    assert rc == 0
    assert tifffile.imread(out / "img_labels.tif").shape == (64, 80)
    assert tifffile.imread(out / "stack_labels.tif").shape == (2, 64, 80)
    assert (out / "img_contours.geojson").exists()

    table = files / "t.csv"
    rc = main(
        ["evaluate", "--pred", str(out / "img_labels.tif"), "--truth", str(files / "lab.tif"), "--csv", str(table)]
        + ["--iou-threshold", "0.6"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "dice" in printed and "objects pred/true" in printed and "F1@0.6" in printed
    rows = list(csv.DictReader(table.open()))
    assert list(rows[0]) == ["image", "class", "dice", "iou", "precision", "recall"] + [
        "objects_pred", "objects_true", "matched", "false_pos", "false_neg",
        "object_precision", "object_recall", "object_f1", "matched_iou", "pq", "iou_threshold",
    ]  # fmt: skip
    assert 0 <= float(rows[0]["dice"]) <= 1
    assert 0 <= float(rows[0]["object_f1"]) <= 1 and float(rows[0]["iou_threshold"]) == 0.6
    assert int(rows[0]["matched"]) + int(rows[0]["false_neg"]) == int(rows[0]["objects_true"])

    # fine-tune from the saved model, never overwriting it
    rc = main(
        [
            "train",
            str(files / "img.tif"),
            "--labels",
            str(files / "lab.tif"),
            "-o",
            str(model),
            "--epochs",
            "1",
            "--from",
            str(model),
            *TINY_ARGS,
        ]
    )
    assert rc == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "missing.tif", "--labels", "x.tif", "-o", "m.pt"], "no such file"),
        (
            ["train", "{d}/img.tif", "--labels", "{d}/img.tif", "{d}/lab.tif", "-o", "{d}/m.pt"],
            "one --labels file per image",
        ),
        (["train", "{d}/img.tif", "--labels", "{d}/lab.tif", "-o", "{d}/m.pt", "--epochs", "0"], "epochs"),
        (["train", "{d}/img.txt", "--labels", "{d}/lab.tif", "-o", "{d}/m.pt"], "unsupported file type"),
        (["predict", "{d}/img.tif", "{d}/img.tif", "-o", "{d}/o"], "not a napari-unet model"),
        (["evaluate", "--pred", "{d}/img.tif", "--truth", "{d}/img.tif", "{d}/lab.tif"], "in pairs"),
        (["evaluate", "--pred", "{d}/lab.tif", "--truth", "{d}/lab.tif", "--iou-threshold", "1.5"], "iou_threshold"),
        (["train", "{d}/img.tif"], "required"),
    ],
)
def test_bad_input_is_one_line(files, capsys, argv, message):
    (files / "img.txt").write_text("hello")
    argv = [a.format(d=files) for a in argv]
    with pytest.raises(SystemExit) if "required" in message else _nullcontext():
        rc = main(argv)
        assert rc != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_unwritable_output_folder(files, tiny_model, capsys):
    from napari_unet import save_model

    save_model(tiny_model, files / "m.pt")
    blocker = files / "afile"
    blocker.write_text("x")
    rc = main(["predict", str(files / "m.pt"), str(files / "img.tif"), "-o", str(blocker / "sub")])
    assert rc != 0 and "output folder" in capsys.readouterr().err


def test_console_script_and_version():
    out = subprocess.run([sys.executable, "-m", "napari_unet.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("napari-unet ")


def test_demo_writes_everything_and_keeps_earlier_outputs(tmp_path, capsys):
    rc = main(["demo", "-o", str(tmp_path), "--time-limit", "2"])
    assert rc == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "model.pt",
        "nuclei_right_labels.tif",
        "nuclei_right_contours.geojson",
        "metrics.csv",
        "overlay.png",
    } <= names
    assert "dice" in capsys.readouterr().out
    before = (tmp_path / "model.pt").read_bytes()
    assert main(["demo", "-o", str(tmp_path), "--time-limit", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "model.pt").read_bytes() == before


def test_predict_checks_every_output_before_writing_any(files, tiny_model, capsys):
    from napari_unet import save_model

    save_model(tiny_model, files / "m.pt")
    out = files / "out"
    out.mkdir()
    (out / "stack_labels.tif").write_bytes(b"precious")  # the second image's output exists
    rc = main(["predict", str(files / "m.pt"), str(files / "img.tif"), str(files / "stack.npy"), "-o", str(out)])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert not (out / "img_labels.tif").exists()  # nothing written for the first image either
    assert (out / "stack_labels.tif").read_bytes() == b"precious"
