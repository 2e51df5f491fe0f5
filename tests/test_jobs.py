"""The docks' Qt-free jobs run from a plain script: prediction events and outputs, scoring rows and means."""

from __future__ import annotations

import sys

import numpy as np

from napari_unet.jobs.events import ImageDone, ImageStarted, PlaneDone, Scored
from napari_unet.jobs.predict import image_job, predict_job
from napari_unet.jobs.score import MEAN, PAIR, ScoreRequest, csv_rows, score_job
from napari_unet.metrics import COLUMNS, evaluate


def test_jobs_import_no_qt_nor_napari():
    import subprocess

    code = (
        "import sys, napari_unet.jobs.predict, napari_unet.jobs.score;"
        "sys.exit(any(m.split('.')[0] in ('qtpy', 'napari', 'magicgui', 'torch') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_predict_job_fills_the_outputs_plane_by_plane(tiny_model, blobs):
    image, _ = blobs
    jobs = [image_job(tiny_model, "stack", np.stack([image, image]), None, instances=True)]
    events = list(predict_job(tiny_model, jobs, instances=True, polygons=True))
    assert [type(e) for e in events] == [ImageStarted, PlaneDone, PlaneDone, ImageDone]
    assert [e.where for e in events if isinstance(e, PlaneDone)] == [(0,), (1,)]
    out = jobs[0].out
    assert out.shape == (2, *image.shape) and out.dtype == np.int32 and out.any()
    done = events[-1]
    assert done.n_objects > 0 and len(done.polygons) == len(np.unique(out)) - 1


def test_score_job_rows_means_and_csv_rows():
    truth = np.zeros((32, 32), np.uint8)
    truth[8:24, 8:24] = 1
    pred = np.roll(truth, 4, axis=0)
    request = ScoreRequest(
        data=[(pred, truth), (truth, truth)], names=[("a", "a gt"), ("b", "b gt")], instances=[False, False]
    )
    (scored,) = list(score_job(request))
    assert isinstance(scored, Scored) and scored.as_foreground == ()
    assert [(r["image"], r["ground truth"], r[PAIR]) for r in scored.rows] == [("a", "a gt", 0), ("b", "b gt", 1)]
    assert scored.rows[0]["dice"] == evaluate(pred, truth)[0]["dice"]
    (mean,) = scored.means
    assert mean[MEAN] and mean["image"] == "mean" and mean["dice"] == (scored.rows[0]["dice"] + 1.0) / 2
    rows = csv_rows(scored.rows + scored.means)
    assert [r["image"] for r in rows] == ["a", "b"] and all(list(r) == list(COLUMNS) for r in rows)


def test_previews_map_uncertainty_of_the_same_box_when_asked(tiny_model, blobs):
    """The live preview's uncertainty: the box's shape, in [0, 1], from the probabilities its labels come from."""
    from napari_unet.jobs.previews import Previewer
    from napari_unet.training.events import View

    image, _ = blobs
    previewer = Previewer([image], [False])
    view = View(0, (), (4, 44), (8, 56))
    labels, unsure = previewer.with_uncertainty(tiny_model, view)
    np.testing.assert_array_equal(labels, previewer(tiny_model, view))
    assert unsure.shape == labels.shape == (40, 48) and unsure.dtype == np.float32
    assert unsure.min() >= 0.0 and unsure.max() <= 1.0 and unsure.max() > 0.0


def test_train_session_previews_carry_uncertainty_only_when_asked(blobs):
    from napari_unet.jobs.train_session import Inbox, train_rounds
    from napari_unet.training import Preview, TrainConfig, View

    image, mask = blobs
    cfg = TrainConfig(time_limit=None, epochs=1, steps_per_epoch=3, filters=4, depth=2, patch_size=32, batch_size=2)
    for asked in (True, False):
        inbox = Inbox(preview=True, preview_interval=0.0, uncertainty=asked)
        inbox.post_view(View(0, (), (0, 40), (8, 48)))
        previews = [e for e in train_rounds([image], [(mask > 0).astype(np.uint8)], cfg, None, inbox)
                    if isinstance(e, Preview)]  # fmt: skip
        assert previews and all(p.labels.shape == (40, 40) for p in previews)
        if asked:
            assert all(p.uncertainty.shape == (40, 40) and 0 <= p.uncertainty.min() <= p.uncertainty.max() <= 1
                       for p in previews)  # fmt: skip
        else:
            assert all(p.uncertainty is None for p in previews)
