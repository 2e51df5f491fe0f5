"""bioimage.io model packages: write one from a trained U-Net.

A package is a folder or a zip with ``rdf.yaml`` and the files it names: TorchScript weights (run anywhere
PyTorch runs: deepImageJ, ilastik, QuPath, BiaPy, bioimageio.core), the state dict with the architecture as
one self-contained source file (``_unet_standalone.py``), a test input and output, a cover image, and the
training record. ``rdf.py`` builds the rdf and the README; ``packages.py`` reads packages back and validates
them. Writing needs the optional ``bioimageio.spec`` (every package is validated before it is written). No Qt,
no napari here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import _unet_standalone
from .errors import InputError
from .images import iter_slices
from .io import atomic_path
from .meta import TRAINING, normalization_rule
from .model import UNet
from .normalization import DEFAULT_NORMALIZATION
from .packages import require_spec, validate_package
from .rdf import ARCH_FILE, EPS, documentation, model_rdf, write_cover
from .training.config import DEFAULT_THRESHOLD

TEST_SIZE = 256  # the test input is a centred square crop of at most this size


def _test_plane(model: UNet, image, channel_axis) -> np.ndarray:
    """The first plane of ``image`` as (C, s, s) float32, a centred square of side a multiple of 2**depth."""
    from .prediction import resolve_channel_axis

    if image is None:
        raise InputError("Exporting needs a test image: give one of the images the model was trained on.")
    axis = resolve_channel_axis(model, tuple(np.shape(image)), channel_axis)
    _, plane = next(iter(iter_slices(image, axis)))
    if plane.shape[0] != model.in_channels:
        raise InputError(
            f"The test image has {plane.shape[0]} channel(s) but the model takes {model.in_channels}: give an image "
            "like the training images, or its channel axis."
        )
    m = 2**model.depth
    h, w = plane.shape[-2:]
    side = min(h, w, TEST_SIZE) // m * m
    if side < m:
        raise InputError(f"The test image is {h} x {w} pixels: it must be at least {m} x {m} for this model.")
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(plane[:, y0 : y0 + side, x0 : x0 + side], dtype=np.float32)
    if not np.isfinite(crop).all():
        raise InputError("The test image has NaN or inf pixels in its centre: give an image with finite values.")
    return crop


def _scale_range(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """bioimage.io ``scale_range`` over (y, x) of a (1, C, H, W) tensor, per channel, in float32."""
    lo = np.percentile(x, low, axis=(2, 3), keepdims=True)
    hi = np.percentile(x, high, axis=(2, 3), keepdims=True)
    return ((x - lo) / (hi - lo + EPS)).astype(np.float32)


def _script(model: UNet) -> torch.jit.ScriptModule:
    """The TorchScript weights: ``model``'s state dict in the standalone architecture the package ships."""
    arch = _unet_standalone.UNet(**model.config)
    arch.load_state_dict(model.state_dict(), strict=True)
    return torch.jit.script(arch.eval())


def _test_output(model: UNet, scripted: torch.jit.ScriptModule, test_input: np.ndarray, rule: dict) -> np.ndarray:
    """What the package computes from ``test_input``: preprocessing, the TorchScript, ``rdf.postprocessing``."""
    with torch.inference_mode():
        logits = scripted(torch.from_numpy(_scale_range(test_input, rule["low"], rule["high"])))
    if model.n_classes == 1:
        return (torch.sigmoid(logits) > DEFAULT_THRESHOLD).to(torch.uint8).numpy()
    return torch.softmax(logits, dim=1).numpy().astype(np.float32)


def _check_target(model: UNet, path: str | Path, overwrite: bool) -> Path:
    if not isinstance(model, UNet):
        raise InputError(f"export_model takes a UNet, got {type(model).__name__}.")
    require_spec()  # fails early, with the pip command to run, where bioimageio.spec is missing
    target = Path(path)
    if target.exists() and not overwrite:
        raise InputError(
            f"{target} already exists; choose another name, or replace it with --overwrite (overwrite=True in Python)."
        )
    if not target.parent.is_dir():
        raise InputError(f"The folder {target.parent} does not exist; create it or choose another path.")
    return target


def _write_files(
    folder: Path,
    model: UNet,
    scripted: torch.jit.ScriptModule,
    test_input: np.ndarray,
    test_output: np.ndarray,
    training: dict,
    readme: str,
) -> None:
    """Every file of the package but rdf.yaml (which records their sha256)."""
    import tifffile

    scripted.save(str(folder / "weights_torchscript.pt"))
    torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()}, folder / "weights_state_dict.pt")
    shutil.copyfile(Path(_unet_standalone.__file__), folder / ARCH_FILE)
    np.save(folder / "test_input.npy", test_input)
    np.save(folder / "test_output.npy", test_output)
    tifffile.imwrite(folder / "sample_input.tif", test_input)
    tifffile.imwrite(folder / "sample_output.tif", test_output)
    write_cover(test_input, test_output, folder / "cover.png")
    (folder / "training.json").write_text(json.dumps(training, indent=1))
    (folder / "README.md").write_text(readme)


def _publish(folder: Path, target: Path, overwrite: bool) -> None:
    """``folder`` at ``target`` in one step: zipped for a ``.zip`` target, else the folder itself."""
    if target.suffix.lower() == ".zip":
        with atomic_path(target, overwrite) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.iterdir()):
                z.write(f, f.name)
    else:
        with atomic_path(target, overwrite) as tmp:
            folder.rename(tmp)


def export_model(
    model: UNet,
    path: str | Path,
    image,
    *,
    channel_axis: int | None | str = "auto",
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package: a ``.zip`` file, or a folder for any other ``path``.

    ``image`` gives the package's test input (a centred crop of its first plane; use one of the training
    images). The package is validated with ``bioimageio.spec`` before it is written; an existing ``path`` is
    kept unless ``overwrite``. Returns ``path``.
    """
    target = _check_target(model, path, overwrite)
    model = model.eval().to("cpu")
    rule = dict(normalization_rule(model) or DEFAULT_NORMALIZATION)
    test_input = _test_plane(model, image, channel_axis)[None]
    name = name or "napari-unet U-Net"
    scripted = _script(model)
    test_output = _test_output(model, scripted, test_input, rule)
    meta = json.loads(json.dumps(model.meta, default=str))  # as the yaml and json files hold it
    tmpdir = Path(tempfile.mkdtemp(prefix=".napari-unet-export-", dir=target.parent))
    try:
        folder = tmpdir / "package"
        folder.mkdir()
        readme = documentation(model, rule, name)
        _write_files(folder, model, scripted, test_input, test_output, meta.get(TRAINING, {}), readme)
        rdf = model_rdf(folder, model, rule, meta, name=name, description=description, authors=authors)
        import yaml

        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
        summary = validate_package(folder)
        if summary["status"] not in ("passed", "valid-format"):
            raise InputError(f"The exported package did not pass bioimage.io validation: {summary['error']}")
        _publish(folder, target, overwrite)
    except OSError as e:
        raise InputError(f"Cannot write the package {target}: {e.strerror or e}; choose another path.") from e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return target
