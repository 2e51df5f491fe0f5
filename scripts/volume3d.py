"""Screenshot of a volume's result in napari's 3D view: nuclei3d segmented as 3D objects by a volume model
trained on complete masks of planes 5, 15 and 25 (docs/volume3d.png, for the README).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/volume3d.py [--steps 100] [--model m.pt] [--out docs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import shoot, wait  # noqa: E402

import napari_unet as nu  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei3d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps of the volume model")
    parser.add_argument("--model", default=None, help="a volume model file to use instead of training")
    parser.add_argument("--out", default="docs", help="folder of volume3d.png")
    args = parser.parse_args()
    image = tifffile.imread(DATA / "nuclei3d.tif")
    truth = tifffile.imread(DATA / "nuclei3d_labels.tif")
    if args.model:
        model = nu.load_model(args.model)
    else:
        masks = np.zeros_like(truth)
        for z in (5, 15, 25):
            masks[z] = truth[z]
        epochs = max(1, args.steps // 20)
        model = nu.train(image, masks, volume=True, mode="dense", time_limit=None, epochs=epochs)
    labels = nu.predict(model, image, instances=True)
    print(f"{labels.max()} objects for {len(np.unique(truth)) - 1} nuclei")

    import napari

    viewer = napari.Viewer(title="napari-unet: a volume segmented as 3D objects")
    viewer.window.resize(1400, 900)
    viewer.add_image(image, name="nuclei3d", colormap="gray", opacity=0.6)
    viewer.add_labels(labels, name="nuclei3d objects (volume model)")
    viewer.dims.ndisplay = 3
    viewer.camera.angles = (-20, 35, 140)
    viewer.camera.zoom = 9
    wait(1.0)
    shoot(viewer, Path(args.out) / "volume3d.png")
    viewer.close()


if __name__ == "__main__":
    main()
