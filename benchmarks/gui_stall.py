"""Longest event-loop stall of the napari window while the Train widget trains (with live preview) and the
Predict widget segments: a QTimer probe fires every 10 ms and records the largest gap between firings.

    xvfb-run -a python benchmarks/gui_stall.py [--seconds 20] [--defaults]

Prints the max gap, 99th percentile and count of gaps over 100 ms, for training and for prediction.
By default trains a small network (16 filters, depth 3) so the measurement is about the GUI, not the CPU;
``--defaults`` uses the widget's default network. A target: max stall < 100 ms.
"""

from __future__ import annotations

import argparse
import time

import napari
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication


class StallProbe:
    """Records the gaps between firings of a 10 ms QTimer on the GUI thread."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.interval = interval_ms / 1000
        self.gaps: list[float] = []
        self._last = None
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> None:
        self.gaps.clear()
        self._last = None
        self._timer.start()

    def stop(self) -> dict:
        self._timer.stop()
        gaps = np.array(self.gaps) * 1000
        return {
            "max_ms": float(gaps.max()) if gaps.size else float("nan"),
            "p99_ms": float(np.percentile(gaps, 99)) if gaps.size else float("nan"),
            "over_100ms": int((gaps > 100).sum()),
            "ticks": int(gaps.size),
        }


def run_until(done, timeout: float, also=None) -> None:
    app = QApplication.instance()
    end = time.perf_counter() + timeout
    while time.perf_counter() < end and not done():
        app.processEvents()
        if also is not None:
            also()
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="training time budget")
    parser.add_argument("--defaults", action="store_true", help="train the default network (16 filters, depth 4)")
    args = parser.parse_args()

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-unet", "nuclei_strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
    _, predict = viewer.window.add_plugin_dock_widget("napari-unet", "Predict", tabify=True)
    settings = {"time_limit": args.seconds, "preview_every": 2}
    if not args.defaults:
        settings.update(filters=16, depth=3)
    train.set_settings(**settings)
    run_until(lambda: False, 1.0)  # let the window settle

    # while training: pan and zoom a little every 0.5 s, as a user watching the preview would
    camera = viewer.camera
    start_zoom = camera.zoom
    state = {"t": time.perf_counter(), "k": 0}

    def interact() -> None:
        if time.perf_counter() - state["t"] > 0.5:
            state["t"] = time.perf_counter()
            state["k"] += 1
            camera.zoom = start_zoom * (1.0 + 0.3 * (state["k"] % 2))

    probe = StallProbe()
    # baseline: the same interaction with nothing running (software OpenGL and other processes cost something)
    probe.start()
    run_until(lambda: False, 5.0, interact)
    baseline = probe.stop()

    probe.start()
    train.start_training()
    run_until(lambda: not train.running, args.seconds * 3 + 60, interact)
    training = probe.stop()
    steps = len(train._plot.loss)

    probe.start()
    predict._polygons.value = True
    predict.start_prediction()
    run_until(lambda: not predict.busy, 120)
    predicting = probe.stop()
    viewer.close()

    print("baseline (nothing running, zoom toggled every 0.5 s):")
    print(
        f"  max event-loop stall {baseline['max_ms']:.0f} ms, p99 {baseline['p99_ms']:.0f} ms, "
        f"{baseline['over_100ms']} gaps > 100 ms out of {baseline['ticks']}"
    )
    print(f"training ({steps} steps, live preview every 2 s, zoom toggled every 0.5 s):")
    print(
        f"  max event-loop stall {training['max_ms']:.0f} ms, p99 {training['p99_ms']:.0f} ms, "
        f"{training['over_100ms']} gaps > 100 ms out of {training['ticks']}"
    )
    print("prediction (instances, contours, polygons layer):")
    print(
        f"  max event-loop stall {predicting['max_ms']:.0f} ms, p99 {predicting['p99_ms']:.0f} ms, "
        f"{predicting['over_100ms']} gaps > 100 ms out of {predicting['ticks']}"
    )


if __name__ == "__main__":
    main()
