"""Time from "Train" to the first live preview, through the same job the Train widget runs.

The Train widget's train session (``jobs.train_session.train_rounds``) is run headless, as the widget runs
it, with the visible region set to the whole image (clipped to 512 x 512 around its centre as the widget
does). Timed from the call (the click on Train) to:

- the first preview: for scribbles, the pseudo-labelling forest's answer (``Prepared``), before any U-Net step;
- the first U-Net training step;
- the first U-Net preview (shown once the U-Net beats the forest on held-out strokes, or after 100 steps).

Two images with scribbles drawn from their ground truth as a person paints them (``strokes.py``): the
bundled DSB2018 sample (512 x 512) and a 700 x 1100 frame cut from it tiled 2 x 3. Each repeat runs in a fresh
process, cold (first use of torch in the process) and warm (``inference.warm_up()`` first, as the widget does
in the background while the user paints). Targets (issue 9, on an AVX2-only CPU in fp32): <= 3 s on the
sample, <= 5 s on the 700 x 1100 frame. The Dice of the first preview against the ground truth is printed too.

    python benchmarks/preview_latency.py
    DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 NAPARI_UNET_PRECISION=fp32 python benchmarks/preview_latency.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
size, kind, unet_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
from napari_unet.sample_data import nuclei, nuclei_labels
from napari_unet.strokes import scribbles_from_truth
image, truth = nuclei(), nuclei_labels()
if size != "512":
    image, truth = np.tile(image, (2, 3))[:700, :1100], np.tile(truth, (2, 3))[:700, :1100]
    from skimage.measure import label
    truth = label(truth > 0)
strokes = scribbles_from_truth(truth, seed=0)
if kind == "warm":
    from napari_unet.inference import warm_up
    warm_up()
t0 = time.perf_counter()                                    # the click on Train
from napari_unet.jobs.train_session import Inbox, train_rounds
from napari_unet.training import Preview, Step, TrainConfig, View
inbox = Inbox(preview=True, preview_interval=3.0)
h, w = image.shape
inbox.post_view(View(0, (), (0, h), (0, w)))
out = dict(first_preview=None, first_step=None, unet_preview=None, steps=0, dice=None)
for event in train_rounds([image], [strokes], TrainConfig(time_limit=120), None, inbox):
    now = time.perf_counter() - t0
    if isinstance(event, Preview):
        if out["first_preview"] is None:
            out["first_preview"] = now
            (r0, r1), (c0, c1) = event.view.rows, event.view.cols
            t = truth[r0:r1, c0:c1] > 0
            p = event.labels > 0
            out["dice"] = 2 * float((p & t).sum()) / max(1, int(p.sum() + t.sum()))
        elif out["first_step"] is not None and out["unet_preview"] is None:
            out["unet_preview"] = now
    elif isinstance(event, Step):
        out["steps"] = event.step
        if out["first_step"] is None:
            out["first_step"] = now
    if now > unet_seconds or out["unet_preview"] is not None:
        inbox.stop()
print(json.dumps(out))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--unet-seconds", type=float, default=40.0, help="wait at most this long for the U-Net preview")
    args = ap.parse_args(argv)
    from predict_speed import machine

    print(f"machine: {machine()}")
    print(
        f"{'image':>10s} {'run':5s} {'first preview':>14s} {'its Dice':>9s} {'1st U-Net step':>15s} "
        f"{'U-Net preview':>14s} {'steps':>6s}"
    )
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeats):
        for size in ("512", "700x1100"):
            for kind in ("cold", "warm"):
                cmd = [sys.executable, "-c", CHILD, size, kind, str(args.unet_seconds)]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode != 0:
                    raise RuntimeError(run.stderr[-2000:])
                r = json.loads(run.stdout.strip().splitlines()[-1])

                def fmt(x):
                    return f"{x:.2f} s" if x is not None else "-"

                print(
                    f"{size:>10s} {kind:5s} {fmt(r['first_preview']):>14s} {r['dice'] or 0:9.3f} "
                    f"{fmt(r['first_step']):>15s} {fmt(r['unet_preview']):>14s} {r['steps']:6d}",
                    flush=True,
                )
                key = (size, kind)
                if r["first_preview"] is not None:
                    best[key] = min(best.get(key, float("inf")), r["first_preview"])
    targets = {"512": 3.0, "700x1100": 5.0}
    for (size, kind), seconds in sorted(best.items()):
        print(f"{size} {kind}: best {seconds:.2f} s from Train to the first preview (target <= {targets[size]:.0f} s)")


if __name__ == "__main__":
    main()
