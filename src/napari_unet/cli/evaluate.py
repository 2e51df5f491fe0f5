"""``napari-unet evaluate``: score predicted label images against ground truth, print the table, maybe a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..training.config import DEFAULT_IOU_THRESHOLD
from ._outputs import check_output_file, refuse_inputs


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The evaluate command and its arguments."""
    e = subparsers.add_parser(
        "evaluate", help="pixel Dice, IoU, precision, recall and object counts, F1, PQ against ground truth"
    )
    e.add_argument("--pred", nargs="+", required=True, help="predicted label images")
    e.add_argument("--truth", nargs="+", required=True, help="ground-truth label images, same order")
    e.add_argument("--csv", default=None, help="also write the table, mean row included, to this CSV file")
    e.add_argument("--multiclass", action="store_true", help="score each class id separately")
    e.add_argument("--per-slice", action="store_true", help="one row per plane of a stack")
    e.add_argument(
        "--volume",
        action="store_true",
        help="the stacks are (Z, Y, X) volumes: objects are 3D, matched once per volume (with --per-slice the "
        "rows of its planes follow)",
    )
    e.add_argument(
        "--iou-threshold",
        type=float,
        default=DEFAULT_IOU_THRESHOLD,
        help=f"objects match one to one at IoU >= this (default {DEFAULT_IOU_THRESHOLD:g}); a binary mask's objects "
        "are its connected components",
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing CSV file")
    return e


def run(args: argparse.Namespace) -> int:
    """Print the metrics table of each pair (and the mean); write it to --csv when asked."""
    from ..io import atomic_path, read_image
    from ..metrics import evaluate, format_table, write_table_csv

    if len(args.pred) != len(args.truth):
        raise InputError(f"{len(args.pred)} --pred files but {len(args.truth)} --truth files: give them in pairs.")
    if args.csv:
        csv_path = Path(args.csv)
        refuse_inputs(csv_path, [*args.pred, *args.truth], "--csv")
        if csv_path.exists() and not args.overwrite:
            raise InputError(f"{csv_path} already exists; choose another name or pass --overwrite to replace it.")
        check_output_file(csv_path, "--csv")
    preds = [np.asarray(read_image(p)) for p in args.pred]
    truths = [np.asarray(read_image(p)) for p in args.truth]
    names = [Path(p).name for p in args.pred]
    rows = evaluate(
        preds,
        truths,
        names,
        multiclass=args.multiclass,
        per_slice=args.per_slice,
        iou_threshold=args.iou_threshold,
        volume=args.volume,
    )
    print(format_table(rows))
    if args.csv:
        with atomic_path(args.csv, overwrite=True) as tmp:
            write_table_csv(rows, tmp)
        print(f"table written to {args.csv}")
    return 0
