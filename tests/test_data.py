import numpy as np
import pytest
import torch

from napari_unet import InputError
from napari_unet.images import guess_channel_axis, iter_slices
from napari_unet.labels import count_classes, guess_label_mode, labels_to_target
from napari_unet.normalization import normalize
from napari_unet.training.augmentation import Augmentation
from napari_unet.training.patches import PatchSampler, Sample


def test_normalize_robust_and_safe():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (1, 50, 50)).astype(np.float32)
    img[0, 0, 0] = 1e6  # one hot pixel must not squash the rest
    img[0, 1, 1] = np.nan
    out = normalize(img)
    assert np.isfinite(out).all() and out[0, 1, 1] == 0
    assert 0.3 < np.median(out) < 0.7
    assert np.all(normalize(np.full((2, 8, 8), 7.0)) == 0)  # constant: zeros, no division by zero
    assert np.all(normalize(np.full((1, 8, 8), np.nan)) == 0)


def test_label_conventions():
    sparse = np.array([[0, 1, 2, 3]])
    assert labels_to_target(sparse, "sparse").tolist() == [[-1, 0, 1, 2]]
    inst = np.array([[0, 5, 17, 0]])
    assert labels_to_target(inst, "dense").tolist() == [[0, 1, 1, 0]]
    assert labels_to_target(np.array([[0, 2, 1]]), "dense", multiclass=True).tolist() == [[0, 2, 1]]


@pytest.mark.parametrize(
    "labels,match",
    [
        (np.array([[0.5, 1.0]]), "fractional"),
        (np.array([[-1, 2]]), "negative"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(InputError, match=match):
        labels_to_target(labels, "dense")


def test_nothing_or_one_class_annotated():
    with pytest.raises(InputError, match="Nothing is annotated"):
        count_classes([labels_to_target(np.zeros((4, 4), int), "sparse")])
    with pytest.raises(InputError, match="Only background"):
        count_classes([labels_to_target(np.ones((4, 4), int), "sparse")])
    with pytest.raises(InputError, match="Only class 1"):
        count_classes([labels_to_target(np.ones((4, 4), int), "dense")])
    n, counts = count_classes([labels_to_target(np.array([[0, 1, 2, 3]]), "sparse")])
    assert n == 2 and counts[:3].tolist() == [1, 1, 1]


def test_guess_label_mode():
    strokes = np.zeros((50, 50), int)
    strokes[5, 5:20], strokes[30, 5:20] = 1, 2
    assert guess_label_mode([strokes]) == "sparse"
    inst = np.zeros((50, 50), int)
    inst[:10, :10], inst[20:30, 20:30] = 1, 2
    inst[40:, 40:] = 60
    assert guess_label_mode([inst]) == "dense"
    assert guess_label_mode([(inst > 0).astype(int)]) == "dense"
    few = np.zeros((50, 50), int)  # an instance mask of 5 blobs: not scribbles
    for k in range(1, 6):
        few[8 * k : 8 * k + 5, 10:16] = k
    assert guess_label_mode([few]) == "dense"
    one_each = np.zeros((50, 50), int)  # one background and one foreground stroke
    one_each[5, 5:20], one_each[30, 5:20] = 1, 2
    assert guess_label_mode([one_each]) == "sparse"
    three = strokes.copy()  # background in two pieces, two classes
    three[40, 5:20], three[45, 30:40] = 3, 1
    assert guess_label_mode([three]) == "sparse"
    from napari_unet.sample_data import nuclei_labels

    assert guess_label_mode([nuclei_labels()[:200, :200]]) == "dense"


def test_channel_axis_detection():
    assert guess_channel_axis((64, 64)) is None
    assert guess_channel_axis((64, 64, 3)) == 2
    assert guess_channel_axis((5, 64, 64)) is None  # a Z stack, not channels
    assert guess_channel_axis((2, 64, 64), in_channels=2) == 0
    with pytest.raises(InputError, match="looks multi-channel"):
        guess_channel_axis((64, 64, 3), in_channels=1)
    with pytest.raises(InputError, match="expects 2 channels"):
        guess_channel_axis((64, 64), in_channels=2)


def test_iter_slices_stacks_and_channels():
    a = np.random.default_rng(0).random((2, 3, 5, 7, 4))
    planes = list(iter_slices(a, channel_axis=1))
    assert len(planes) == 2 * 5 and planes[0][1].shape == (3, 7, 4)
    np.testing.assert_allclose(planes[6][1], a[1, :, 1], rtol=1e-6)
    rgb = a[0, 0, :, :, :3]
    ((idx, plane),) = iter_slices(rgb, channel_axis=-1)
    assert idx == () and plane.shape == (3, 5, 7)


def test_sampler_favours_annotation_and_pads_small_images():
    rng = np.random.default_rng(0)
    target = np.full((200, 200), -1, np.int16)
    target[150, 150:160] = 1
    target[20, 20:30] = 0
    sampler = PatchSampler([Sample(np.zeros((1, 200, 200), np.float32), target)], 32, rng)
    _, y = sampler.batch(64)
    assert y.shape == (64, 32, 32)
    assert (y >= 0).flatten(1).any(1).float().mean() > 0.6
    small = PatchSampler([Sample(np.zeros((1, 10, 12), np.float32), np.zeros((10, 12), np.int16))], 32, rng)
    x, y = small.batch(2)
    assert x.shape == (2, 1, 32, 32) and (y == -1).any()


def test_augmentation_keeps_labels_aligned_and_is_seeded():
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:20, 8:20] = 1.0
    y = (x[:, 0] > 0.5).long()
    aug = Augmentation(elastic=1.0, intensity=0.0, noise=0.0)
    xa, ya = aug(x, y, torch.Generator().manual_seed(1))
    xb, yb = aug(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    valid = ya >= 0
    agree = ((xa[:, 0] > 0.5).long() == ya)[valid].float().mean()
    assert agree > 0.97
    assert set(ya.unique().tolist()) <= {-1, 0, 1}
