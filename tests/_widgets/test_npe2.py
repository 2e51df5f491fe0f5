"""The manifest validates with its imports, and contributes the three widgets and the Layers > Segment menu."""

from __future__ import annotations

import subprocess
import sys

from npe2 import PluginManifest


def test_npe2_validate_with_imports():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-unet-trainer", "--imports"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_widgets_and_menu_are_contributed():
    manifest = PluginManifest.from_distribution("napari-unet-trainer")
    widgets = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert widgets == {
        "Train": "napari-unet-trainer.train",
        "Predict": "napari-unet-trainer.predict",
        "Metrics": "napari-unet-trainer.metrics",
    }
    menus = manifest.contributions.menus
    assert any(
        getattr(item, "submenu", None) == "napari-unet-trainer.segment" for item in menus["napari/layers/segment"]
    )
    commands = [*widgets.values(), "napari-unet-trainer.correct_prediction"]
    assert [item.command for item in menus["napari-unet-trainer.segment"]] == commands


def test_plugin_dock_widgets_open(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("Train", "Predict", "Metrics"):
        dock, widget = viewer.window.add_plugin_dock_widget("napari-unet-trainer", name)
        assert type(widget).__name__ == f"{name}Widget"
