"""The ``napari-unet`` command: train, predict, evaluate, export, demo. Bad input exits non-zero with one line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="bf16 on CPUs/GPUs that compute it natively, else fp32 (default: auto)",
    )
    p.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="axis of the channels in multi-channel images (default: detect RGB-like last axes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="napari-unet", description="Train and run U-Nets for segmentation, headless.")
    parser.add_argument("--version", action="version", version=f"napari-unet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on images and their labels")
    t.add_argument("images", nargs="+", help="image files (TIFF, PNG/JPEG, .npy, zarr)")
    t.add_argument("--labels", nargs="+", required=True, help="one label image per image, same order")
    t.add_argument("-o", "--output", required=True, help="model file to write, e.g. model.pt")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument(
        "--sparse",
        dest="mode",
        action="store_const",
        const="sparse",
        help="scribbles: 0 = not annotated, 1 = background, 2.. = classes (default: guessed from the shapes painted)",
    )
    mode.add_argument(
        "--dense",
        dest="mode",
        action="store_const",
        const="dense",
        help="complete masks: 0 = background, > 0 = foreground; one id per object: instances (boundaries learnt)",
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
    t.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="at most this many seconds of wall time, preparation included (default 120; training usually ends "
        "sooner, once the held-out Dice stops improving; no limit when only --epochs is given)",
    )
    t.add_argument(
        "--no-plateau", action="store_true", help="use the whole time limit even when training stops improving"
    )
    t.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="number of epochs of 20 steps; alone: train exactly this long; with --time-limit: stop at whichever "
        "comes first (default: none, the time limit decides)",
    )
    t.add_argument("--from", dest="from_model", default=None, help="fine-tune this model file")
    t.add_argument("--seed", type=int, default=0, help="random seed of weights, patches and augmentation (default 0)")
    t.add_argument("--filters", type=int, default=16, help="filters of the first level (default 16)")
    t.add_argument("--depth", type=int, default=4, help="number of poolings (default 4)")
    t.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout probability in the two deepest levels of the network, against overfitting (default 0)",
    )
    t.add_argument(
        "--patch-size", type=int, default=128, help="side in pixels of the square training patches (default 128)"
    )
    t.add_argument("--batch-size", type=int, default=8, help="patches per training step (default 8)")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    t.add_argument("--no-augment", action="store_true", help="turn off augmentation")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    _add_runtime(t)

    p = sub.add_parser("predict", help="segment images with a trained model")
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
        default=0.0,
        metavar="IOU",
        help="with --instances on a Z stack: an object takes the id of the object it overlaps most in the "
        "previous plane when their IoU is at least this (e.g. 0.3), so it keeps one id through Z "
        "(default 0: off)",
    )
    p.add_argument(
        "--contours", choices=["csv", "geojson"], default=None, help="also write object outlines as CSV or GeoJSON"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="foreground probability above which a pixel is foreground, binary models (default 0.5)",
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
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    _add_runtime(p)

    e = sub.add_parser(
        "evaluate", help="pixel Dice, IoU, precision, recall and object counts, F1, PQ against ground truth"
    )
    e.add_argument("--pred", nargs="+", required=True, help="predicted label images")
    e.add_argument("--truth", nargs="+", required=True, help="ground-truth label images, same order")
    e.add_argument("--csv", default=None, help="also write the table, mean row included, to this CSV file")
    e.add_argument("--multiclass", action="store_true", help="score each class id separately")
    e.add_argument("--per-slice", action="store_true", help="one row per plane of a stack")
    e.add_argument(
        "--iou-threshold",
        type=float,
        default=0.5,
        help="objects match one to one at IoU >= this (default 0.5); a binary mask's objects are its "
        "connected components",
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing CSV file")

    x = sub.add_parser(
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

    d = sub.add_parser(
        "demo",
        help="train on the bundled nuclei image, predict, score, write results",
        description="A first run with nothing to prepare: trains a model for --time-limit seconds on the left half "
        "of the bundled DSB2018 nuclei image (from scribbles drawn from its ground truth, or from the complete "
        "masks), predicts the right half, prints Dice / IoU / precision / recall and object counts against the "
        "ground truth, and writes model.pt, the labels, contours (.geojson, .csv), metrics.csv and an overlay "
        "PNG into the output folder.",
    )
    d.add_argument("-o", "--output", default="napari-unet-demo", help="output folder (default ./napari-unet-demo)")
    d.add_argument("--time-limit", type=float, default=60.0, help="seconds of training (default 60)")
    d.add_argument(
        "--labels",
        choices=["strokes", "masks"],
        default="strokes",
        help="train from scribbles on 0.2%% of the pixels (default) or from the complete masks",
    )
    d.add_argument("--seed", type=int, default=0, help="random seed of the scribbles and the training (default 0)")
    d.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo in the folder")
    _add_runtime(d)
    return parser


def _version() -> str:
    from ._version import __version__

    return __version__


# ---------------------------------------------------------------------------------------------- train


def _same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name the same file (also through links, or before it exists)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _refuse_inputs(out: Path, inputs: Sequence[str | Path], flag: str) -> None:
    """An output must never replace one of the command's own inputs."""
    for src in inputs:
        if _same_file(out, src):
            raise InputError(
                f"{flag} {out} is also an input ({src}): writing there would destroy it; choose another name."
            )


def _check_output_file(out: Path, flag: str = "-o") -> None:
    """Before a long run: the output can be created where asked (a folder exists, is writable, out is no folder)."""
    if out.is_dir():
        raise InputError(f"{flag} {out} is a folder: give a file name, e.g. {out / 'model.pt'}.")
    parent = out.parent
    if not parent.is_dir():
        raise InputError(f"The folder {parent} does not exist; create it or choose another {flag}.")
    probe = parent / f".{out.name}.{os.getpid()}.probe"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise InputError(f"Cannot write in {parent} ({e.strerror or e}); choose another {flag}.") from e


def _run_training(trainer, desc: str = "training") -> object:
    """Iterate the trainer with a progress bar; the first Ctrl-C stops after the current step."""
    from tqdm import tqdm

    from .training import Done, Epoch, Prepared, Preparing

    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        trainer.stop()
        print("\nstopping after this step and saving (Ctrl-C again to abort)", file=sys.stderr)
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    # a terminal redraws in place; a log (CI, a pipe) gets a line every 10 s instead of one per step
    bar = tqdm(
        total=100,
        desc=desc,
        unit="%",
        bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
    )
    done = None
    try:
        for event in trainer.run():
            if isinstance(event, Done):
                done = event
                break
            if isinstance(event, Preparing):
                bar.set_postfix({"pseudo-labels": f"{event.done}/{event.total} tiles"}, refresh=False)
                bar.update(0)
                continue
            if isinstance(event, Prepared):
                continue
            post = {"step": event.step, "loss": f"{event.loss:.3f}"}
            if isinstance(event, Epoch) and event.val_dice is not None:
                post["val_dice"] = f"{event.val_dice:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.update(round(100 * event.fraction, 1) - bar.n)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    return done


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import load_model, save_model
    from .io import read_image
    from .training import TrainConfig, Trainer, trust_warning

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} already exists; choose another name or pass --overwrite to replace it.")
    _refuse_inputs(out, [*args.images, *args.labels], "-o")
    _check_output_file(out)
    if len(args.images) != len(args.labels):
        raise InputError(
            f"{len(args.images)} images but {len(args.labels)} label files: give one --labels file per image."
        )
    images = [read_image(p) for p in args.images]
    labels = [np.asarray(read_image(p)) for p in args.labels]
    base = load_model(args.from_model) if args.from_model else None
    time_limit = args.time_limit if args.time_limit is not None else (None if args.epochs else TrainConfig.time_limit)
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
        channel_axis=args.channel_axis if args.channel_axis is not None else "auto",
        device=args.device,
        precision=args.precision,
        until_plateau=not args.no_plateau,
    )
    # --time-limit is the user's wall time: the clock started with the command (importing torch, reading)
    trainer.prepare_seconds = time.perf_counter() - getattr(args, "started", time.perf_counter())
    planes = f" on {trainer.planes_used} of {trainer.planes_total} planes" if trainer.planes_total > len(images) else ""
    what = "instance masks: background, interior, boundary" if trainer.instances else f"{trainer.n_classes} class(es)"
    print(
        f"{trainer.mode} labels, {what}, {trainer.n_annotated} annotated pixels{planes}, "
        f"{trainer.device.type} {trainer.precision}",
        file=sys.stderr,
    )
    done = _run_training(trainer)
    skipped = getattr(done, "skipped", 0)
    if skipped:
        print(f"{skipped} step(s) skipped because the loss was NaN or inf; lower --lr if this recurs", file=sys.stderr)
    if done.steps == 0 and base is None:
        print("stopped before the first training step; no model saved", file=sys.stderr)
        return 130
    save_model(done.model, out, overwrite=args.overwrite)
    dice = f", validation Dice {done.val_dice:.3f}" if done.val_dice is not None else ""
    how = "stopped" if done.stopped else "trained"
    why = ", then it stopped improving" if done.plateau and not done.stopped else ""
    print(f"{how} {done.steps} steps in {done.elapsed:.0f} s{dice}{why}; model saved to {out}")
    warning = trust_warning(done)
    if warning:
        print(warning, file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- predict


def _write_prediction(
    model, image, path: Path, overwrite: bool, options: dict, on_plane=lambda: None
) -> np.ndarray | None:
    """Predict plane by plane into a TIFF; stack planes are compressed and written as they come, so memory stays flat."""
    import tifffile

    from .io import atomic_path
    from .prediction import iter_predict, output_shape

    shape = output_shape(model, image, options.get("channel_axis", "auto"))
    dtype = np.int32 if options.get("instances") else np.uint8
    with atomic_path(path, overwrite) as tmp:
        if len(shape) == 2:
            ((_, labels),) = iter_predict(model, image, **options)
            on_plane()
            tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")
            return labels

        def planes():
            for _, labels in iter_predict(model, image, **options):
                on_plane()  # computed (tifffile takes exactly the planes it needs: no call after the last yield)
                yield labels.astype(dtype, copy=False)

        # streamed page by page (iter_predict yields planes in file order): nothing grows with the stack
        tifffile.imwrite(tmp, planes(), shape=shape, dtype=dtype, compression="zlib", photometric="minisblack")
    return None


def _labels_suffix(path: str | Path) -> str:
    """Zarr in, zarr out (written block by block, possibly by a cluster); everything else becomes a TIFF."""
    return ".zarr" if Path(path).suffix.lower() == ".zarr" else ".tif"


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


def _write_prediction_zarr(model, image, path: Path, overwrite: bool, options: dict, client=None) -> None:
    """Labels of a zarr (or any lazy) image into a zarr array: blockwise with overlap on dask, or plane by plane
    when instances are asked for (object ids must not collide between blocks)."""
    import dask
    import zarr

    from .distributed import predict_dask
    from .io import atomic_path
    from .prediction import output_shape, predict

    with atomic_path(path, overwrite) as tmp:
        if options.get("instances"):
            shape = output_shape(model, image, options.get("channel_axis", "auto"))
            chunks = (1,) * (len(shape) - 2) + tuple(min(s, 1024) for s in shape[-2:])
            out = zarr.open(str(tmp), mode="w", shape=shape, chunks=chunks, dtype=np.int32)
            predict(model, image, out=out, **options)
            return
        opts = {k: v for k, v in options.items() if k not in ("instances", "stitch_threshold")}
        labels = predict_dask(model, image, **opts)
        store = labels.to_zarr(str(tmp), compute=False)
        if client is not None:
            client.compute(store).result()
        else:  # one block at a time: torch already uses every core inside a block
            dask.compute(store, scheduler="threads", num_workers=1)


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse before any work if an output exists, unless --overwrite: nothing the user has is replaced."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]}{more} already exists; choose another output folder or pass --overwrite.")


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import load_model
    from .contours import label_contours, write_contours
    from .io import check_writable, read_image
    from .prediction import output_shape
    from .runtime import pick_device, pick_precision

    # every input is checked before anything is created: a mistake leaves no empty output folder behind
    if not 0 <= args.threshold <= 1:
        raise InputError(f"--threshold must be a probability between 0 and 1, got {args.threshold}.")
    if not 0 <= args.stitch_threshold <= 1:
        raise InputError(f"--stitch-threshold must be an IoU between 0 and 1, got {args.stitch_threshold}.")
    if args.stitch_threshold and not args.instances:
        raise InputError("--stitch-threshold links object ids through Z: add --instances.")
    model = load_model(args.model)
    pick_precision(pick_device(args.device), args.precision)  # a CPU without bf16: one line, before any output
    options = dict(
        instances=args.instances,
        stitch_threshold=args.stitch_threshold,
        threshold=args.threshold,
        tile_size=args.tile_size,
        device=args.device,
        precision=args.precision,
        channel_axis=args.channel_axis if args.channel_axis is not None else "auto",
    )
    stems = [Path(p).name.split(".")[0] for p in args.images]
    if len(set(stems)) != len(stems):
        raise InputError(
            "Two input images have the same name; outputs would collide. Rename one or predict them separately."
        )
    planes = []  # per image, for a progress bar that counts planes (a stack is not one step)
    for path in args.images:
        shape = output_shape(model, read_image(path), options["channel_axis"])  # lazy for TIFF, .npy, zarr
        planes.append(int(np.prod(shape[:-2], dtype=np.int64)))
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} exists and is not a folder; choose another output folder with -o.")
    suffixes = [_labels_suffix(p) for p in args.images]
    for stem, suffix in zip(stems, suffixes, strict=True):
        outputs = [outdir / f"{stem}_labels{suffix}"] + (
            [outdir / f"{stem}_contours.{args.contours}"] if args.contours else []
        )
        for target in outputs:
            _refuse_inputs(target, [*args.images, args.model], "The output")
        _refuse_existing(outputs, args.overwrite)  # all up front: never stop halfway through a batch
    client = _dask_client(args.scheduler)
    outdir = check_writable(outdir)
    bar = tqdm(total=sum(planes), desc="predicting", unit="plane", mininterval=0.5 if sys.stderr.isatty() else 10.0)
    try:
        for path, stem, suffix, n in zip(args.images, stems, suffixes, planes, strict=True):
            image = read_image(path)
            target = outdir / f"{stem}_labels{suffix}"
            if suffix == ".zarr":
                _write_prediction_zarr(model, image, target, args.overwrite, options, client)
                bar.update(n)
            else:
                _write_prediction(model, image, target, args.overwrite, options, on_plane=lambda: bar.update(1))
            if args.contours:
                contour_path = outdir / f"{stem}_contours.{args.contours}"
                write_contours(label_contours(np.asarray(read_image(target))), contour_path)
            bar.write(f"{path} -> {target}", file=sys.stdout)
    finally:
        bar.close()
    return 0


# ---------------------------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .io import read_image
    from .metrics import evaluate, format_table, write_table_csv

    if len(args.pred) != len(args.truth):
        raise InputError(f"{len(args.pred)} --pred files but {len(args.truth)} --truth files: give them in pairs.")
    if args.csv:
        csv_path = Path(args.csv)
        _refuse_inputs(csv_path, [*args.pred, *args.truth], "--csv")
        if csv_path.exists() and not args.overwrite:
            raise InputError(f"{csv_path} already exists; choose another name or pass --overwrite to replace it.")
        _check_output_file(csv_path, "--csv")
    preds = [np.asarray(read_image(p)) for p in args.pred]
    truths = [np.asarray(read_image(p)) for p in args.truth]
    names = [Path(p).name for p in args.pred]
    rows = evaluate(
        preds, truths, names, multiclass=args.multiclass, per_slice=args.per_slice, iou_threshold=args.iou_threshold
    )
    print(format_table(rows))
    if args.csv:
        from .io import atomic_path

        with atomic_path(args.csv, overwrite=True) as tmp:
            write_table_csv(rows, tmp)
        print(f"table written to {args.csv}")
    return 0


# ---------------------------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Train on the left half of the bundled nuclei image (scribbles by default), predict and score the right half."""
    from skimage.io import imsave
    from skimage.segmentation import mark_boundaries

    from .checkpoint import save_model
    from .contours import label_contours, write_contours
    from .io import check_writable, write_labels
    from .metrics import evaluate, format_table, instance_scores, write_table_csv
    from .normalization import normalize
    from .prediction import predict
    from .sample_data import nuclei, nuclei_labels
    from .strokes import scribbles_from_truth
    from .training import Trainer, trust_warning

    outdir = check_writable(args.output)
    names = ["model.pt", "nuclei_right_labels.tif", "nuclei_right_contours.geojson", "nuclei_right_contours.csv",
             "metrics.csv", "overlay.png"]  # fmt: skip
    _refuse_existing([outdir / n for n in names], args.overwrite)
    image, truth = nuclei(), nuclei_labels()
    half = image.shape[1] // 2
    strokes = args.labels == "strokes"
    # scribbles drawn on the training half only, so that half gets the whole 0.2% budget
    train_labels = scribbles_from_truth(truth[:, :half], seed=args.seed) if strokes else truth[:, :half]
    kind = f"scribbles on {np.count_nonzero(train_labels)} pixels" if strokes else "complete masks"
    print(
        f"demo: DSB2018 nuclei {image.shape}; training at most {args.time_limit:.0f} s on the left half ({kind})",
        file=sys.stderr,
    )
    trainer = Trainer(
        image[:, :half],
        train_labels,
        time_limit=args.time_limit,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        mode="sparse" if strokes else "dense",
    )
    done = _run_training(trainer)
    why = ", then it stopped improving" if done.plateau and not done.stopped else ""
    print(f"trained {done.steps} steps in {done.elapsed:.0f} s{why}", file=sys.stderr)
    warning = trust_warning(done)
    if warning:
        print(warning, file=sys.stderr)
    model = done.model
    t0 = time.perf_counter()
    test_img, test_truth = image[:, half:], truth[:, half:]
    inst = predict(model, test_img, instances=True, device=args.device, precision=args.precision)
    seconds = time.perf_counter() - t0
    rows = evaluate([inst], [test_truth], ["nuclei right half"])
    print(format_table(rows))
    obj = instance_scores(inst, test_truth)
    print(
        f"objects: {obj['n_pred']} found, {obj['n_true']} true, {obj['matched']} matched at IoU >= 0.5 "
        f"(F1 {obj['f1']:.3f}, mean IoU {obj['mean_matched_iou']:.3f}, PQ {obj['pq']:.3f}); "
        f"prediction took {seconds:.2f} s"
    )
    save_model(model, outdir / "model.pt", overwrite=True)
    write_labels(outdir / "nuclei_right_labels.tif", inst, overwrite=True)
    contours = label_contours(inst)
    write_contours(contours, outdir / "nuclei_right_contours.geojson")
    write_contours(contours, outdir / "nuclei_right_contours.csv")
    write_table_csv(rows, outdir / "metrics.csv")
    gray = np.clip(normalize(test_img[None].astype(np.float32))[0], 0, 1)
    overlay = mark_boundaries(np.dstack([gray] * 3), test_truth, color=(1, 0, 1))
    overlay = mark_boundaries(overlay, inst, color=(0, 1, 0))
    imsave(outdir / "overlay.png", (overlay * 255).astype(np.uint8), check_contrast=False)
    print(
        f"wrote {outdir}/: model.pt, nuclei_right_labels.tif, contours (.geojson, .csv), metrics.csv, "
        "overlay.png (green: prediction, magenta: truth)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .export import export_model
    from .io import read_image

    model = load_model(args.model)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} already exists; choose another name or pass --overwrite.")
    image = read_image(args.image)
    export_model(
        model,
        out,
        image,
        channel_axis=args.channel_axis if args.channel_axis is not None else "auto",
        name=args.name,
        authors=args.author,
        overwrite=args.overwrite,
    )
    print(f"wrote {out} (bioimage.io model package, validated)")
    return 0


COMMANDS = {
    "train": cmd_train,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    args.started = started
    try:
        return COMMANDS[args.command](args)
    except InputError as e:
        print(f"napari-unet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"napari-unet {args.command}: error: out of memory; use smaller or fewer images.", file=sys.stderr)
        return 1
    except OSError as e:
        what = getattr(e, "strerror", None) or str(e) or type(e).__name__
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"napari-unet {args.command}: error: {what}{where}; check the paths and free space.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"napari-unet {args.command}: interrupted; every output is complete or absent, none is half-written.",
            file=sys.stderr,
        )
        return 130
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            # run as a command: the work is done or abandoned, so a late Ctrl-C must not print a traceback
            # from the interpreter's exit handlers
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
