"""Train/Stop cycles in the Train widget leak no threads and little memory (issue 6, "nothing frozen").

    xvfb-run -a python benchmarks/gui_train_stop_cycles.py [--cycles 20]

Opens the bundled sample in a real napari window, then clicks Train, waits for two training steps, clicks
Stop and waits for the job to end, ``--cycles`` times (tiny network, live preview every second). Prints the
Python thread count (threading.active_count), Qt's worker threads (QThreadPool activeThreadCount) and the
process RSS after a first warm-up cycle (torch and napari start their pools then) and after all cycles.
"""

from __future__ import annotations

import argparse
import gc
import threading
import time

import napari
import psutil
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QApplication


def run_until(done, timeout: float) -> bool:
    app = QApplication.instance()
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        app.processEvents()
        if done():
            return True
        time.sleep(0.005)
    return False


def state() -> tuple[int, int, float]:
    pool = QThreadPool.globalInstance()
    pool.waitForDone(5000)
    run_until(lambda: False, 0.5)
    return threading.active_count(), pool.activeThreadCount(), psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
    train.set_settings(
        time_limit=120, filters=8, depth=2, patch_size=64, batch_size=4, steps_per_epoch=5, preview_every=1
    )

    def cycle() -> float:
        start = time.perf_counter()
        train.start_training()
        if not run_until(lambda: len(train._plot.loss) >= 2, 120):
            raise SystemExit("training did not start")
        train.stop_training()
        if not run_until(lambda: not train.running, 10):
            raise SystemExit("Stop did not end the job within 10 s")
        return time.perf_counter() - start

    cycle()  # warm-up
    before = state()
    seconds, rss = [], []
    for k in range(1, args.cycles + 1):
        seconds.append(cycle())
        if k % 5 == 0:
            gc.collect()
            rss.append(f"{k}: {psutil.Process().memory_info().rss / 2**20:.0f}")
    after = state()
    layers = len(viewer.layers)
    viewer.close()

    from predict_speed import machine

    print(f"machine: {machine()}")
    print(f"{args.cycles} Train/Stop cycles ({sum(seconds):.0f} s, {max(seconds):.1f} s the longest):")
    print(f"  threading.active_count      {before[0]:5d} -> {after[0]:5d}")
    print(f"  QThreadPool active threads  {before[1]:5d} -> {after[1]:5d}")
    print(f"  RSS                         {before[2]:5.0f} -> {after[2]:5.0f} MiB ({after[2] - before[2]:+.0f} MiB)")
    print(f"  RSS (MiB) after cycles      {', '.join(rss)}")
    print(f"  layers in the viewer        {layers}")


if __name__ == "__main__":
    main()
