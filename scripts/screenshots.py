"""Screenshots of the three dock widgets in use, from the real napari window (run under Xvfb on a headless box).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py [--out docs] [--seconds 20]

Opens the bundled sample with scribbles, trains with a live preview (screenshot mid-training), predicts every
opened image with contours and polygons, and shows the metrics table. PNGs are palette-quantized to stay small.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication


def wait(seconds: float, until=None) -> None:
    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            break
        time.sleep(0.01)
    for _ in range(5):
        app.processEvents()


def shoot(viewer: napari.Viewer, path: Path, max_bytes: int = 400_000) -> None:
    from PIL import Image

    wait(0.5)
    viewer.screenshot(str(path), canvas_only=False)
    image = Image.open(path).convert("RGB")
    for colors in (256, 128, 64):
        image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size <= max_bytes:
            break
    print(f"{path}: {image.size[0]}x{image.size[1]}, {path.stat().st_size / 1000:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(show=True, title="napari-unet-trainer")
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
    train._collapsible.expand(animate=False)
    train.set_settings(time_limit=args.seconds, preview_every=2)
    strokes = viewer.layers["nuclei strokes"]
    viewer.layers.selection.active = strokes
    wait(0.5)
    train.start_training()
    wait(3.0)  # the forest's pseudo-labels: the first preview, seconds after Train
    shoot(viewer, args.out / "first_preview.png")
    wait(args.seconds * 0.6 - 3.0)
    shoot(viewer, args.out / "train.png")
    wait(args.seconds * 2 + 30, until=lambda: not train.running)
    train._collapsible.collapse(animate=False)

    _, predict = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Predict", tabify=True)
    predict._polygons.value = True
    for name in ("nuclei preview",):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    predict.start_prediction()
    wait(60, until=lambda: not predict.running)
    shoot(viewer, args.out / "predict.png")

    _, metrics = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Metrics", tabify=True)
    wait(1.0)
    metrics.update_table()
    metrics.select_row(0)
    viewer.layers["nuclei ground truth"].visible = True
    viewer.layers["nuclei ground truth"].contour = 1
    viewer.layers["nuclei polygons"].visible = False
    shoot(viewer, args.out / "metrics.png")
    viewer.close()


if __name__ == "__main__":
    main()
