"""Per-pair label modes: scribbles on one image, corrected complete masks (with a reviewed region) on another."""

import numpy as np
import pytest

from napari_unet import InputError
from napari_unet.labels import Annotation
from napari_unet.training.config import TrainConfig
from napari_unet.training.dataset import prepare_data


def _scribbles(labels: np.ndarray) -> np.ndarray:
    s = np.zeros_like(labels)
    s[15, 10:20] = 2  # a stroke inside the first disk
    s[2, 5:70] = 1  # a background stroke along the top
    return s


def test_mixed_pairs_read_each_in_its_own_mode(blobs):
    image, labels = blobs
    data = prepare_data([image, image], [_scribbles(labels), Annotation(labels, "dense")], TrainConfig())
    assert data.pair_modes == ["sparse", "dense"]
    assert data.mode == "sparse"  # scribbles anywhere: pseudo-labels and class balance as for scribbles
    assert data.boundaries  # the instance mask trains the boundary target
    sparse_t, dense_t = (s.target for s in data.samples)
    assert np.count_nonzero(sparse_t >= 0) == np.count_nonzero(_scribbles(labels))  # only the strokes count
    assert sparse_t.max() == 1  # scribbled foreground is object interior in a boundary model
    assert (dense_t >= 0).all() and set(np.unique(dense_t)) == {0, 1, 2}


def test_unreviewed_pixels_are_not_annotated(blobs):
    image, labels = blobs
    reviewed = np.zeros(labels.shape, bool)
    reviewed[:32, :40] = True  # the user checked the top-left quarter only
    data = prepare_data(image, Annotation(labels, "dense", reviewed), TrainConfig(instances=False))
    target = data.samples[0].target
    assert (target[reviewed] >= 0).all() and (target[~reviewed] == -1).all()
    assert data.n_annotated == reviewed.sum()


def test_a_reviewed_plane_without_objects_is_background():
    image = np.random.default_rng(0).normal(size=(2, 40, 40)).astype(np.float32)
    labels = np.zeros((2, 40, 40), np.uint16)
    labels[1, 10:20, 10:20] = 1
    reviewed = np.zeros(labels.shape, bool)
    reviewed[0] = True  # plane 0 checked: it really has no object
    reviewed[1] = True
    data = prepare_data(image, Annotation(labels, "dense", reviewed), TrainConfig(channel_axis=None))
    assert data.planes_used == 2
    plain = prepare_data(image, labels, TrainConfig(channel_axis=None, mode="dense"))
    assert plain.planes_used == 1  # without a reviewed mask an empty plane is unpainted


def test_plain_arrays_keep_the_run_mode(blobs):
    image, labels = blobs
    data = prepare_data([image], [labels], TrainConfig(mode="dense", instances=False))
    assert data.pair_modes == ["dense"] and not data.boundaries


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="complete"), "mode"),
        (dict(mode="dense", reviewed=np.ones((3, 3), bool)), "shape"),
        (dict(mode="sparse", reviewed=np.ones((64, 80), bool)), "complete masks"),
    ],
)
def test_bad_annotations_say_what_to_do(blobs, kwargs, match):
    with pytest.raises(InputError, match=match):
        Annotation(blobs[1], **kwargs)


def test_continuing_a_one_class_model_on_instance_masks_says_so(tiny_model, blobs):
    image, labels = blobs
    with pytest.warns(UserWarning, match="train a new model"):
        data = prepare_data(image, Annotation(labels, "dense"), TrainConfig(), tiny_model)
    assert not data.boundaries


def test_a_boundary_model_continued_with_scribbles_stays_one(blobs):
    from napari_unet import train

    image, labels = blobs
    model = train(image, labels, mode="dense", filters=4, depth=2, patch_size=32, batch_size=2, epochs=1,
                  steps_per_epoch=2, time_limit=None)  # fmt: skip
    assert model.meta["instances"] == "boundary"
    data = prepare_data(image, _scribbles(labels), TrainConfig(), model)
    assert data.boundaries and data.n_classes == model.n_classes
