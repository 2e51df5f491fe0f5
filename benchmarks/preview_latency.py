"""Time from "Train" to the first live preview, measured with the core as the Train widget uses it.

"Train" is the construction of a ``Trainer`` on the DSB2018 nuclei image (512 x 512) with scribbles (the
bundled ``nuclei_strokes``); training steps run until ``--train-seconds`` have passed (the widget's
first preview point); then ``trainer.snapshot()`` and ``predict_proba`` of the visible 512 x 512 region.
Everything runs in a fresh process, so first-use costs (oneDNN kernel creation, BN folding) are counted.
Target: <= 5 s from "Train" to the preview in hand. Repeated ``--repeats`` times, each in its own process.
The first step carries one-off costs: the pseudo-labels for scribbles (random forest, ``pseudo.py``) and
oneDNN's kernel creation; ``--set pseudo_labels=none`` shows the time without the former. Each repeat
runs cold (a fresh process) and warm (``runtime.warm_up()`` called first, as a GUI can do in the
background while the user paints: it imports torch._dynamo, which the first optimizer needs, and builds
the oneDNN kernels for the default shapes).

    python benchmarks/preview_latency.py
    python benchmarks/preview_latency.py --set pseudo_labels=none
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import torch
from napari_unet import Trainer, predict_proba
from napari_unet.sample_data import nuclei, nuclei_strokes
from napari_unet.training import Step

seconds = float(sys.argv[1])
overrides = json.loads(sys.argv[2])
image, strokes = nuclei(), nuclei_strokes()
if sys.argv[3] == "warm":  # what a GUI can do in the background while the user paints
    from napari_unet.runtime import warm_up

    warm_up()
t0 = time.perf_counter()                                    # the click on Train
trainer = Trainer(image, strokes, time_limit=600, seed=0, **overrides)
t_init = time.perf_counter()
steps = 0
for event in trainer.run():
    if isinstance(event, Step):
        steps = event.step
        if time.perf_counter() - t0 >= seconds:
            break
t_train = time.perf_counter()
model = trainer.snapshot()
t_snap = time.perf_counter()
probs = predict_proba(model, image[:512, :512])
t_done = time.perf_counter()
assert probs.shape[-2:] == (512, 512)
print(json.dumps(dict(init=t_init - t0, train=t_train - t_init, steps=steps, snapshot=t_snap - t_train,
                      predict=t_done - t_snap, preview_call=t_done - t_train, total=t_done - t0)))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, e.g. pseudo_labels=none")
    args = ap.parse_args(argv)
    from predict_speed import machine, parse_overrides

    overrides = parse_overrides(args.set)

    print(f"machine: {machine()}")
    rows = []
    for _ in range(args.repeats):
        for kind in ("cold", "warm"):
            cmd = [sys.executable, "-c", CHILD, str(args.train_seconds), json.dumps(overrides), kind]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-2000:])
            rows.append({"kind": kind, **json.loads(out.stdout.strip().splitlines()[-1])})
    print(
        f"{'':5s} {'Trainer()':>10s} {'training':>9s} {'steps':>6s} {'snapshot':>9s} {'predict':>8s} {'Train->preview':>15s}"
    )
    for r in rows:
        print(
            f"{r['kind']:5s} {r['init']:9.2f}s {r['train']:8.2f}s {r['steps']:6d} {r['snapshot']:8.2f}s {r['predict']:7.2f}s "
            f"{r['total']:14.2f}s"
        )
    for kind in ("cold", "warm"):
        best = min((r for r in rows if r["kind"] == kind), key=lambda r: r["total"])
        print(
            f"{kind}: best {best['total']:.2f} s from Train to the first preview (target <= 5 s); the preview "
            f"itself (snapshot + predict_proba of 512 x 512) took {best['preview_call']:.2f} s"
        )


if __name__ == "__main__":
    main()
