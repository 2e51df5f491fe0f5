"""bioimage.io export: the package validates, its weights reproduce its test output (also in plain PyTorch,
with no napari-unet), its TorchScript labels equal ``predict``'s, and napari-unet loads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_blobs

from napari_unet import InputError, UNet, export_model, load_model, predict
from napari_unet.normalization import normalize

pytest.importorskip("bioimageio.spec", reason="the bioimageio extra (pip install '.[bioimageio]')")


@pytest.fixture(scope="module")
def package(_trained_blobs_model, tmp_path_factory) -> Path:
    image, _ = make_blobs()
    return export_model(_trained_blobs_model, tmp_path_factory.mktemp("export") / "blobs.zip", image, name="Blobs")


def _rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def _member(package: Path, name: str, tmp_path: Path) -> Path:
    with zipfile.ZipFile(package) as z:
        z.extract(name, tmp_path)
    return tmp_path / name


def test_package_passes_bioimageio_validation(package):
    from napari_unet.packages import validate_package

    summary = validate_package(package)
    assert summary["status"] in ("passed", "valid-format"), summary["error"]
    rdf = _rdf(package)
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    pre = rdf["inputs"][0]["preprocessing"][0]
    assert pre["id"] == "scale_range" and pre["kwargs"]["axes"] == ["y", "x"]
    assert (pre["kwargs"]["min_percentile"], pre["kwargs"]["max_percentile"]) == (1.0, 99.8)
    assert [p["id"] for p in rdf["outputs"][0]["postprocessing"]] == ["sigmoid", "binarize", "ensure_dtype"]
    assert rdf["config"]["napari_unet"]["meta"]["training"]["history"]  # the training record travels
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
    assert {"cover.png", "README.md", "test_input.npy", "test_output.npy", "training.json"} <= names


def test_package_test_reproduces_with_bioimageio_core(package):
    core = pytest.importorskip("bioimageio.core")
    summary = core.test_model(str(package))
    assert summary.status == "passed", summary.format()


def test_torchscript_reproduces_test_output(package, tmp_path):
    """What bioimage.io's test does, by hand: scale_range, the TorchScript, sigmoid, binarize."""
    net = torch.jit.load(str(_member(package, "weights_torchscript.pt", tmp_path)))
    x = np.load(_member(package, "test_input.npy", tmp_path))
    expected = np.load(_member(package, "test_output.npy", tmp_path))
    lo, hi = np.percentile(x, [1.0, 99.8], axis=(2, 3), keepdims=True)
    with torch.inference_mode():
        logits = net(torch.from_numpy(((x - lo) / (hi - lo + 1e-6)).astype(np.float32)))
    assert np.array_equal((torch.sigmoid(logits) > 0.5).numpy().astype(np.uint8), expected)
    assert 0 < expected.mean() < 1  # the test output is a real segmentation, not all one value


def test_torchscript_labels_equal_predict(package, _trained_blobs_model, tmp_path):
    image, gt = make_blobs()
    net = torch.jit.load(str(_member(package, "weights_torchscript.pt", tmp_path)))
    with torch.inference_mode():
        logits = net(torch.from_numpy(normalize(image[None], _trained_blobs_model.meta["normalization"]))[None])
    exported = (torch.sigmoid(logits)[0, 0] > 0.5).numpy().astype(np.uint8)
    ours = predict(_trained_blobs_model, image, precision="fp32")
    assert np.array_equal(exported, ours)
    assert 2 * (exported & (gt > 0)).sum() / (exported.sum() + (gt > 0).sum()) > 0.9


def test_round_trip_zip_and_folder(package, _trained_blobs_model, tmp_path):
    image, _ = make_blobs()
    folder = export_model(_trained_blobs_model, tmp_path / "pkg", image)
    for source in (package, folder):
        model = load_model(source)
        assert model.config == _trained_blobs_model.config
        assert model.meta["normalization"] == _trained_blobs_model.meta["normalization"]
        for k, v in _trained_blobs_model.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        assert np.array_equal(predict(model, image), predict(_trained_blobs_model, image))


def test_exported_model_loads_in_plain_torch(package, tmp_path):
    """A fresh interpreter whose only packages are torch (with what it imports) and numpy: no napari-unet."""
    site = Path(torch.__file__).resolve().parents[1]
    only = tmp_path / "only-torch"
    only.mkdir()
    needed = ["torch", "torchgen", "numpy", "typing_extensions", "sympy", "mpmath", "filelock", "networkx", "jinja2"]
    needed += ["markupsafe", "fsspec"]
    for name in needed:
        for entry in (site / name, site / f"{name}.py", site / f"{name}.libs"):
            if entry.exists():
                (only / entry.name).symlink_to(entry)
    for name in ("weights_torchscript.pt", "test_input.npy", "test_output.npy"):
        _member(package, name, tmp_path)
    code = f"""
import importlib.util, sys
sys.path[:] = [p for p in sys.path if 'site-packages' not in p and 'dist-packages' not in p] + [{str(only)!r}]
for name in ('napari_unet', 'napari', 'PyQt6', 'yaml', 'bioimageio'):
    assert importlib.util.find_spec(name) is None, name + ' is importable'
import numpy as np, torch
net = torch.jit.load('weights_torchscript.pt')
x = np.load('test_input.npy')
lo, hi = np.percentile(x, [1.0, 99.8], axis=(2, 3), keepdims=True)
y = torch.sigmoid(net(torch.from_numpy(((x - lo) / (hi - lo + 1e-6)).astype(np.float32)))) > 0.5
assert np.array_equal(y.numpy().astype(np.uint8), np.load('test_output.npy'))
print('ok')
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_multiclass_export_validates(tmp_path):
    from napari_unet.packages import validate_package

    model = UNet(in_channels=2, n_classes=2, filters=4, depth=2).eval()
    rng = np.random.default_rng(0)
    path = export_model(model, tmp_path / "mc.zip", rng.normal(size=(40, 36, 2)).astype(np.float32))
    assert validate_package(path)["status"] in ("passed", "valid-format")
    rdf = _rdf(path)
    assert rdf["outputs"][0]["postprocessing"] == [{"id": "softmax", "kwargs": {"axis": "channel"}}]
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["background", "class1", "class2"]
    assert np.load(_member(path, "test_input.npy", tmp_path)).shape == (1, 2, 36, 36)
    assert load_model(path).config == model.config
    try:
        from bioimageio.core import test_model
    except ImportError:
        return
    summary = test_model(str(path))
    assert summary.status == "passed", summary.format()


def test_existing_output_is_kept(package, _trained_blobs_model):
    image, _ = make_blobs()
    before = package.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        export_model(_trained_blobs_model, package, image)
    assert package.read_bytes() == before
    export_model(_trained_blobs_model, package, image, overwrite=True)
    assert load_model(package).config == _trained_blobs_model.config


def test_bad_inputs_give_one_clear_error(_trained_blobs_model, tmp_path):
    model = _trained_blobs_model
    cases = [
        (lambda: export_model("model.pt", tmp_path / "a.zip", np.zeros((8, 8))), "takes a UNet"),
        (lambda: export_model(model, tmp_path / "a.zip", None), "needs a test image"),
        (lambda: export_model(model, tmp_path / "a.zip", np.zeros((2, 2), np.float32)), "at least 4 x 4"),
        (lambda: export_model(model, tmp_path / "nope" / "a.zip", make_blobs()[0]), "does not exist"),
        (lambda: export_model(model, tmp_path / "a.zip", np.full((8, 8), np.nan, np.float32)), "NaN"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_foreign_or_damaged_package_is_refused(package, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    rdf = _rdf(package)
    del rdf["config"]["napari_unet"]
    (foreign / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(InputError, match="napari-unet did not export"):
        load_model(foreign)
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            if name != "weights_state_dict.pt":
                dst.writestr(name, src.read(name))
    with pytest.raises(InputError, match="incomplete or damaged"):
        load_model(broken)
    newer = tmp_path / "newer"
    newer.mkdir()
    rdf = _rdf(package)
    rdf["config"]["napari_unet"]["format_version"] = 99
    (newer / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(InputError, match="newer napari-unet"):
        load_model(newer)


def test_missing_bioimageio_spec_is_a_clear_error(_trained_blobs_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(InputError, match=r"pip install 'napari-unet-trainer\[bioimageio\]'"):
        export_model(_trained_blobs_model, tmp_path / "a.zip", make_blobs()[0])


def test_training_record_attachment_is_json(package, tmp_path):
    record = json.loads(_member(package, "training.json", tmp_path).read_text())
    assert record["history"][-1]["steps"] > 0


@pytest.mark.parametrize(
    "config", [dict(filters=4, depth=2), dict(in_channels=2, n_classes=3, filters=4, depth=3, dropout=0.1)]
)
def test_standalone_architecture_is_the_same_network(config):
    """The file shipped as the package's architecture, scripted, computes what napari_unet.model.UNet does."""
    from napari_unet import _unet_standalone

    model = UNet(**config).eval()
    twin = _unet_standalone.UNet(**config)
    twin.load_state_dict(model.state_dict(), strict=True)
    scripted = torch.jit.script(twin.eval())
    for h, w in [(33, 47), (64, 64), (3, 5)]:
        x = torch.randn(2, model.in_channels, h, w)
        with torch.inference_mode():
            assert torch.equal(model(x), scripted(x)), (h, w)


def test_cli_export_then_predict_with_the_package(_trained_blobs_model, tmp_path, capsys):
    import tifffile

    from napari_unet import save_model
    from napari_unet.cli import main

    image, _ = make_blobs()
    tifffile.imwrite(tmp_path / "img.tif", image)
    save_model(_trained_blobs_model, tmp_path / "m.pt")
    argv = ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.zip"), "--image", str(tmp_path / "img.tif")]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(argv) != 0  # the package exists: kept, one line
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    for model, out in (("m.pt", "a"), ("m.zip", "b")):
        assert main(["predict", str(tmp_path / model), str(tmp_path / "img.tif"), "-o", str(tmp_path / out)]) == 0
    assert np.array_equal(
        tifffile.imread(tmp_path / "a" / "img_labels.tif"), tifffile.imread(tmp_path / "b" / "img_labels.tif")
    )
    assert (
        main(["export", str(tmp_path / "img.tif"), "-o", str(tmp_path / "x.zip"), "--image", str(tmp_path / "img.tif")])
        != 0
    )
    assert "not a napari-unet model" in capsys.readouterr().err
