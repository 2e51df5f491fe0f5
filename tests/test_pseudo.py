"""Pseudo-labels from strokes (forest + edge-snapped watershed) and the loss that weighs them."""

import numpy as np
import torch

from napari_unet.labels import IGNORE, PSEUDO
from napari_unet.training.losses import segmentation_loss, sparse_loss
from napari_unet.training.patches import PatchSampler, Sample
from napari_unet.training.pseudo import forest_probabilities, merge, pseudo_labels, snap_to_edges


def _strokes(labels: np.ndarray) -> np.ndarray:
    """Internal target: a short line in two of the disks (1) and two in the background (0)."""
    t = np.full(labels.shape, IGNORE, np.int16)
    t[15, 12:18] = 1
    t[40, 16:24] = 1
    t[2, 30:40] = 0
    t[60, 2:12] = 0
    assert np.all(labels[t == 1] > 0) and np.all(labels[t == 0] == 0)
    return t


def test_pseudo_labels_recover_the_disks(blobs):
    image, labels = blobs
    plane = (image / image.max())[None].astype(np.float32)
    target = _strokes(labels)
    probs = forest_probabilities(plane, target, 1, seed=0)
    assert probs.shape == (2, 64, 80)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    dense = pseudo_labels(plane, target, 1, seed=0)
    assert dense.dtype == np.int16 and set(np.unique(dense)) <= {0, 1}
    truth = labels > 0
    dice = 2 * np.count_nonzero((dense == 1) & truth) / (np.count_nonzero(dense == 1) + np.count_nonzero(truth))
    assert dice > 0.9  # all four disks, also the two without a stroke, with their edges
    np.testing.assert_array_equal(dense[target >= 0], target[target >= 0])  # strokes are kept as they are


def test_snap_to_edges_moves_a_fat_guess_to_the_edge():
    yy, xx = np.mgrid[:40, :40]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 <= 64
    plane = disk[None].astype(np.float32)
    probs = np.zeros((2, 40, 40), np.float32)
    probs[1] = (yy - 20) ** 2 + (xx - 20) ** 2 <= 9  # sure only in the middle
    probs[0] = (yy - 20) ** 2 + (xx - 20) ** 2 >= 196  # and far outside
    dense = snap_to_edges(plane, probs, np.full((40, 40), IGNORE, np.int16))
    assert np.count_nonzero((dense == 1) != disk) <= 0.1 * disk.sum()


def test_pseudo_labels_need_two_classes():
    plane = np.zeros((1, 16, 16), np.float32)
    target = np.full((16, 16), IGNORE, np.int16)
    target[3, 3:6] = 1
    assert np.all(pseudo_labels(plane, target, 1) == IGNORE)


def test_merge_keeps_strokes_and_excludes_held_out():
    target = np.array([[IGNORE, 0, 1, IGNORE]], np.int16)
    dense = np.array([[1, 1, 1, 0]], np.int16)
    held = np.array([[False, False, False, True]])
    np.testing.assert_array_equal(merge(target, dense, held), [[PSEUDO + 1, 0, 1, IGNORE]])


def test_sparse_loss_weighs_pseudo_labels_apart_from_strokes():
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 8, 8, requires_grad=True)
    target = torch.full((1, 8, 8), PSEUDO + 0)
    target[0, 4:] = PSEUDO + 1
    target[0, 0, 0], target[0, 7, 7] = 0, 1  # two stroke pixels
    strokes_only = torch.where(target < PSEUDO, target, torch.full_like(target, -1))
    assert torch.isclose(sparse_loss(logits, target, pseudo_weight=0.0), segmentation_loss(logits, strokes_only, True))
    pseudo = torch.where(target >= PSEUDO, target - PSEUDO, torch.full_like(target, -1))
    expected = segmentation_loss(logits, strokes_only, True) + 0.5 * segmentation_loss(logits, pseudo, False)
    assert torch.isclose(sparse_loss(logits, target, pseudo_weight=0.5), expected)
    sparse_loss(logits, target).backward()
    assert torch.all(logits.grad != 0)  # every pseudo-labelled pixel teaches something


def test_patch_sampler_centres_on_strokes_not_pseudo_labels():
    target = np.full((100, 100), PSEUDO, np.int16)
    target[10, 10], target[90, 90] = 0, 1
    sampler = PatchSampler([Sample(np.zeros((1, 100, 100), np.float32), target)], 16, np.random.default_rng(0))
    assert sorted(sampler.coords) == [0, 1]


def test_trainer_adds_pseudo_labels_for_scribbles_only(blobs, tiny):
    from napari_unet import Done, Trainer

    image, labels = blobs
    scribbles = (_strokes(labels) + 1).astype(np.uint8)  # 0 unannotated, 1 background, 2 foreground
    trainer = Trainer(image, scribbles, **tiny)
    assert trainer.mode == "sparse" and trainer.use_pseudo
    events = list(trainer.run())
    assert isinstance(events[-1], Done)
    t = trainer.train_samples[0].target
    assert np.count_nonzero(t >= PSEUDO) > 0.9 * t.size  # nearly every pixel pseudo-labelled
    np.testing.assert_array_equal(t[scribbles > 0], scribbles[scribbles > 0] - 1)
    assert not Trainer(image, scribbles, pseudo_labels="none", **tiny).use_pseudo
    assert not Trainer(image, labels, mode="dense", **tiny).use_pseudo
