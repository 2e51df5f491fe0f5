"""``napari-unet predict``: label images with a trained model, on this machine or on a dask cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..training.config import DEFAULT_STITCH_THRESHOLD, DEFAULT_THRESHOLD
from ._args import add_runtime_arguments, channel_axis
from ._outputs import refuse_existing, refuse_inputs
from ._progress import refresh_interval


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The predict command and its arguments."""
    p = subparsers.add_parser("predict", help="segment images with a trained model")
    p.add_argument(
        "model", help="model file written by napari-unet train, or a bioimage.io package (zip or folder) it exported"
    )
    p.add_argument("images", nargs="+", help="image files (2D or Z/T stacks)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--instances",
        action="store_true",
        help="split touching objects into instances; ids are unique across the planes of a stack",
    )
    p.add_argument(
        "--stitch-threshold",
        type=float,
        default=DEFAULT_STITCH_THRESHOLD,
        metavar="IOU",
        help="with --instances on a Z stack: an object takes the id of the object it overlaps most in the "
        "previous plane when their IoU is at least this (e.g. 0.3), so it keeps one id through Z "
        "(default 0: off)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="average the probabilities over the 8 flips and quarter turns of each image (2D models): steadier "
        "object outlines, 8x the prediction time",
    )
    p.add_argument(
        "--contours", choices=["csv", "geojson"], default=None, help="also write object outlines as CSV or GeoJSON"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"foreground probability above which a pixel is foreground, binary models (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="largest tile side in pixels (default: the fastest for this machine, measured once and cached)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask.distributed scheduler (e.g. tcp://host:8786) to predict zarr inputs on a cluster; "
        "default: blockwise on this machine. Outputs must be on storage the workers share.",
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write <image>_uncertainty.tif (float32, 0 = sure .. 1 = unsure): where to correct or paint next",
    )
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <image>_probabilities.tif (float32 per class; binary models: the foreground's)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_runtime_arguments(p)
    return p


def _dask_client(address: str | None):
    """A dask.distributed client for ``--scheduler``, or None for the local threaded scheduler."""
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError as e:
        raise InputError("--scheduler needs dask.distributed: pip install 'napari-unet-trainer[distributed]'.") from e
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise InputError(f"Cannot reach the dask scheduler at {address} ({e}); check the address.") from e


def _check_options(args: argparse.Namespace) -> dict:
    """The numbers a user can get wrong, as ``predict``'s keywords."""
    if not 0 <= args.threshold <= 1:
        raise InputError(f"--threshold must be a probability between 0 and 1, got {args.threshold}.")
    if not 0 <= args.stitch_threshold <= 1:
        raise InputError(f"--stitch-threshold must be an IoU between 0 and 1, got {args.stitch_threshold}.")
    if args.stitch_threshold and not args.instances:
        raise InputError("--stitch-threshold links object ids through Z: add --instances.")
    return dict(
        instances=args.instances,
        stitch_threshold=args.stitch_threshold,
        threshold=args.threshold,
        tile_size=args.tile_size,
        device=args.device,
        precision=args.precision,
        channel_axis=channel_axis(args),
        **({"tta": True} if getattr(args, "tta", False) else {}),
    )


def _check_outputs(args: argparse.Namespace, stems: list[str], suffixes: list[str]) -> Path:
    """All outputs up front: never over an input or an existing file, never stopping halfway through a batch."""
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} exists and is not a folder; choose another output folder with -o.")
    for stem, suffix in zip(stems, suffixes, strict=True):
        outputs = [outdir / f"{stem}_labels{suffix}"] + (
            [outdir / f"{stem}_contours.{args.contours}"] if args.contours else []
        )
        outputs += [outdir / f"{stem}_{kind}.tif" for kind in _maps(args)]
        for target in outputs:
            refuse_inputs(target, [*args.images, args.model], "The output")
        refuse_existing(outputs, args.overwrite)
    return outdir


def _maps(args: argparse.Namespace) -> list[str]:
    """The float maps asked for beside the labels: 'uncertainty', 'probabilities'."""
    return [kind for kind in ("uncertainty", "probabilities") if getattr(args, kind, False)]


def _say_if_poor(model) -> None:
    """A model judged poor or useless when it was trained: said plainly, once (not as a Python warning)."""
    import warnings

    from ..training.verdict import PoorModelWarning, model_warning

    text = model_warning(model)
    if text is not None:
        print(f"Warning: {text}", file=sys.stderr)
        warnings.simplefilter("ignore", PoorModelWarning)


def _say_threads(args: argparse.Namespace) -> None:
    """How many CPU threads the tiles ran on, and why (nothing where too few tiles ran to choose)."""
    from ..runtime import pick_device
    from ..threads import last_choice

    choice = last_choice("predict")
    if choice is not None and pick_device(args.device).type == "cpu":
        print(f"CPU threads: {choice.summary()}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Predict every image into the output folder (labels, and contours if asked), one progress bar of planes."""
    from tqdm import tqdm

    from ..checkpoint import load_model
    from ..contours import label_contours, write_contours
    from ..io import check_writable, read_image
    from ..prediction import output_shape
    from ..runtime import pick_device, pick_precision
    from ..writers import labels_suffix, write_map, write_prediction, write_prediction_zarr

    # every input is checked before anything is created: a mistake leaves no empty output folder behind
    options = _check_options(args)
    model = load_model(args.model)
    _say_if_poor(model)
    pick_precision(pick_device(args.device), args.precision)  # a CPU without bf16: one line, before any output
    stems = [Path(p).name.split(".")[0] for p in args.images]
    if len(set(stems)) != len(stems):
        raise InputError(
            "Two input images have the same name; outputs would collide. Rename one or predict them separately."
        )
    planes = []  # per image, for a progress bar that counts planes (a stack is not one step)
    for path in args.images:
        shape = output_shape(model, read_image(path), options["channel_axis"])  # lazy for TIFF, .npy, zarr
        planes.append(int(np.prod(shape[:-2], dtype=np.int64)))
    suffixes = [labels_suffix(p) for p in args.images]
    outdir = _check_outputs(args, stems, suffixes)
    client = _dask_client(args.scheduler)
    outdir = check_writable(outdir)
    bar = tqdm(total=sum(planes), desc="predicting", unit="plane", mininterval=refresh_interval())
    try:
        for path, stem, suffix, n in zip(args.images, stems, suffixes, planes, strict=True):
            image = read_image(path)
            target = outdir / f"{stem}_labels{suffix}"
            if suffix == ".zarr":
                write_prediction_zarr(model, image, target, args.overwrite, options, client)
                bar.update(n)
            else:
                write_prediction(model, image, target, args.overwrite, options, on_plane=lambda: bar.update(1))
            if args.contours:
                contour_path = outdir / f"{stem}_contours.{args.contours}"
                write_contours(label_contours(np.asarray(read_image(target))), contour_path)
            bar.write(f"{path} -> {target}", file=sys.stdout)
            for kind in _maps(args):
                write_map(model, image, outdir / f"{stem}_{kind}.tif", args.overwrite, kind, options)
                bar.write(f"{path} -> {outdir / f'{stem}_{kind}.tif'}", file=sys.stdout)
    finally:
        bar.close()
    _say_threads(args)
    return 0
