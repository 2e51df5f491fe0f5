"""bioimage.io model packages: write one from a trained U-Net, and read back the ones napari-unet wrote.

A package is a folder or a zip with ``rdf.yaml`` and the files it names: TorchScript weights (run anywhere
PyTorch runs: deepImageJ, ilastik, QuPath, BiaPy, bioimageio.core), the state dict with the architecture as
one self-contained source file (``_unet_standalone.py``), a test input and output, a cover image, and the
training record. The preprocessing is the spec's ``scale_range`` (per-image percentiles, as napari-unet
normalizes), the postprocessing ``sigmoid`` + ``binarize`` (binary) or ``softmax`` (multi-class).

Writing needs the optional ``bioimageio.spec`` (every package is validated before it is written);
reading our own packages back (``load_model``) needs only torch and PyYAML. No Qt, no napari here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .images import iter_slices
from .io import atomic_path
from .meta import TRAINING, normalization_rule, total_steps
from .meta import history as meta_history
from .model import UNet
from .normalization import DEFAULT_NORMALIZATION

PACKAGE_FORMAT = "napari-unet-model"  # config.napari_unet.format in rdf.yaml: "exported by napari-unet"
PACKAGE_FORMAT_VERSION = 1
FORMAT_VERSION = "0.5.12"  # of the bioimage.io model spec (bioimageio.spec 0.5.12 and later read it)
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
EPS = 1e-6  # scale_range's epsilon: (x - p_low) / (p_high - p_low + eps)
TEST_SIZE = 256  # the test input is a centred square crop of at most this size
_ARCH_FILE = "unet_architecture.py"
_MAX_MEMBER = 1 << 31  # a weights file larger than 2 GiB in a package is not one of ours


def _spec():
    try:
        import bioimageio.spec as spec
    except ImportError as e:
        raise InputError(
            "Exporting to bioimage.io needs the bioimageio.spec package: pip install 'napari-unet-trainer[bioimageio]'."
        ) from e
    return spec


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _cover(image: np.ndarray, output: np.ndarray, path: Path) -> None:
    """Input (grey, percentile-stretched) beside the labels (colours): a 2:1 PNG, as bioimage.io likes."""
    import imageio.v3 as iio

    grey = image[0, 0] if image.shape[1] == 1 else image[0, :3].mean(axis=0)
    lo, hi = np.percentile(grey, [1, 99.8])
    grey = np.clip((grey - lo) / (hi - lo + EPS), 0, 1)
    labels = output[0, 0] if output.shape[1] == 1 else output[0].argmax(axis=0)
    palette = np.array([[0, 0, 0], [255, 200, 0], [0, 170, 255], [255, 60, 120], [90, 220, 90], [200, 120, 255]])
    left = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    right = palette[np.asarray(labels, int) % len(palette)].astype(np.uint8)
    right[labels > len(palette) - 1] = 255
    iio.imwrite(path, np.concatenate([left, right], axis=1))


def _documentation(model: UNet, rule: dict, name: str, channels: list[str]) -> str:
    history = meta_history(model)
    steps = total_steps(model)
    last = history[-1] if history else {}
    out = "binary: 1 = foreground" if model.n_classes == 1 else f"{model.n_classes} classes (channel 0 = background)"
    return f"""# {name}

A 2D U-Net (Ronneberger et al., 2015) trained with napari-unet from a few painted labels.

- Input `raw`: (batch, channel, y, x) float32, {model.in_channels} channel(s); any height and width (sizes that
  are multiples of {2**model.depth} need no padding).
- Output `labels`: {out}. {"The postprocessing turns the logits into a 0/1 mask (sigmoid, then > 0.5)." if model.n_classes == 1 else "The postprocessing gives per-class probabilities (softmax); the label of a pixel is the argmax over the channel axis."}
- Network: in_channels={model.in_channels}, n_classes={model.n_classes}, filters={model.filters},
  depth={model.depth}. Trained for {steps} steps{f", last validation Dice {last['val_dice']:.3f}" if isinstance(last.get("val_dice"), float) else ""};
  the full training record is in `training.json` and `config.napari_unet.meta`.
- Channels: {", ".join(channels)}.

## Preprocessing

napari-unet scales every channel of every 2D image by its own percentiles: (x - p{rule["low"]:g}) /
(p{rule["high"]:g} - p{rule["low"]:g}), without clipping. The package says this as the spec's `scale_range`
over the `y` and `x` axes. Differences with napari-unet's own prediction, all negligible on ordinary images:
the spec adds eps = {EPS:g} to the denominator; napari-unet takes the percentiles of a strided sample of
about 4 Mpx on larger planes, sets NaN/inf pixels to 0 and maps a constant channel to 0; and napari-unet
predicts large images in overlapping tiles (1024 px plus 64 px of overlap, blended), where a whole-image run
of the TorchScript sees the whole image at once.

## Validation

The network was validated during training on held-out blocks of the painted images (the Dice above, when
the labels allowed a split). Check it on images of your own with ground truth before you rely on it: napari-unet's
Metrics widget or `napari-unet evaluate` give Dice, IoU, precision and recall per image.

## Use

- With napari-unet (`pip install napari-unet-trainer`): `napari-unet predict this.zip images... -o out/`,
  or choose the zip in the Predict widget.
- Elsewhere: Fiji (deepImageJ), ilastik, QuPath, BiaPy or `bioimageio.core` run the TorchScript weights;
  in plain PyTorch, `torch.jit.load("weights_torchscript.pt")` maps normalized input to logits.
"""


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
    if not isinstance(model, UNet):
        raise InputError(f"export_model takes a UNet, got {type(model).__name__}.")
    _spec()  # fails early, with the pip command to run, where bioimageio.spec is missing
    target = Path(path)
    if target.exists() and not overwrite:
        raise InputError(
            f"{target} already exists; choose another name, or replace it with --overwrite (overwrite=True in Python)."
        )
    if not target.parent.is_dir():
        raise InputError(f"The folder {target.parent} does not exist; create it or choose another path.")
    model = model.eval().to("cpu")
    rule = dict(normalization_rule(model) or DEFAULT_NORMALIZATION)
    plane = _test_plane(model, image, channel_axis)
    name = name or "napari-unet U-Net"
    channels = [f"channel{i}" for i in range(model.in_channels)]
    out_channels = (
        ["foreground"]
        if model.n_classes == 1
        else ["background"] + [f"class{k}" for k in range(1, model.n_classes + 1)]
    )

    from . import _unet_standalone

    arch = _unet_standalone.UNet(**model.config)
    arch.load_state_dict(model.state_dict(), strict=True)
    scripted = torch.jit.script(arch.eval())

    test_input = plane[None]
    with torch.inference_mode():
        logits = scripted(torch.from_numpy(_scale_range(test_input, rule["low"], rule["high"])))
    if model.n_classes == 1:
        test_output = (torch.sigmoid(logits) > 0.5).to(torch.uint8).numpy()
        postprocessing = [
            {"id": "sigmoid"},
            {"id": "binarize", "kwargs": {"threshold": 0.5}},
            {"id": "ensure_dtype", "kwargs": {"dtype": "uint8"}},
        ]
        out_data = {"type": "uint8", "values": [0, 1]}
    else:
        test_output = torch.softmax(logits, dim=1).numpy().astype(np.float32)
        postprocessing = [{"id": "softmax", "kwargs": {"axis": "channel"}}]
        out_data = {"type": "float32", "range": [0.0, 1.0]}

    meta = json.loads(json.dumps(model.meta, default=str))
    m = 2**model.depth
    tmpdir = Path(tempfile.mkdtemp(prefix=".napari-unet-export-", dir=target.parent))
    try:
        folder = tmpdir / "package"
        folder.mkdir()
        scripted.save(str(folder / "weights_torchscript.pt"))
        torch.save(
            {k: v.detach().contiguous() for k, v in model.state_dict().items()}, folder / "weights_state_dict.pt"
        )
        shutil.copyfile(Path(_unet_standalone.__file__), folder / _ARCH_FILE)
        np.save(folder / "test_input.npy", test_input)
        np.save(folder / "test_output.npy", test_output)
        import tifffile

        tifffile.imwrite(folder / "sample_input.tif", test_input)
        tifffile.imwrite(folder / "sample_output.tif", test_output)
        _cover(test_input, test_output, folder / "cover.png")
        (folder / "training.json").write_text(json.dumps(meta.get(TRAINING, {}), indent=1))
        (folder / "README.md").write_text(_documentation(model, rule, name, channels))
        torch_version = torch.__version__.split("+")[0]
        rdf = {
            "type": "model",
            "format_version": FORMAT_VERSION,
            "name": name,
            "description": description
            or f"2D U-Net for {'binary' if model.n_classes == 1 else f'{model.n_classes}-class'} segmentation, "
            "trained in napari from painted labels with napari-unet.",
            "authors": [{"name": a} for a in (authors or ["napari-unet user"])],
            "cite": [
                {
                    "text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical Image "
                    "Segmentation. MICCAI 2015.",
                    "doi": "10.1007/978-3-319-24574-4_28",
                }
            ],
            "license": "CC-BY-4.0",
            "tags": ["napari-unet-trainer", "unet", "segmentation", "2d", "pytorch", "fluorescence-light-microscopy"],
            "documentation": {"source": "README.md", "sha256": _sha256(folder / "README.md")},
            "covers": [{"source": "cover.png", "sha256": _sha256(folder / "cover.png")}],
            "attachments": [{"source": "training.json", "sha256": _sha256(folder / "training.json")}],
            "inputs": [
                {
                    "id": "raw",
                    "description": "image, one 2D plane; normalized by per-channel percentiles",
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": channels},
                        {"type": "space", "id": "y", "size": {"min": m, "step": m}},
                        {"type": "space", "id": "x", "size": {"min": m, "step": m}},
                    ],
                    "data": {"type": "float32"},
                    "test_tensor": {"source": "test_input.npy", "sha256": _sha256(folder / "test_input.npy")},
                    "sample_tensor": {"source": "sample_input.tif", "sha256": _sha256(folder / "sample_input.tif")},
                    "preprocessing": [
                        {
                            "id": "scale_range",
                            "kwargs": {
                                "axes": ["y", "x"],
                                "min_percentile": float(rule["low"]),
                                "max_percentile": float(rule["high"]),
                                "eps": EPS,
                            },
                        }
                    ],
                }
            ],
            "outputs": [
                {
                    "id": "labels",
                    "description": "0/1 foreground mask"
                    if model.n_classes == 1
                    else "class probabilities, background first; the label is the argmax over channels",
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": out_channels},
                        {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
                        {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}},
                    ],
                    "data": out_data,
                    "test_tensor": {"source": "test_output.npy", "sha256": _sha256(folder / "test_output.npy")},
                    "sample_tensor": {"source": "sample_output.tif", "sha256": _sha256(folder / "sample_output.tif")},
                    "postprocessing": postprocessing,
                }
            ],
            "weights": {
                "torchscript": {
                    "source": "weights_torchscript.pt",
                    "sha256": _sha256(folder / "weights_torchscript.pt"),
                    "pytorch_version": torch_version,
                    "parent": "pytorch_state_dict",
                },
                "pytorch_state_dict": {
                    "source": "weights_state_dict.pt",
                    "sha256": _sha256(folder / "weights_state_dict.pt"),
                    "pytorch_version": torch_version,
                    "architecture": {
                        "source": _ARCH_FILE,
                        "sha256": _sha256(folder / _ARCH_FILE),
                        "callable": "UNet",
                        "kwargs": dict(model.config),
                    },
                },
            },
            "config": {
                # thresholded outputs: a pixel at p = 0.5 may flip on other hardware; allow 0.1% of them
                "bioimageio": {
                    "reproducibility_tolerance": [
                        {
                            "absolute_tolerance": 1e-4,
                            "relative_tolerance": 1e-3,
                            "mismatched_elements_per_million": 1000,
                        }
                    ]
                },
                "napari_unet": {
                    "format": PACKAGE_FORMAT,
                    "format_version": PACKAGE_FORMAT_VERSION,
                    "architecture": dict(model.config),
                    "meta": meta,
                    # napari-unet's own tiling when it predicts: tiles of this size with this much overlap
                    "tile_size": 1088,
                    "tile_overlap": 64,
                },
            },
        }
        import yaml

        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
        summary = validate_package(folder)
        if summary["status"] not in ("passed", "valid-format"):
            raise InputError(f"The exported package did not pass bioimage.io validation: {summary['error']}")
        if target.suffix.lower() == ".zip":
            with atomic_path(target, overwrite) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for f in sorted(folder.iterdir()):
                    z.write(f, f.name)
        else:
            with atomic_path(target, overwrite) as tmp:
                folder.rename(tmp)
    except OSError as e:
        raise InputError(f"Cannot write the package {target}: {e.strerror or e}; choose another path.") from e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return target


def validate_package(path: str | Path) -> dict:
    """``bioimageio.spec``'s format validation of a package (offline): {"status": ..., "error": first error}."""
    spec = _spec()
    p = Path(path)
    source = p / _rdf_name(p) if p.is_dir() else p
    descr = spec.load_description(source, perform_io_checks=True)
    summary = descr.validation_summary
    errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in summary.details for e in d.errors]
    return {"status": summary.status, "error": "; ".join(errors[:5]), "description": descr}


def _rdf_name(folder: Path) -> str:
    for n in RDF_NAMES:
        if (folder / n).is_file():
            return n
    return RDF_NAMES[0]


# ------------------------------------------------------------------------------------ reading our packages


def is_package(path: str | Path) -> bool:
    """A bioimage.io package: a folder with rdf.yaml / bioimageio.yaml, or a zip holding one at its top."""
    p = Path(path)
    if p.is_dir():
        return any((p / n).is_file() for n in RDF_NAMES)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as z:
            return any(n in RDF_NAMES for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_package(path: str | Path) -> tuple[dict, dict, dict]:
    """(architecture, meta, state dict) of a package napari-unet exported; anything else raises ``InputError``."""
    p = Path(path)
    try:
        with contextlib.ExitStack() as stack:
            return _read_package(p, stack)
    except InputError:
        raise
    except (KeyError, TypeError, AttributeError, StopIteration, ValueError, OSError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"{p}: the napari-unet bioimage.io package is incomplete or damaged ({reason}).") from e
    except Exception as e:  # torch.load's unpickling refusals, YAML errors and the like
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"{p}: cannot read this bioimage.io package ({reason}).") from e


def _read_package(p: Path, stack: contextlib.ExitStack) -> tuple[dict, dict, dict]:
    import yaml

    if p.is_dir():
        rdf_text = (p / _rdf_name(p)).read_text()

        def read(name: str) -> bytes:
            f = (p / name).resolve()
            if p.resolve() not in f.parents:
                raise InputError(f"{p}: the package names a file outside itself ({name}).")
            return f.read_bytes()
    else:
        z = stack.enter_context(zipfile.ZipFile(p))
        rdf_text = z.read(next(n for n in RDF_NAMES if n in z.namelist())).decode()

        def read(name: str) -> bytes:
            info = z.getinfo(name)
            if info.file_size > _MAX_MEMBER:
                raise InputError(f"{p}: {name} is too large for a napari-unet model.")
            return z.read(info)

    rdf = yaml.safe_load(rdf_text)
    ours = ((rdf or {}).get("config") or {}).get("napari_unet") if isinstance(rdf, dict) else None
    if not isinstance(ours, dict) or ours.get("format") != PACKAGE_FORMAT:
        raise InputError(
            f"{p} is a bioimage.io package that napari-unet did not export: napari-unet runs only its own "
            "packages; run this one with deepImageJ, ilastik or bioimageio.core."
        )
    version = ours.get("format_version")
    if not isinstance(version, int) or version > PACKAGE_FORMAT_VERSION:
        raise InputError(f"{p} was exported by a newer napari-unet (format {version}); upgrade napari-unet.")
    source = rdf["weights"]["pytorch_state_dict"]["source"]
    state = torch.load(io.BytesIO(read(str(source))), map_location="cpu", weights_only=True)
    return ours["architecture"], ours["meta"], state
