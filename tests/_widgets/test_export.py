"""Train widget's Export writes a bioimage.io package; the Predict widget runs that package (round trip)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets._predict import PredictWidget
from napari_unet._widgets._train import TrainWidget

from .conftest import TINY, wait_until

pytest.importorskip("bioimageio.spec", reason="the bioimageio extra (pip install '.[bioimageio]')")


def test_export_button_then_predict_with_the_package(qtbot, sample_viewer, tiny_model, tmp_path, messages):
    from napari_unet import load_model, predict

    train = TrainWidget(sample_viewer)
    train.set_settings(**TINY)
    assert not train._files.export.enabled  # nothing to export yet
    with pytest.raises(Exception, match="no model to export"):
        train.export_model(tmp_path / "none.zip")
    train._store.set(tiny_model, "test model")
    assert train._files.export.enabled
    path = train.export_model(tmp_path / "unet")
    assert path == tmp_path / "unet.zip" and path.is_file()
    assert any("Exported unet.zip" in m for m in messages["info"])
    assert load_model(path).config == tiny_model.config

    widget = PredictWidget(sample_viewer)
    widget._source.value = "file"
    widget._file.value = path
    widget._all.value = False
    widget._images.value = [sample_viewer.layers["nuclei"]]
    widget.start_prediction()
    wait_until(qtbot, lambda: not widget.running, timeout=60)
    assert not messages["error"], messages
    expected = predict(tiny_model, sample_viewer.layers["nuclei"].data, instances=widget._instances.value)
    np.testing.assert_array_equal(widget.outputs[0].data, expected)
