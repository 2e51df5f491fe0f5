"""Issue 18 benchmark: a Z-stack segmented as 3D objects, learnt from a few painted planes.

StarDist's synthetic 3D nuclei (``shared/data/nuclei3d``, 31 x 61 x 57, 51 nuclei). Side by side, in one run:

- ``2D + stitching``: today's path, a 2D model trained on complete masks of planes 5, 15, 25
  (``train --dense``), then ``predict --instances --stitch-threshold 0.3``;
- ``volume, masks``: a 3D U-Net (``train --volume``) on the same painted planes, 3D objects;
- ``volume, scribbles``: the 3D U-Net from a few strokes on the same 3 planes (``strokes.scribbles_from_truth``).

Scores: 3D object F1 at IoU 0.5 (objects matched one to one in the volume), pixel Dice, the share of nuclei
that keep one id (on every plane where a nucleus is predicted, the id covering most of it is the same), and
speed: training steps/s and voxels/s, prediction voxels/s.

    python benchmarks/volumes.py [--time-limit 60] [--steps N] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile

import napari_unet as nu
from napari_unet.metrics import binary_scores, object_scores
from napari_unet.runtime import cpu_summary
from napari_unet.strokes import scribbles_from_truth
from napari_unet.training import Done, Trainer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei3d"
PLANES = (5, 15, 25)


def keeps_one_id(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of true objects whose dominant predicted id is the same on every plane where they are predicted."""
    kept = total = 0
    for g in np.unique(truth[truth > 0]):
        total += 1
        ids = set()
        for z in np.unique(np.nonzero(truth == g)[0]):
            under = pred[z][truth[z] == g]
            under = under[under > 0]
            if under.size:
                ids.add(int(np.bincount(under).argmax()))
        kept += len(ids) == 1
    return kept / max(total, 1)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    obj = object_scores(pred, truth, 0.5, volume=True)
    return {
        "f1": obj["object_f1"],
        "n_pred": obj["objects_pred"],
        "dice": binary_scores(pred > 0, truth > 0)["dice"],
        "one_id": keeps_one_id(pred, truth),
    }


def run_case(name: str, image, labels, truth, limits: dict, predict_options: dict, **train_options) -> dict:
    trainer = Trainer(image, labels, **limits, **train_options)
    done = next(e for e in trainer.run() if isinstance(e, Done))
    cfg = trainer.config
    if cfg.volume:
        patch_voxels = cfg.volume_batch_size * cfg.volume_patch_depth * cfg.volume_patch_size**2
    else:
        patch = trainer.small_patch or cfg.patch_size
        patch_voxels = (trainer.small_batch or cfg.batch_size) * patch * patch
    start = time.perf_counter()
    pred = nu.predict(done.model, image, instances=True, **predict_options)
    seconds = time.perf_counter() - start
    row = {
        "case": name,
        **scores(pred, truth),
        "steps": done.steps,
        "train_s": done.elapsed,
        "steps_per_s": done.steps / max(done.elapsed, 1e-9),
        "train_vox_per_s": done.steps * patch_voxels / max(done.elapsed, 1e-9),
        "predict_s": seconds,
        "predict_vox_per_s": image.size / seconds,
    }
    print(
        f"{name:20s} F1 {row['f1']:.3f}  objects {row['n_pred']:3d}/{len(np.unique(truth)) - 1}  Dice {row['dice']:.3f}  "
        f"one id {100 * row['one_id']:5.1f}%  | train {row['steps']} steps in {row['train_s']:.0f} s "
        f"({row['steps_per_s']:.2f} steps/s, {row['train_vox_per_s'] / 1e3:.0f} kvox/s)  "
        f"| predict {seconds:.1f} s ({row['predict_vox_per_s'] / 1e3:.0f} kvox/s)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds of training per case (default 60)")
    parser.add_argument("--steps", type=int, default=None, help="train a fixed number of steps instead (tuning)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 s per case")
    parser.add_argument("--cases", default="2d,masks,scribbles", help="which cases, comma-separated")
    parser.add_argument("--data", default=str(DATA), help="folder with nuclei3d.tif and nuclei3d_labels.tif")
    args = parser.parse_args()
    image = tifffile.imread(Path(args.data) / "nuclei3d.tif")
    truth = tifffile.imread(Path(args.data) / "nuclei3d_labels.tif").astype(np.int32)
    masks = np.zeros_like(truth)
    scribbles = np.zeros(truth.shape, np.uint8)
    for z in PLANES:
        masks[z] = truth[z]
        scribbles[z] = scribbles_from_truth(truth[z], object_fraction=0.5, max_fraction=0.05, seed=z)
    print(cpu_summary())
    print(
        f"nuclei3d {image.shape}, {len(np.unique(truth)) - 1} nuclei; masks on planes {PLANES} "
        f"({np.count_nonzero(masks)} voxels), scribbles on the same planes ({np.count_nonzero(scribbles)} voxels)"
    )
    if args.steps:
        limits = {"time_limit": None, "epochs": max(1, args.steps // 20), "steps_per_epoch": min(20, args.steps)}
        print(f"fixed {limits['epochs'] * limits['steps_per_epoch']} steps per case")
    else:
        seconds = 10.0 if args.quick else args.time_limit
        limits = {"time_limit": seconds, "until_plateau": False}
        print(f"{seconds:g} s of training per case (preparation included)")
    cases = args.cases.split(",")
    if "2d" in cases:
        run_case("2D + stitching", image, masks, truth, limits, {"stitch_threshold": 0.3}, mode="dense")
    if "masks" in cases:
        run_case("volume, masks", image, masks, truth, limits, {}, mode="dense", volume=True)
    if "scribbles" in cases:
        run_case("volume, scribbles", image, scribbles, truth, limits, {}, mode="sparse", volume=True)


if __name__ == "__main__":
    main()
