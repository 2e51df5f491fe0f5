"""``napari-unet export``: a trained model as a validated bioimage.io package for other tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._args import channel_axis


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The export command and its arguments."""
    x = subparsers.add_parser(
        "export", help="write a model as a bioimage.io package (Fiji/deepImageJ, ilastik, QuPath, BiaPy)"
    )
    x.add_argument("model", help="model file written by napari-unet train")
    x.add_argument(
        "-o", "--output", required=True, help="package to write: a .zip file, or a folder for any other name"
    )
    x.add_argument(
        "--image", required=True, help="an image the model was trained on: the package's test input is cut from it"
    )
    x.add_argument("--name", default=None, help="the model's name in the package (default 'napari-unet U-Net')")
    x.add_argument("--author", action="append", default=None, help="an author's name (repeat for several)")
    x.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="axis of the channels in a multi-channel --image (default: detect)",
    )
    x.add_argument("--overwrite", action="store_true", help="replace an existing package")
    return x


def run(args: argparse.Namespace) -> int:
    """Export, validate, and say where the package is."""
    from ..checkpoint import load_model
    from ..export import export_model
    from ..io import read_image

    model = load_model(args.model)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} already exists; choose another name or pass --overwrite.")
    image = read_image(args.image)
    export_model(
        model,
        out,
        image,
        channel_axis=channel_axis(args),
        name=args.name,
        authors=args.author,
        overwrite=args.overwrite,
    )
    print(f"wrote {out} (bioimage.io model package, validated)")
    return 0
