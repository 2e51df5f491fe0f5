"""``napari-unet demo``: the bundled nuclei image trained on, predicted and scored (see ``napari_unet.demo``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..demo import OUTPUTS
from ..training.config import DEMO_TIME_LIMIT, default
from ._args import add_mode_arguments, add_runtime_arguments
from ._outputs import refuse_existing
from ._progress import run_training

_OLD_WORDS = {"strokes": "sparse", "masks": "dense"}
FOLDER = "napari-unet-demo"  # the default output folder, in the current directory


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The demo command and its arguments."""
    d = subparsers.add_parser(
        "demo",
        help="train on the bundled nuclei image, predict, score, write results",
        description="A first run with nothing to prepare: trains a model for --time-limit seconds on the left half "
        "of the bundled DSB2018 nuclei image (from scribbles drawn from its ground truth, or from the complete "
        "masks), predicts the right half, prints Dice / IoU / precision / recall and object counts against the "
        "ground truth, and writes model.pt, the labels, contours (.geojson, .csv), metrics.csv and an overlay "
        "PNG into the output folder.",
    )
    d.add_argument("-o", "--output", default=FOLDER, help=f"output folder (default ./{FOLDER})")
    seconds = DEMO_TIME_LIMIT
    d.add_argument("--time-limit", type=float, default=seconds, help=f"seconds of training (default {seconds:g})")
    mode = add_mode_arguments(
        d,
        "train from scribbles drawn from the ground truth on 0.2%% of the pixels (the default)",
        "train from the complete masks",
    )
    # the words of earlier versions (--labels strokes|masks), kept for scripts
    mode.add_argument("--labels", dest="mode", choices=list(_OLD_WORDS), help=argparse.SUPPRESS)
    d.set_defaults(mode="sparse")
    seed = default("seed")
    d.add_argument(
        "--seed", type=int, default=seed, help=f"random seed of the scribbles and the training (default {seed})"
    )
    d.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo in the folder")
    add_runtime_arguments(d)
    return d


def run(args: argparse.Namespace) -> int:
    """Refuse to replace an earlier demo's files unless --overwrite, run the demo, print its results."""
    from ..demo import run_demo

    refuse_existing([Path(args.output) / name for name in OUTPUTS], args.overwrite)
    result = run_demo(
        args.output,
        time_limit=args.time_limit,
        mode=_OLD_WORDS.get(args.mode, args.mode),
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        run_training=run_training,
        notify=lambda message: print(message, file=sys.stderr),
    )
    print(result.report())
    return 0
