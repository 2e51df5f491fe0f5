"""Run in a fresh virtual environment where only the built wheel is installed (see .ci/run), under xvfb-run:
the plugin is found under its distribution name, its sample loads and its three widgets open in napari."""

import sys
from pathlib import Path

import napari

import napari_unet

NAME = "napari-unet-trainer"
assert "site-packages" in Path(napari_unet.__file__).parts, f"not the installed wheel: {napari_unet.__file__}"
viewer = napari.Viewer(show=False)
viewer.open_sample(NAME, "nuclei_strokes")
for widget_name in ("Train", "Predict", "Metrics"):
    _, widget = viewer.window.add_plugin_dock_widget(NAME, widget_name)
    assert type(widget).__name__ == f"{widget_name}Widget", widget
viewer.close()
print(f"{NAME} {napari_unet.__version__}: sample and widgets open from the installed wheel ({sys.prefix})")
