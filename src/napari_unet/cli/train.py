"""``napari-unet train``: a model from images and their labels (scribbles or complete masks)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..labels import MASKS_SHORT, SCRIBBLES_SHORT
from ..training.config import default
from ._args import add_mode_arguments, add_runtime_arguments, channel_axis
from ._outputs import check_output_file, refuse_inputs
from ._pairs import LABELS_HELP, REVIEWED_HELP, label_paths, read_label_entries, reviewed_paths
from ._progress import run_training

POOR_MODEL_EXIT = 3  # the model was saved, but its verdict is 'poor' or 'useless' (training/verdict.py)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The train command and its arguments; every default shown is ``TrainConfig``'s."""
    t = subparsers.add_parser("train", help="train a model on images and their labels")
    t.add_argument("images", nargs="+", help="image files (TIFF, PNG/JPEG, .npy, zarr)")
    t.add_argument("--labels", nargs="+", required=True, help=LABELS_HELP)
    t.add_argument("--reviewed", nargs="+", default=None, help=REVIEWED_HELP)
    t.add_argument("-o", "--output", required=True, help="model file to write, e.g. model.pt")
    _add_label_arguments(t)
    _add_duration_arguments(t)
    t.add_argument("--from", dest="from_model", default=None, help="fine-tune this model file")
    _add_network_arguments(t)
    _add_volume_arguments(t)
    t.add_argument("--no-augment", action="store_true", help="turn off augmentation")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    add_runtime_arguments(t)
    return t


def _add_label_arguments(t: argparse.ArgumentParser) -> None:
    add_mode_arguments(
        t,
        f"scribbles: {SCRIBBLES_SHORT} (default: guessed from the shapes painted)",
        f"complete masks: {MASKS_SHORT}; object boundaries are learnt from instances",
    )
    t.add_argument(
        "--multiclass", action="store_true", help="the labels are class ids, not instances (implies --dense)"
    )
    t.add_argument(
        "--no-instances",
        dest="instances",
        action="store_const",
        const=False,
        default=None,
        help="train a binary model on instance masks (no boundary class; instances then by distance watershed)",
    )


def _add_duration_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument(
        "--time-limit",
        type=float,
        default=None,  # not default("time_limit"): alone, --epochs means no time limit
        help=f"at most this many seconds of wall time, preparation included (default {default('time_limit'):g}; "
        "training usually ends sooner, once the held-out Dice stops improving; no limit when only --epochs is given)",
    )
    t.add_argument(
        "--no-plateau", action="store_true", help="use the whole time limit even when training stops improving"
    )
    t.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"number of epochs of {default('steps_per_epoch')} steps; alone: train exactly this long; with "
        "--time-limit: stop at whichever comes first (default: none, the time limit decides)",
    )


def _add_network_arguments(t: argparse.ArgumentParser) -> None:
    seed = default("seed")
    t.add_argument(
        "--seed", type=int, default=seed, help=f"random seed of weights, patches and augmentation (default {seed})"
    )
    filters, depth, dropout = default("filters"), default("depth"), default("dropout")
    t.add_argument("--filters", type=int, default=filters, help=f"filters of the first level (default {filters})")
    t.add_argument("--depth", type=int, default=depth, help=f"number of poolings (default {depth})")
    t.add_argument(
        "--dropout",
        type=float,
        default=dropout,
        help=f"dropout probability in the two deepest levels of the network, against overfitting (default {dropout:g})",
    )
    patch, batch, lr = default("patch_size"), default("batch_size"), default("learning_rate")
    t.add_argument(
        "--patch-size", type=int, default=patch, help=f"side in pixels of the square training patches (default {patch})"
    )
    t.add_argument("--batch-size", type=int, default=batch, help=f"patches per training step (default {batch})")
    t.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default {lr:g})")


def _add_volume_arguments(t: argparse.ArgumentParser) -> None:
    zp = f"{default('volume_patch_depth')}x{default('volume_patch_size')}x{default('volume_patch_size')}"
    t.add_argument(
        "--volume",
        action="store_true",
        help="each image is a (Z, Y, X) volume: a 3D U-Net learns 3D objects from the painted planes or strokes "
        f"({zp} voxel patches; --depth and --patch-size are for 2D models)",
    )
    t.add_argument(
        "--anisotropy",
        type=float,
        default=None,
        help="Z spacing / XY spacing of the volumes (default: from the ImageJ TIFF's spacing, else 1)",
    )


def _volume_options(args: argparse.Namespace, base) -> dict:
    """``volume`` and ``anisotropy`` for the trainer: fine-tuning a volume model is a volume run."""
    from ..volume import anisotropy_from_tiff, is_volume_model

    volume = args.volume or (base is not None and is_volume_model(base))
    if not volume:
        return {}
    anisotropy = args.anisotropy
    if anisotropy is None and base is None:
        anisotropy = anisotropy_from_tiff(args.images[0])
    return {"volume": True, "anisotropy": anisotropy}


def _check_inputs(args: argparse.Namespace) -> Path:
    """Everything a user can get wrong, before torch is imported or an image read."""
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} already exists; choose another name or pass --overwrite to replace it.")
    reviewed = [r for r in reviewed_paths(args.reviewed, len(args.labels)) if r]
    refuse_inputs(out, [*args.images, *label_paths(args.labels), *reviewed], "-o")
    check_output_file(out)
    if len(args.images) != len(args.labels):
        raise InputError(
            f"{len(args.images)} images but {len(args.labels)} label files: give one --labels file per image."
        )
    return out


def run(args: argparse.Namespace) -> int:
    """Train, save the model (unless stopped before the first step), and say how it went."""
    out = _check_inputs(args)
    from ..checkpoint import load_model, save_model
    from ..io import read_image
    from ..training import Trainer, trust_warning
    from ..training.continuation import kept_words
    from ..training.events import PLATEAU

    images = [read_image(p) for p in args.images]
    labels = read_label_entries(args.labels, args.reviewed)
    base = load_model(args.from_model) if args.from_model else None
    time_limit = args.time_limit if args.time_limit is not None else (None if args.epochs else default("time_limit"))
    trainer = Trainer(
        images,
        labels,
        model=base,
        time_limit=time_limit,
        epochs=args.epochs,
        mode=args.mode or "auto",
        multiclass=args.multiclass,
        instances=args.instances,
        seed=args.seed,
        filters=args.filters,
        depth=args.depth,
        dropout=args.dropout,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        augment=not args.no_augment,
        channel_axis=channel_axis(args),
        device=args.device,
        precision=args.precision,
        until_plateau=not args.no_plateau,
        **_volume_options(args, base),
    )
    # --time-limit is the user's wall time: the clock started with the command (importing torch, reading)
    trainer.prepare_seconds = time.perf_counter() - getattr(args, "started", time.perf_counter())
    planes = f" on {trainer.planes_used} of {trainer.planes_total} planes" if trainer.planes_total > len(images) else ""
    what = "instance masks: background, interior, boundary" if trainer.boundaries else f"{trainer.n_classes} class(es)"
    print(
        f"{'mixed (per file)' if len(set(trainer.data.pair_modes)) > 1 else trainer.mode} labels, {what}, {trainer.n_annotated} annotated pixels{planes}, "
        f"{trainer.device.type} {trainer.precision}",
        file=sys.stderr,
    )
    done = run_training(trainer)
    skipped = getattr(done, "skipped", 0)
    if skipped:
        print(f"{skipped} step(s) skipped because the loss was NaN or inf; lower --lr if this recurs", file=sys.stderr)
    if base is not None:
        print(kept_words(done))
    if done.steps == 0 and base is None:
        print("stopped before the first training step; no model saved", file=sys.stderr)
        return 130
    save_model(done.model, out, overwrite=args.overwrite)
    dice = f", validation Dice {done.val_dice:.3f}" if done.val_dice is not None else ""
    how = "stopped" if done.stopped else "trained"
    why = ", then it stopped improving" if done.reason == PLATEAU else ""
    saved = f"the model of {args.from_model} saved to {out}" if done.kept_previous else f"model saved to {out}"
    print(f"{how} {done.steps} steps in {done.elapsed:.0f} s{dice}{why}; {saved}")
    if done.threads and trainer.device.type == "cpu":
        print(f"CPU threads: {done.threads}", file=sys.stderr)
    if not done.kept_previous and not done.usable:
        print(f"Warning: a {done.verdict} model: {done.verdict_reason} (exit code {POOR_MODEL_EXIT})", file=sys.stderr)
        return POOR_MODEL_EXIT
    warning = trust_warning(done)
    if warning:
        print(warning, file=sys.stderr)
    return 0
