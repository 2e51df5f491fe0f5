"""napari finds the top-level napari.yaml through the installed package, and it validates with imports."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_installed_manifest_is_the_top_level_file():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unet-trainer")
    top = yaml.safe_load((ROOT / "napari.yaml").read_text())
    assert manifest.name == top["name"] == "napari-unet-trainer"
    assert {s.key for s in manifest.contributions.sample_data} == {
        s["key"] for s in top["contributions"]["sample_data"]
    }


def test_npe2_validate_with_imports():
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-unet-trainer", "--imports"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_core_never_imports_qt_or_napari():
    code = (
        "import sys, napari_unet, napari_unet.cli, napari_unet.sample_data, napari_unet.strokes, napari_unet.export;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_sample_data():
    from napari_unet.sample_data import make_nuclei_sample, make_nuclei_strokes_sample

    (img, _, kind), (gt, _, gkind) = make_nuclei_sample()
    assert img.shape == gt.shape == (512, 512) and kind == "image" and gkind == "labels"
    strokes = make_nuclei_strokes_sample()[2][0]
    assert set(np.unique(strokes)) == {0, 1, 2} and (strokes > 0).mean() <= 0.002


def test_widget_modules_import_without_torch():
    """napari lists plugin widgets at start-up; torch (seconds to import) loads only when work starts."""
    code = (
        "import sys, napari_unet, napari_unet._widgets._train, napari_unet._widgets._predict,"
        " napari_unet._widgets._metrics; sys.exit('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_public_api_is_complete():
    import napari_unet

    for name in napari_unet.__all__:
        assert getattr(napari_unet, name) is not None
    assert callable(napari_unet.train) and callable(napari_unet.predict)
