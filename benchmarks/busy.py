"""Issue 19 benchmark: the same runs on an idle machine and beside a busy neighbour process, side by side.

    python benchmarks/busy.py [--quick] [--runs train10 train60 demo predict] [--seed 0]

Runs, each idle and then with one busy neighbour (``python -c "while 1: pass"``, started and killed here):

- ``train10`` / ``train60``: ``Trainer`` with complete masks on the left half of the DSB2018 nuclei image for
  10 / 60 s; Dice and object F1 (IoU 0.5) of ``predict`` on the unseen right half. ``train10`` also runs beside
  another PyTorch process (a second training of the same data, started and killed here).
- ``demo``: ``napari_unet.demo.run_demo`` (scribbles, its 60 s), scored on the right half as the demo does.
- ``predict``: a 2048 x 2048 image (the nuclei image tiled) predicted by the idle ``train10`` model, Mpx/s.

Prints steps, steps per second busy / idle, Dice, object F1, Mpx/s and the thread count each run chose (and
why). ``--quick``: 3 s and 6 s runs, the demo for 6 s and 1024 x 1024 prediction, to check the script runs.
Wall-clock figures need a machine that nothing else loads: the load average is printed with the CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import numpy as np
from predict_speed import machine

import napari_unet as nu
from napari_unet.sample_data import nuclei, nuclei_labels
from napari_unet.threads import last_choice

SPIN = "while 1: pass"
# a second PyTorch process that trains until it is killed (the neighbour of the "torch" condition)
TORCH_NEIGHBOUR = (
    "import napari_unet as nu\n"
    "from napari_unet.sample_data import nuclei, nuclei_labels\n"
    "im, gt = nuclei(), nuclei_labels()\n"
    "while True:\n"
    "    for _ in nu.Trainer(im, gt, mode='dense', time_limit=60, until_plateau=False).run(): pass\n"
)


@contextmanager
def neighbour(kind: str):
    """Nothing ('idle'), one spinning process ('busy') or a second PyTorch training ('torch') beside the run."""
    proc = None
    if kind == "busy":
        proc = subprocess.Popen([sys.executable, "-c", SPIN])
    elif kind == "torch":
        proc = subprocess.Popen([sys.executable, "-c", TORCH_NEIGHBOUR], stderr=subprocess.DEVNULL)
        time.sleep(8)  # its imports and first steps: the neighbour is training when the run starts
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def halves():
    image, truth = nuclei(), nuclei_labels()
    half = image.shape[1] // 2
    return image[:, :half], truth[:, :half], image[:, half:], truth[:, half:]


def train_run(seconds: float, seed: int) -> dict:
    train_img, train_gt, test_img, test_gt = halves()
    done = [e for e in nu.Trainer(train_img, train_gt, mode="dense", time_limit=seconds, seed=seed).run()][-1]
    (row,) = nu.evaluate(nu.predict(done.model, test_img), test_gt)
    f1 = nu.instance_scores(nu.predict(done.model, test_img, instances=True), test_gt)["f1"]
    return dict(steps=done.steps, rate=done.steps / done.elapsed, dice=row["dice"], f1=f1, threads=done.threads,
                verdict=done.verdict, model=done.model, why=done.reason)  # fmt: skip


def demo_run(seconds: float, seed: int) -> dict:
    from napari_unet.demo import run_demo

    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(folder, time_limit=seconds, seed=seed, notify=lambda message: None)
    done = result.done
    return dict(steps=done.steps, rate=done.steps / done.elapsed, dice=result.rows[0]["dice"],
                f1=result.objects["f1"], threads=done.threads, verdict=done.verdict, why=done.reason)  # fmt: skip


def predict_run(model, side: int) -> dict:
    image = np.tile(nuclei(), (side // 512 + 1, side // 512 + 1))[:side, :side]
    nu.predict(model, image)  # warm-up: the network and the tile choice for this size (timed once per machine)
    from napari_unet import threads

    threads._LAST.pop("predict", None)  # this run's choice, not an earlier run's (a plane may be too short for one)
    # a user's click comes seconds after the last run, not within the 0.3 s the CPU use of other processes since
    # then needs to be read (``threads.others_since_last_run``): a plane of 3-9 batches of tiles is too short a
    # run for a trial, so that reading is its only guess
    time.sleep(1.0)
    start = time.perf_counter()
    nu.predict(model, image)
    seconds = time.perf_counter() - start
    choice = last_choice("predict")
    fixed = f"{threads.default_threads()} threads (too few tiles to measure)"
    return dict(mpx=side * side / 1e6 / seconds, threads=choice.summary() if choice else fixed)


def row(name: str, results: dict[str, dict]) -> None:
    idle = results["idle"]
    for kind, r in results.items():
        key = "mpx" if "mpx" in r else "rate"
        ratio = f"{r[key] / idle[key]:.2f}" if idle.get(key) else "-"
        if "mpx" in r:
            figures = f"{'':>6} {'':>6} {ratio:>6} {'':>6} {'':>6} {r['mpx']:>6.2f}"
        else:
            figures = f"{r['steps']:>6} {r['rate']:>6.1f} {ratio:>6} {r['dice']:>6.3f} {r['f1']:>6.3f} {'':>6}"
        extra = f" {r.get('verdict', '')} {r.get('why', '')}".rstrip()
        print(f"{name:<9} {kind:<6} {figures}  {r['threads']}{extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short runs: only checks that the script works")
    ap.add_argument("--runs", nargs="+", default=["train10", "train60", "demo", "predict"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    short, long, side = (3.0, 6.0, 1024) if args.quick else (10.0, 60.0, 2048)
    print(f"machine: {machine()}")
    print(f"{'run':<9} {'beside':<6} {'steps':>6} {'st/s':>6} {'ratio':>6} {'dice':>6} {'F1':>6} {'Mpx/s':>6}  threads")
    model = None
    if "train10" in args.runs or "predict" in args.runs:
        results = {}
        for kind in ("idle", "busy", "torch"):
            with neighbour(kind):
                results[kind] = train_run(short, args.seed)
        model = results["idle"]["model"]
        if "train10" in args.runs:
            row(f"train{short:g}", results)
    if "train60" in args.runs:
        results = {}
        for kind in ("idle", "busy"):
            with neighbour(kind):
                results[kind] = train_run(long, args.seed)
        row(f"train{long:g}", results)
    if "demo" in args.runs:
        results = {}
        for kind in ("idle", "busy"):
            with neighbour(kind):
                results[kind] = demo_run(long if args.quick else nu_demo_seconds(), args.seed)
        row("demo", results)
    if "predict" in args.runs and model is not None:
        results = {}
        for kind in ("idle", "busy"):
            with neighbour(kind):
                results[kind] = predict_run(model, side)
        row(f"pred{side}", results)
    print("ratio: steps (or Mpx) per second beside the neighbour / idle; target >= 0.45 busy (half the CPU: 0.5)")


def nu_demo_seconds() -> float:
    from napari_unet.training.config import DEMO_TIME_LIMIT

    return DEMO_TIME_LIMIT


if __name__ == "__main__":
    main()
