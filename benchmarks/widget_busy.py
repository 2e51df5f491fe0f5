"""Issue 19: the Train widget's training speed beside one busy neighbour, as a user sees it in napari.

    xvfb-run -a python benchmarks/widget_busy.py [--seconds 60] [--repeats 1]

Opens the bundled sample (image and scribbles) in a napari window with the Train dock at its defaults (the
default network, live preview every 3 s), clicks Train for ``--seconds`` (until_plateau off, so every run uses
its whole budget) and counts the training steps the widget reports. Each run is a fresh process (the thread
choice starts from scratch), first idle, then beside one busy neighbour (``python -c "while 1: pass"``, started
and killed here). Prints, per run, the steps per second from the first U-Net step to the end (the pseudo-labelling
before it is not training), the thread choice the run reported, and the ratio busy / idle (target >= 0.45).

Wall-clock figures need a machine nothing else loads: the load average before each run is printed. A 5 s run
(``--seconds 5``) only checks that the script works.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import napari
from qtpy.QtWidgets import QApplication
from napari_unet.training.events import Done, Step

seconds = float(sys.argv[1])
viewer = napari.Viewer(show=True)
viewer.window.resize(1400, 900)
viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
_, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
train.set_settings(time_limit=seconds, until_plateau=False)
app = QApplication.instance()
seen = {"first": None, "done": None}
handler = train._on_event


def on_event(event):
    now = time.perf_counter()
    if isinstance(event, Step) and seen["first"] is None:
        seen["first"] = (now, event.step)
    elif isinstance(event, Done):
        seen["done"] = (now, event)
    handler(event)


train._on_event = on_event  # the worker's signals are connected when Train is clicked: this one is called
end = time.perf_counter() + 2.0
while time.perf_counter() < end:  # the window settles
    app.processEvents()
    time.sleep(0.01)
start = time.perf_counter()
train.start_training()
while train.running and time.perf_counter() - start < seconds * 3 + 120:
    app.processEvents()
    time.sleep(0.002)
t_done, done = seen["done"]
t_first, first_step = seen["first"] or (t_done, done.steps)
out = {
    "steps": done.steps, "elapsed": done.elapsed, "threads": done.threads,
    "training_s": t_done - t_first, "steps_per_s": (done.steps - first_step) / max(t_done - t_first, 1e-9),
}
viewer.close()
print("RESULT " + json.dumps(out), flush=True)
"""


def run(seconds: float, busy: bool) -> dict:
    """One Train click in a fresh napari process, beside a busy neighbour or not."""
    spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if busy else None
    try:
        load = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(seconds)], capture_output=True, text=True, timeout=seconds * 4 + 300
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the widget run failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT ") :]), "load_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="the Train dock's time budget per run")
    parser.add_argument("--repeats", type=int, default=1, help="idle / busy pairs")
    args = parser.parse_args()
    from predict_speed import machine

    print(f"machine: {machine()}; Train dock defaults, {args.seconds:.0f} s per run")
    ratios = []
    for k in range(args.repeats):
        speeds = {}
        for busy in (False, True):
            r = run(args.seconds, busy)
            speeds[busy] = r["steps_per_s"]
            print(
                f"  {'busy' if busy else 'idle'} (load before {r['load_before']:.2f}): {r['steps']} steps, "
                f"{r['steps_per_s']:.2f} steps/s over {r['training_s']:.1f} s of training; {r['threads']}",
                flush=True,
            )
        ratios.append(speeds[True] / speeds[False] if speeds[False] else float("nan"))
        print(f"repeat {k + 1}: steps per second busy / idle = {ratios[-1]:.2f}x (target >= 0.45x)", flush=True)
    if len(ratios) > 1:
        print(f"median ratio over {len(ratios)} repeats: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
