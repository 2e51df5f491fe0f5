"""Instance ids across the planes of a stack: unique, and linked through Z on request."""

import numpy as np
import pytest

import napari_unet.prediction as prediction
from napari_unet import InputError
from napari_unet.model import UNet
from napari_unet.stitching import StackIds

PLANE = np.array(
    [
        [1, 1, 0, 0, 2, 2],
        [1, 1, 0, 0, 2, 2],
        [0, 0, 0, 0, 2, 2],
    ],
    np.int32,
)


def test_ids_are_unique_across_the_stack():
    ids = StackIds()
    planes = [ids((z,), PLANE) for z in range(3)]
    assert [np.unique(p[p > 0]).tolist() for p in planes] == [[1, 2], [3, 4], [5, 6]]
    assert ids.max_id == 6


def test_stitching_links_overlapping_objects_through_z_only():
    ids = StackIds(stitch_threshold=0.5)
    moved = np.zeros_like(PLANE)
    moved[:, 4:] = 7  # object 2 stays, object 1 gone, a new object far away
    moved[2, :2] = 9
    out = [ids((0, 0), PLANE), ids((0, 1), moved), ids((1, 0), PLANE)]
    assert np.unique(out[1][out[1] > 0]).tolist() == [2, 3]  # 7 -> 2 (same object), 9 -> new id 3
    assert out[1][0, 4] == 2 and out[1][2, 0] == 3
    assert np.unique(out[2][out[2] > 0]).tolist() == [4, 5]  # next time point: not stitched to the last Z
    low = StackIds(stitch_threshold=0.9)
    low((0,), PLANE)
    half = np.zeros_like(PLANE)
    half[:2, 4] = 1  # IoU 2/6 with object 2: below the threshold, a new object
    assert np.unique(low((1,), half)[half > 0]).tolist() == [3]
    with pytest.raises(InputError, match="stitch_threshold"):
        StackIds(1.5)


def test_predict_numbers_instances_across_the_stack(monkeypatch):
    monkeypatch.setattr(prediction, "_labels_from_probs", lambda probs, threshold, instances, *rest: PLANE.copy())
    model = UNet(in_channels=1, filters=4, depth=2)
    stack = np.random.default_rng(0).random((3, *PLANE.shape)).astype(np.float32)
    labels = prediction.predict(model, stack, instances=True, device="cpu")
    assert labels.tolist() != [PLANE.tolist()] * 3  # was: ids 1, 2 in every plane
    assert [np.unique(p[p > 0]).tolist() for p in labels] == [[1, 2], [3, 4], [5, 6]]
    stitched = prediction.predict(model, stack, instances=True, stitch_threshold=0.5, device="cpu")
    assert np.array_equal(stitched, np.stack([PLANE] * 3))
    with pytest.raises(InputError, match="instances"):
        prediction.predict(model, stack, stitch_threshold=0.5, device="cpu")
