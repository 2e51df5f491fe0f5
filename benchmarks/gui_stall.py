"""Longest event-loop stall of the napari window while the Train widget trains (with live preview) and the
Predict widget segments: a QTimer probe fires every 10 ms and records the largest gap between firings.

    xvfb-run -a python benchmarks/gui_stall.py [--seconds 20] [--defaults]

Then predicts a 2048 x 2048 image with polygons (the Metrics widget scoring it), and paints 20 strokes into its
ground truth after choosing 2048 x 2048 scribbles for training. Run it with a second busy process too:

    python -c "while 1: pass" & xvfb-run -a python benchmarks/gui_stall.py; kill $!
    xvfb-run -a python benchmarks/gui_stall.py --busy      # the same, the neighbour started and killed here

Prints the max gap, 99th percentile and count of gaps over 100 ms, for each phase, and the time
spent in each of the widgets' GUI-thread handlers (max and total ms, per event type; ``_layer_turns.run_step``: the
parts of napari's work for a new layer deferred to later event-loop turns): the handler figures are
robust when other processes load the machine, the wall-clock stall figures are not (the load average is printed).
By default trains a small network (16 filters, depth 3) so the measurement is about the GUI, not the CPU;
``--defaults`` uses the widget's default network. A target: max stall < 100 ms.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import threading
import time
import traceback

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
        self.stacks: collections.Counter = collections.Counter()
        self._gui = threading.get_ident()
        self._sampling = False

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def _sample(self) -> None:
        """Another thread: while the GUI thread has not ticked for > 50 ms, note where it is (every 10 ms)."""
        while self._sampling:
            time.sleep(0.01)
            last = self._last
            if last is None or time.perf_counter() - last < 0.05:
                continue
            frame = sys._current_frames().get(self._gui)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            ours = [f for f in stack if "napari_unet" in f.filename or "napari/" in f.filename or "vispy" in f.filename]
            top = (ours or stack)[-3:]
            self.stacks["  <  ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(top))] += 1

    def start(self) -> None:
        self.gaps.clear()
        self.stacks.clear()
        self._last = None
        self._timer.start()
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def stop(self) -> dict:
        self._sampling = False
        self._sampler.join()
        self._timer.stop()
        gaps = np.array(self.gaps) * 1000
        return {
            "max_ms": float(gaps.max()) if gaps.size else float("nan"),
            "p99_ms": float(np.percentile(gaps, 99)) if gaps.size else float("nan"),
            "over_100ms": int((gaps > 100).sum()),
            "ticks": int(gaps.size),
            "stacks": self.stacks.most_common(6),
        }


class HandlerTimes:
    """Wraps the widgets' GUI-thread handlers (class methods) and records how long each call takes."""

    # the Train dock's GUI-thread work lives in its panels: each class with the handlers it runs
    TRAIN = (
        ("_train", "TrainWidget", ("_on_event", "_on_timer", "_on_finish", "_on_layer_removed", "start_training")),
        ("_train_pairs", "PairsPanel", ("_on_layers_changed", "_pairing_changed")),
        ("_train_annotations", "AnnotationsPanel", ("pairing_changed", "update_hint")),
        ("_train_preview", "LivePreview", ("show",)),
        ("_train_progress", "RunProgress", ("step",)),
    )
    PREDICT = ("_on_event", "_feed_polygons", "_on_finish", "_reset_choices", "start_prediction")
    METRICS = ("update_table", "_on_layers_changed", "schedule", "update_in_background", "_show")

    def __init__(self, profile: bool = False) -> None:
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.profiles: dict = {}
        self.profile = profile

    def install(self) -> None:
        import importlib

        from napari_unet._widgets._metrics import MetricsWidget
        from napari_unet._widgets._predict import PredictWidget

        classes = [
            (getattr(importlib.import_module(f"napari_unet._widgets.{module}"), name), names)
            for module, name, names in self.TRAIN
        ]
        from napari_unet._widgets import _layer_turns

        for cls, names in (
            *classes, (PredictWidget, self.PREDICT), (MetricsWidget, self.METRICS), (_layer_turns, ("run_step",)),
        ):  # fmt: skip
            owner = getattr(cls, "__name__", "").rpartition(".")[2].replace("Widget", "")
            for name in names:
                setattr(cls, name, self._wrap(owner, name, getattr(cls, name)))

    def _wrap(self, owner: str, name: str, func):
        @functools.wraps(func)
        def timed(*args, **kwargs):
            key = f"{owner}.{name}"
            if name == "_on_event" and len(args) > 1:
                key += f"({type(args[1]).__name__})"
            elif name == "run_step" and args:
                key += f"({args[0]})"
            profiler = None
            if self.profile:
                import cProfile

                profiler = self.profiles.setdefault(key, cProfile.Profile())
                profiler.enable()
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.times[key].append(time.perf_counter() - start)
                if profiler is not None:
                    profiler.disable()

        return timed

    def print_profiles(self, n: int = 15) -> None:
        import pstats

        for key, profiler in self.profiles.items():
            print(f"==== cProfile of {key}")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(n)

    def take(self) -> dict[str, list[float]]:
        times, self.times = self.times, collections.defaultdict(list)
        return times


def print_stalls(result: dict) -> None:
    if result["stacks"]:
        print("  where the GUI thread was during stalls > 50 ms (10 ms samples):")
        for where, n in result["stacks"]:
            print(f"    {n:4d}  {where}")


def print_handlers(times: dict[str, list[float]]) -> None:
    for key, values in sorted(times.items(), key=lambda kv: -max(kv[1])):
        ms = 1000 * np.asarray(values)
        print(
            f"    {key:42s} n={ms.size:4d}  max {ms.max():6.1f} ms  median {np.median(ms):5.1f} ms  total {ms.sum():6.0f} ms"
        )


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
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of each GUI-thread handler")
    parser.add_argument("--busy", action="store_true", help='beside one busy neighbour (python -c "while 1: pass")')
    args = parser.parse_args()
    if args.busy:  # started here and killed when the benchmark ends, however it ends
        import atexit
        import subprocess

        spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        atexit.register(spinner.kill)
        print(f"beside one busy neighbour process (pid {spinner.pid})")
    handlers = HandlerTimes(profile=args.profile)
    handlers.install()

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
    _, predict = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Predict", tabify=True)
    settings = {"time_limit": args.seconds, "preview_every": 2}
    if not args.defaults:
        settings.update(filters=16, depth=3)
    train.set_settings(**settings)
    run_until(lambda: False, 1.0)  # let the window settle

    # while training: pan and zoom a little every 0.5 s, as a user watching the preview would
    camera = getattr(viewer, "scene", viewer).camera
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

    handlers.take()
    probe.start()
    train.start_training()
    run_until(lambda: not train.running, args.seconds * 3 + 60, interact)
    training = probe.stop()
    training_handlers = handlers.take()
    steps = len(train._plot.loss)

    probe.start()
    predict._polygons.value = True
    predict.start_prediction()
    run_until(lambda: not predict.busy, 120)
    predicting = probe.stop()
    predicting_handlers = handlers.take()

    # a 2048 x 2048 image (the sample tiled 4 x 4, ~900 nuclei) with its ground truth, the Metrics widget open
    from napari_unet.sample_data import nuclei, nuclei_labels, nuclei_strokes

    _, metrics = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Metrics", tabify=True)
    large = viewer.add_image(np.tile(nuclei(), (4, 4)), name="large")
    truth = viewer.add_labels(np.tile(nuclei_labels(), (4, 4)).astype(np.int32), name="large ground truth")
    strokes = viewer.add_labels(np.tile(nuclei_strokes(), (4, 4)).astype(np.int32), name="large strokes")
    run_until(lambda: False, 1.0)
    handlers.take()
    probe.start()
    predict._all.value = False
    predict._images.value = [large]
    predict.start_prediction()
    run_until(lambda: not predict.busy, 300, interact)
    run_until(lambda: not metrics._runner.running, 60, interact)
    large_predicting = probe.stop()
    large_handlers = handlers.take()
    objects = sum(len(lay.data) for lay in viewer.layers if lay.name.startswith("large polygons"))

    # painting: choose the large strokes for training ('Labels are' guessed), then 20 strokes of 40 dabs in
    # the ground truth, 0.2 s apart, as a user fixing it (each stroke re-scores the Metrics table)
    def paint_strokes(layer, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(20):
            y, x = rng.uniform(100, 1948, 2)
            dy, dx = rng.normal(0, 4, 2)
            with layer.block_history():
                for k in range(40):
                    layer.paint((y + k * dy, x + k * dx), 1, refresh=True)
                    QApplication.instance().processEvents()
            run_until(lambda: False, 0.2)

    # napari's own cost of painting (software OpenGL under Xvfb): the same strokes in a layer no widget uses
    scratch = viewer.add_labels(np.zeros((2048, 2048), np.int32), name="scratch")
    run_until(lambda: False, 0.5)
    handlers.take()
    probe.start()
    paint_strokes(scratch)
    painting_alone = probe.stop()
    handlers.take()
    viewer.layers.remove(scratch)
    run_until(lambda: False, 0.5)

    probe.start()
    train.set_pairs([(large, strokes)])
    run_until(lambda: False, 0.5)
    paint_strokes(truth)
    run_until(lambda: not metrics._runner.running, 60)
    painting = probe.stop()
    painting_handlers = handlers.take()
    viewer.close()

    from predict_speed import machine

    print(f"machine: {machine()}")
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
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
    print("  GUI-thread handlers of the widgets:")
    print_handlers(training_handlers)
    print_stalls(training)
    print("prediction (instances, contours, polygons layer):")
    print(
        f"  max event-loop stall {predicting['max_ms']:.0f} ms, p99 {predicting['p99_ms']:.0f} ms, "
        f"{predicting['over_100ms']} gaps > 100 ms out of {predicting['ticks']}"
    )
    print("  GUI-thread handlers of the widgets:")
    print_handlers(predicting_handlers)
    print_stalls(predicting)
    for title, result, times in (
        (f"prediction of a 2048 x 2048 image ({objects} polygons), then its Metrics", large_predicting, large_handlers),
        ("painting 20 strokes into a 2048 x 2048 layer no widget uses (napari alone)", painting_alone, {}),
        (
            "painting: 'Labels are' guessed on 2048 x 2048 strokes, 20 strokes in the ground truth",
            painting,
            painting_handlers,
        ),
    ):
        print(f"{title}:")
        print(
            f"  max event-loop stall {result['max_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
            f"{result['over_100ms']} gaps > 100 ms out of {result['ticks']}"
        )
        if times:
            print("  GUI-thread handlers of the widgets:")
            print_handlers(times)
        print_stalls(result)
    if args.profile:
        handlers.print_profiles()


if __name__ == "__main__":
    main()
