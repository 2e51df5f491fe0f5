"""The ``rdf.yaml`` of a napari-unet bioimage.io package, and the README and cover image it names.

The rdf (bioimage.io's "resource description") says what the package's files are: the ``raw`` input with the
spec's ``scale_range`` preprocessing (per-image percentiles, as napari-unet normalizes), the ``labels`` output
with ``sigmoid`` + ``binarize`` (binary) or ``softmax`` (multi-class) postprocessing, the TorchScript and
state-dict weights, and in ``config.napari_unet`` what napari-unet needs to load the package back
(``packages.read_package``). Every builder here is given the folder that already holds the files, because
the rdf records each file's sha256. Key order matters: it is the order of the yaml, kept stable on purpose.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .meta import last_val_dice, total_steps
from .model import UNet
from .normalization import DEFAULT_NORMALIZATION
from .packages import PACKAGE_FORMAT, PACKAGE_FORMAT_VERSION
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE
from .training.config import DEFAULT_THRESHOLD

FORMAT_VERSION = "0.5.12"  # of the bioimage.io model spec (bioimageio.spec 0.5.12 and later read it)
EPS = 1e-6  # scale_range's epsilon: (x - p_low) / (p_high - p_low + eps)
ARCH_FILE = "unet_architecture.py"  # the package's name for _unet_standalone.py
TAGS = ["napari-unet-trainer", "unet", "segmentation", "2d", "pytorch", "fluorescence-light-microscopy"]
UNET_CITATION = {
    "text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def _file(folder: Path, name: str) -> dict:
    """A file reference of the spec: the file's name in the package and its sha256."""
    h = hashlib.sha256()
    with open(folder / name, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"source": name, "sha256": h.hexdigest()}


def input_channel_names(model: UNet) -> list[str]:
    return [f"channel{i}" for i in range(model.in_channels)]


def output_channel_names(model: UNet) -> list[str]:
    if model.n_classes == 1:
        return ["foreground"]
    return ["background"] + [f"class{k}" for k in range(1, model.n_classes + 1)]


def model_rdf(
    folder: Path, model: UNet, rule: dict, meta: dict, *, name: str, description: str | None, authors: list[str] | None
) -> dict:
    """The whole rdf of the package in ``folder``; ``meta`` is ``model.meta`` as plain JSON."""
    kind = "binary" if model.n_classes == 1 else f"{model.n_classes}-class"
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": description
        or f"2D U-Net for {kind} segmentation, trained in napari from painted labels with napari-unet.",
        "authors": [{"name": a} for a in (authors or ["napari-unet user"])],
        "cite": [dict(UNET_CITATION)],
        "license": "CC-BY-4.0",
        "tags": list(TAGS),
        "documentation": _file(folder, "README.md"),
        "covers": [_file(folder, "cover.png")],
        "attachments": [_file(folder, "training.json")],
        "inputs": [_input(folder, model, rule)],
        "outputs": [_output(folder, model)],
        "weights": _weights(folder, model),
        "config": _config(model, meta),
    }


def _input(folder: Path, model: UNet, rule: dict) -> dict:
    """``raw``: one 2D plane of any size that is a multiple of 2**depth, normalized with ``rule``'s percentiles."""
    m = 2**model.depth
    return {
        "id": "raw",
        "description": "image, one 2D plane; normalized by per-channel percentiles",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": input_channel_names(model)},
            {"type": "space", "id": "y", "size": {"min": m, "step": m}},
            {"type": "space", "id": "x", "size": {"min": m, "step": m}},
        ],
        "data": {"type": "float32"},
        "test_tensor": _file(folder, "test_input.npy"),
        "sample_tensor": _file(folder, "sample_input.tif"),
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


def _output(folder: Path, model: UNet) -> dict:
    """``labels``, shaped like the input: a 0/1 mask (binary) or class probabilities (multi-class)."""
    binary = model.n_classes == 1
    return {
        "id": "labels",
        "description": "0/1 foreground mask"
        if binary
        else "class probabilities, background first; the label is the argmax over channels",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": output_channel_names(model)},
            {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
            {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}},
        ],
        "data": {"type": "uint8", "values": [0, 1]} if binary else {"type": "float32", "range": [0.0, 1.0]},
        "test_tensor": _file(folder, "test_output.npy"),
        "sample_tensor": _file(folder, "sample_output.tif"),
        "postprocessing": postprocessing(model.n_classes),
    }


def postprocessing(n_classes: int) -> list[dict]:
    """The spec's steps from logits to the output (``export`` computes the test output the same way)."""
    if n_classes == 1:
        return [
            {"id": "sigmoid"},
            {"id": "binarize", "kwargs": {"threshold": DEFAULT_THRESHOLD}},
            {"id": "ensure_dtype", "kwargs": {"dtype": "uint8"}},
        ]
    return [{"id": "softmax", "kwargs": {"axis": "channel"}}]


def _weights(folder: Path, model: UNet) -> dict:
    """TorchScript (runs anywhere PyTorch runs), scripted from the state dict with its standalone architecture."""
    torch_version = torch.__version__.split("+")[0]
    return {
        "torchscript": {
            **_file(folder, "weights_torchscript.pt"),
            "pytorch_version": torch_version,
            "parent": "pytorch_state_dict",
        },
        "pytorch_state_dict": {
            **_file(folder, "weights_state_dict.pt"),
            "pytorch_version": torch_version,
            "architecture": {**_file(folder, ARCH_FILE), "callable": "UNet", "kwargs": dict(model.config)},
        },
    }


def _config(model: UNet, meta: dict) -> dict:
    """bioimage.io's test tolerance, and napari-unet's own block: what ``read_package`` loads the model from."""
    return {
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
            "tile_size": DEFAULT_TILE,
            "tile_overlap": DEFAULT_OVERLAP,
        },
    }


def write_cover(image: np.ndarray, output: np.ndarray, path: Path) -> None:
    """Input (grey, percentile-stretched) beside the labels (colours): a 2:1 PNG, as bioimage.io likes."""
    import imageio.v3 as iio

    grey = image[0, 0] if image.shape[1] == 1 else image[0, :3].mean(axis=0)
    lo, hi = np.percentile(grey, [DEFAULT_NORMALIZATION["low"], DEFAULT_NORMALIZATION["high"]])
    grey = np.clip((grey - lo) / (hi - lo + EPS), 0, 1)
    labels = output[0, 0] if output.shape[1] == 1 else output[0].argmax(axis=0)
    palette = np.array([[0, 0, 0], [255, 200, 0], [0, 170, 255], [255, 60, 120], [90, 220, 90], [200, 120, 255]])
    left = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    right = palette[np.asarray(labels, int) % len(palette)].astype(np.uint8)
    right[labels > len(palette) - 1] = 255
    iio.imwrite(path, np.concatenate([left, right], axis=1))


def documentation(model: UNet, rule: dict, name: str) -> str:
    """The package's README.md: what goes in and out, how it was trained, how to run it elsewhere."""
    steps = total_steps(model)
    dice = last_val_dice(model)
    out = "binary: 1 = foreground" if model.n_classes == 1 else f"{model.n_classes} classes (channel 0 = background)"
    post = (
        "The postprocessing turns the logits into a 0/1 mask (sigmoid, then > 0.5)."
        if model.n_classes == 1
        else "The postprocessing gives per-class probabilities (softmax); the label of a pixel is the argmax over "
        "the channel axis."
    )
    trained = f", last validation Dice {dice:.3f}" if isinstance(dice, float) else ""
    return f"""# {name}

A 2D U-Net (Ronneberger et al., 2015) trained with napari-unet from a few painted labels.

- Input `raw`: (batch, channel, y, x) float32, {model.in_channels} channel(s); any height and width (sizes that
  are multiples of {2**model.depth} need no padding).
- Output `labels`: {out}. {post}
- Network: in_channels={model.in_channels}, n_classes={model.n_classes}, filters={model.filters},
  depth={model.depth}. Trained for {steps} steps{trained};
  the full training record is in `training.json` and `config.napari_unet.meta`.
- Channels: {", ".join(input_channel_names(model))}.

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
