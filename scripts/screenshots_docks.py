"""Screenshots of the three docks on a 1600 x 1000 screen, opened before the layers, as a new user would.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_docks.py --out DIR [--seconds 15]

Opens Train, Predict and Metrics first (they become tabs of one dock), then the sample; trains with the
Advanced settings open, predicts, scores; one screenshot per tab, and the window height printed each time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication
from screenshots import shoot, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=15.0, help="training time budget")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(show=True, title="napari-unet-trainer")
    window = viewer.window._qt_window
    window.setGeometry(0, 0, 1600, 1000)  # the whole screen (Xvfb has no window manager to maximize)
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
    _, predict = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Predict")
    _, metrics = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Metrics")
    wait(1.0)
    viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
    train._collapsible.expand(animate=False)
    train.set_settings(time_limit=args.seconds, preview_every=2)

    def show(widget) -> None:
        dock = widget.native.parentWidget()
        while dock is not None and not hasattr(dock, "setFloating"):
            dock = dock.parentWidget()
        dock.raise_()
        wait(0.5)
        screen = QApplication.primaryScreen().availableGeometry().height()
        print(f"window {window.width()}x{window.height()} on a {screen} px tall screen")

    show(train)
    train.start_training()
    wait(args.seconds * 3 + 30, until=lambda: not train.running)
    shoot(viewer, args.out / "train.png")
    show(predict)
    predict.start_prediction()
    wait(90, until=lambda: not predict.busy)
    shoot(viewer, args.out / "predict.png")
    show(metrics)
    wait(1.0)
    metrics.update_table()
    shoot(viewer, args.out / "metrics.png")
    viewer.close()


if __name__ == "__main__":
    main()
