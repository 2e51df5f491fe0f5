"""Issue 11 benchmark: objects, not just pixels. DSB2018 nuclei (the bundled 512 x 512 image, instance masks):
train on one half with the complete masks for a fixed time, predict the other half, score pixels and objects
(``napari_unet.metrics.object_scores``: one-to-one matching by IoU, Hungarian) for both splits.

Side by side, in the same run:

- ``binary + watershed``: today's product, a binary model (``instances=False``) and the distance-transform
  watershed of its mask (``predict(..., instances=True)`` on a binary model);
- ``boundary + watershed``: the model trained on the boundary target, its foreground split by the same
  distance-transform watershed (what the decoding alone brings);
- ``boundary + seeds``: the same model decoded by seeded watershed on its interior / boundary classes (the
  default for a model trained on instance masks);
- ``boundary + seeds, tta``: the same, from probabilities averaged over the 8 flips and quarter turns
  (``predict(..., tta=True)``, ``napari-unet predict --tta``).

    python benchmarks/objects_dsb2018.py [--time-limit 60] [--seeds 0]
    DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 NAPARI_UNET_PRECISION=fp32 python benchmarks/objects_dsb2018.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

import napari_unet as nu
from napari_unet.instances import split_instances
from napari_unet.metrics import object_scores
from napari_unet.runtime import pick_device, pick_precision
from napari_unet.sample_data import nuclei, nuclei_labels


def cpu_line() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cpu: unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    ext = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "amx_bf16"))
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in ("DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "NAPARI_UNET_PRECISION")
        if k in os.environ
    )
    return f"cpu: {model}; {ext}; {env or 'no ISA override'}"


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    (px,) = nu.evaluate(pred, truth)
    o5, o7 = object_scores(pred, truth, 0.5), object_scores(pred, truth, 0.7)
    return {
        "dice": px["dice"],
        "n_pred": o5["objects_pred"],
        "n_true": o5["objects_true"],
        "f1_5": o5["object_f1"],
        "f1_7": o7["object_f1"],
        "miou": o5["matched_iou"],
        "pq": o5["pq"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--splits", nargs="+", default=["left", "right"], choices=["left", "right"])
    ap.add_argument(
        "--epochs", type=int, default=None, help="train a fixed number of 20-step epochs instead (a loaded machine)"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the binary model")
    args = ap.parse_args()
    limit = {"time_limit": None, "epochs": args.epochs} if args.epochs else {"time_limit": args.time_limit}
    image, truth = nuclei(), nuclei_labels()
    w = image.shape[1]
    halves = {"left": np.s_[:, : w // 2], "right": np.s_[:, w // 2 :]}
    dev = pick_device()
    print(cpu_line())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dev.type} {pick_precision(dev)}; "
        + (f"{args.epochs} epochs of 20 steps" if args.epochs else f"{args.time_limit:.0f} s of training")
        + " per model (shared machine: steps in 60 s vary with the load)"
    )
    head = (
        f"{'train':>5} {'seed':>4} {'method':<22} {'steps':>5} {'dice':>6} {'objects':>9} "
        f"{'F1@0.5':>6} {'F1@0.7':>6} {'mIoU':>6} {'PQ':>6}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for split in args.splits:
        test = "right" if split == "left" else "left"
        x, y = image[halves[split]], truth[halves[split]]
        tx, ty = image[halves[test]], truth[halves[test]]
        for seed in args.seeds:
            results = []
            if not args.no_baseline:
                binary = nu.Trainer(x, y, mode="dense", instances=False, seed=seed, **limit)
                done = list(binary.run())[-1]
                results.append(("binary + watershed", done.steps, nu.predict(done.model, tx, instances=True)))
            boundary = nu.Trainer(x, y, mode="dense", seed=seed, **limit)
            assert boundary.boundaries
            done = list(boundary.run())[-1]
            mask = nu.predict(done.model, tx)
            results.append(("boundary + watershed", done.steps, split_instances(mask > 0)))
            results.append(("boundary + seeds", done.steps, nu.predict(done.model, tx, instances=True)))
            results.append(("boundary + seeds, tta", done.steps, nu.predict(done.model, tx, instances=True, tta=True)))
            for name, steps, pred in results:
                s = scores(pred, ty)
                rows.append({"split": split, "method": name, "steps": steps, **s})
                print(
                    f"{split:>5} {seed:>4} {name:<22} {steps:>5} {s['dice']:6.3f} {s['n_pred']:>4}/{s['n_true']:<4} "
                    f"{s['f1_5']:6.3f} {s['f1_7']:6.3f} {s['miou']:6.3f} {s['pq']:6.3f}",
                    flush=True,
                )
    print("-" * len(head))
    for name in ("binary + watershed", "boundary + watershed", "boundary + seeds", "boundary + seeds, tta"):
        sel = [r for r in rows if r["method"] == name]
        if not sel:
            continue
        m = {k: float(np.mean([r[k] for r in sel])) for k in ("steps", "dice", "n_pred", "f1_5", "f1_7", "miou", "pq")}
        worst5 = min(r["f1_5"] for r in sel)
        worst7 = min(r["f1_7"] for r in sel)
        print(
            f"{'mean':>5} {'':>4} {name:<22} {m['steps']:5.0f} {m['dice']:6.3f} {m['n_pred']:9.1f} "
            f"{m['f1_5']:6.3f} {m['f1_7']:6.3f} {m['miou']:6.3f} {m['pq']:6.3f}   worst F1 {worst5:.3f} / {worst7:.3f}"
        )
    for name in ("boundary + seeds", "boundary + seeds, tta"):
        new = [r for r in rows if r["method"] == name]
        ok = all(r["f1_5"] >= 0.93 and r["f1_7"] >= 0.85 for r in new)
        print(f"{name}: targets (every split: F1@0.5 >= 0.93, F1@0.7 >= 0.85) {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s in all)")
