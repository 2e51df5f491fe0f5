"""The docks with volumes: the Train dock's Volume (Z) setting, the live preview of a volume model, 3D scores."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets._metrics import MetricsWidget
from napari_unet._widgets._train import TrainWidget
from napari_unet._widgets._train_inputs import session_inputs
from napari_unet.jobs.predict import image_job, predict_job
from napari_unet.jobs.previews import Previewer
from napari_unet.model import UNet
from napari_unet.training.events import View


def _volume():
    truth = np.zeros((6, 24, 24), np.uint8)
    truth[1:5, 6:18, 6:18] = 1
    return truth


def test_train_dock_volume_setting_takes_anisotropy_from_the_layer_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    truth = _volume()
    image = viewer.add_image(truth.astype(np.float32), name="stack", scale=(3.0, 0.5, 0.5))
    labels = viewer.add_labels(truth, name="stack masks", scale=(3.0, 0.5, 0.5))
    widget = TrainWidget(viewer)
    widget.set_settings(volume=True, anisotropy=0)
    config = widget.config()
    assert config.volume and config.anisotropy is None
    *_, config = session_inputs([(image, labels)], config)
    assert config.anisotropy == 6.0
    widget.set_settings(anisotropy=2.0)
    assert widget.config().anisotropy == 2.0


def test_live_preview_of_a_volume_model_is_the_current_plane():
    image = _volume().astype(np.float32)
    model = UNet(1, 1, 4, 2, spatial_dims=3).eval()
    labels = Previewer([image], [False])(model, View(0, (3,), (2, 20), (4, 24)))
    assert labels.shape == (18, 20)


def test_predict_job_runs_a_volume_model_on_a_stack():
    image = _volume().astype(np.float32)
    model = UNet(1, 1, 4, 2, spatial_dims=3).eval()
    job = image_job(model, "stack", image, None, instances=True)
    events = list(predict_job(model, [job], instances=True, polygons=False))
    assert job.out.shape == image.shape and len(events) == 2 + image.shape[0]


def test_metrics_dock_matches_objects_in_3d(make_napari_viewer):
    viewer = make_napari_viewer()
    truth = _volume()
    viewer.add_labels(truth, name="cells ground truth")
    viewer.add_labels(truth.copy(), name="cells prediction", metadata={"napari_unet_role": "prediction"})
    widget = MetricsWidget(viewer)
    assert widget.update_table()[0]["objects_true"] == 4  # plane by plane
    widget._volume.value = True
    assert widget.update_table()[0]["objects_true"] == 1  # one 3D object
