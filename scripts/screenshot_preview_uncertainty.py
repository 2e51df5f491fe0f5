"""Screenshot of the Train dock's live preview with 'Show uncertainty' ticked (docs/preview_uncertainty.png).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot_preview_uncertainty.py --out docs [--seconds 45]

Opens the sample, ticks 'Show uncertainty' in the Advanced settings, trains, and shoots the window with the
'nuclei uncertainty' layer over the preview, zoomed in twice, after 'Next unsure region' centred the view.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import napari
from screenshots import shoot, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=45.0, help="training time budget")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(show=True, title="napari-unet-trainer")
    viewer.window._qt_window.setGeometry(0, 0, 1600, 1000)
    viewer.open_sample("napari-unet-trainer", "nuclei_strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-trainer", "Train")
    for layer in viewer.layers:
        if "truth" in layer.name:
            layer.visible = False  # the picture is about the preview and its uncertainty
    train._collapsible.expand(animate=False)
    # a small network, so that a busy 2-core machine trains enough steps for a map that says something
    train.set_settings(
        time_limit=args.seconds, until_plateau=False, filters=8, depth=3, patch_size=64, batch_size=4,
        preview_every=2, preview_uncertainty=True,
    )  # fmt: skip
    wait(1.0)
    train.start_training()
    wait(args.seconds * 3 + 30, until=lambda: not train.running)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom *= 2  # closer, so the region the button centres on fills the canvas
    region = train.next_unsure_region()
    print("next unsure region:", region)
    from qtpy.QtWidgets import QScrollArea

    for area in train.native.findChildren(QScrollArea):  # the dock's end: the option, the plot, the button
        area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    shoot(viewer, args.out / "preview_uncertainty.png")
    viewer.close()


if __name__ == "__main__":
    main()
