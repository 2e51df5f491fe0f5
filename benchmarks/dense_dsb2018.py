"""Issue 2 benchmark: train 60 s on the left half of the DSB2018 nuclei image with complete masks, predict
the right half, print pixel and object scores (target: Dice >= 0.85). Also the reverse split.

    python benchmarks/dense_dsb2018.py [--time-limit 60] [--seeds 0]
"""

from __future__ import annotations

import argparse
import time

from predict_speed import machine

import napari_unet as nu
from napari_unet.runtime import pick_device, pick_precision
from napari_unet.sample_data import nuclei, nuclei_labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    image, truth = nuclei(), nuclei_labels()
    half = image.shape[1] // 2
    splits = {
        "left->right": ((slice(None), slice(0, half)), (slice(None), slice(half, None))),
        "right->left": ((slice(None), slice(half, None)), (slice(None), slice(0, half))),
    }
    dev = pick_device()
    print(f"machine: {machine()}; {dev.type} {pick_precision(dev)}")
    print(
        f"{'split':<12} {'seed':>4} {'steps':>5} {'train s':>7} {'dice':>6} {'iou':>6} {'prec':>6} {'rec':>6}"
        f" {'objects':>9} {'matched':>7} {'obj IoU':>7}"
    )
    dices = []
    for name, (train_sl, test_sl) in splits.items():
        for seed in args.seeds:
            t0 = time.perf_counter()
            trainer = nu.Trainer(image[train_sl], truth[train_sl], mode="dense", time_limit=args.time_limit, seed=seed)
            done = [e for e in trainer.run()][-1]
            train_s = time.perf_counter() - t0
            semantic = nu.predict(done.model, image[test_sl])
            inst = nu.predict(done.model, image[test_sl], instances=True)
            (row,) = nu.evaluate(semantic, truth[test_sl])
            obj = nu.instance_scores(inst, truth[test_sl])
            dices.append(row["dice"])
            print(
                f"{name:<12} {seed:>4} {done.steps:>5} {train_s:>7.1f} {row['dice']:>6.3f} {row['iou']:>6.3f}"
                f" {row['precision']:>6.3f} {row['recall']:>6.3f} {obj['n_pred']:>4}/{obj['n_true']:<4}"
                f" {obj['matched']:>7} {obj['mean_matched_iou']:>7.3f}"
            )
    mean = sum(dices) / len(dices)
    print(f"mean Dice {mean:.3f} (target >= 0.85): {'PASS' if mean >= 0.85 else 'FAIL'}")


if __name__ == "__main__":
    main()
