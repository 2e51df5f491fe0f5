"""Instances learned from instance masks: the boundary target, its decoding, training and prediction."""

import numpy as np
import pytest
from skimage.draw import disk

import napari_unet as nu
from napari_unet.instances import boundary_target, decode_instances
from napari_unet.labels import is_instance_labels
from napari_unet.metrics import object_scores


def touching_discs(shape=(48, 64), r=10, centres=((24, 20), (24, 39))):
    """Two touching discs (ids 1 and 2) and an image bright at their centres, darker at their rims."""
    lab = np.zeros(shape, np.int32)
    img = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k, c in enumerate(centres, start=1):
        rr, cc = disk(c, r, shape=shape)
        lab[rr, cc] = k
        d = np.hypot(yy - c[0], xx - c[1]) / r
        img = np.maximum(img, np.where(d < 1, 1.0 - 0.6 * d**2, 0.0))
    return img, lab


def one_hot(target: np.ndarray) -> np.ndarray:
    return np.stack([target == k for k in range(3)]).astype(np.float32)


def test_boundary_target_marks_object_rims_and_contacts():
    _, lab = touching_discs()
    t = boundary_target(lab)
    assert t.dtype == np.int16 and set(np.unique(t)) == {0, 1, 2}
    assert np.array_equal(t > 0, lab > 0)  # the foreground is unchanged
    # where the discs touch, both sides are boundary: no interior pixel of 1 touches one of 2
    contact = (lab == 1) & np.roll(lab == 2, -1, axis=1)
    assert contact.any() and np.all(t[contact] == 2)
    # a stack: plane by plane; a binary mask: the outline of its pieces
    assert np.array_equal(boundary_target(np.stack([lab, lab]))[1], t)
    assert set(np.unique(boundary_target((lab > 0).astype(np.uint8)))) == {0, 1, 2}
    assert is_instance_labels(lab) and not is_instance_labels(lab > 0)


def test_decoding_separates_touching_objects_and_keeps_their_extent():
    _, lab = touching_discs()
    probs = one_hot(boundary_target(lab))
    inst = decode_instances(probs)
    s = object_scores(inst, lab, 0.9)
    assert (s["objects_pred"], s["matched"]) == (2, 2)
    assert np.array_equal(inst > 0, lab > 0)
    empty = np.zeros((3, 8, 8), np.float32)
    empty[0] = 1
    assert decode_instances(empty).max() == 0


def test_decoding_keeps_an_object_without_interior():
    probs = np.zeros((3, 20, 20), np.float32)
    probs[0] = 1
    probs[:, 5:9, 5:9] = [[[0.2]], [[0.1]], [[0.7]]]  # a small blob seen as boundary only
    inst = decode_instances(probs)
    assert inst.max() == 1 and np.count_nonzero(inst) == 16


def test_training_on_instance_masks_learns_the_boundary_target_and_splits_touching_discs():
    img, lab = touching_discs()
    trainer = nu.Trainer(
        img, lab, mode="dense", epochs=12, time_limit=None, steps_per_epoch=10, filters=8, depth=2,
        patch_size=48, batch_size=4, augment=False, learning_rate=1e-2, val_fraction=0.0,
    )  # fmt: skip
    assert trainer.boundaries and trainer.n_classes == 2  # interior and boundary
    model = [e for e in trainer.run()][-1].model
    assert model.meta["instances"] == "boundary" and model.out_channels == 3
    assert 19 <= model.meta["object_size"] <= 21  # the discs' diameter: spaces seeds, sizes specks
    semantic = nu.predict(model, img)
    assert semantic.dtype == np.uint8 and semantic.max() == 1  # semantic output: the foreground
    inst = nu.predict(model, img, instances=True)
    s = object_scores(inst, lab, 0.5)
    assert (s["objects_pred"], s["matched"]) == (2, 2)


def test_binary_and_multiclass_masks_keep_their_targets():
    img, lab = touching_discs()
    binary = nu.Trainer(img, (lab > 0).astype(np.uint8), mode="dense", epochs=1, time_limit=None)
    assert not binary.boundaries and binary.n_classes == 1
    classes = nu.Trainer(img, lab, mode="dense", multiclass=True, epochs=1, time_limit=None)
    assert not classes.boundaries and classes.n_classes == 2
    forced = nu.Trainer(img, lab, mode="dense", instances=False, epochs=1, time_limit=None)
    assert not forced.boundaries and forced.n_classes == 1
    with pytest.raises(nu.InputError, match="instances=True"):
        nu.Trainer(img, lab, mode="dense", multiclass=True, instances=True, epochs=1, time_limit=None)


def test_object_size_from_strokes_cleaning_and_spacing():
    from napari_unet.instances import clean_mask, object_size_from_strokes, speck_size, watershed_spacing

    strokes = np.zeros((64, 64), np.uint8)
    strokes[10, 5:17] = 2  # three foreground strokes of 12 pixels across objects
    strokes[30, 20:32] = 2
    strokes[40:52, 50] = 3  # another class counts too
    strokes[60, 0:40] = 1  # background strokes do not
    size = object_size_from_strokes(strokes)
    assert 12 <= size <= 13
    assert object_size_from_strokes(np.ones((8, 8), np.uint8)) is None
    assert speck_size(size) == int(0.05 * np.pi * (size / 2) ** 2) and speck_size(None) == 0
    assert watershed_spacing(None) == 4 and watershed_spacing(40.0) == 13
    mask = np.zeros((40, 40), np.uint8)
    mask[5:25, 5:25] = 1
    mask[10:12, 10:12] = 0  # a 4-pixel hole
    mask[30:32, 30:32] = 1  # a 4-pixel speck
    out = clean_mask(mask, size)
    assert out[10, 10] == 1 and out[30, 30] == 0 and out[15, 15] == 1
    assert np.array_equal(clean_mask(mask, None), mask)


def test_scribble_model_records_object_size_and_cleans_its_output():
    img, lab = touching_discs()
    strokes = np.zeros(lab.shape, np.uint8)
    strokes[24, 14:27] = 2
    strokes[2, 2:40] = 1
    model = nu.train(img, strokes, mode="sparse", epochs=1, steps_per_epoch=2, time_limit=None, pseudo_labels="none")
    assert 12 <= model.meta["object_size"] <= 14 and model.meta["instances"] is None


def test_object_size_from_masks():
    from napari_unet.instances import object_size_from_masks

    _, lab = touching_discs(r=10)
    size = object_size_from_masks(lab)
    assert 19 <= size <= 21  # discs of radius 10
    assert object_size_from_masks((lab > 0).astype(np.uint8)) > 25  # a binary mask: its connected pieces
    assert object_size_from_masks(np.zeros((4, 4), int)) is None
