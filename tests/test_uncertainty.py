"""The uncertainty map: in [0, 1], high where the model is wrong, per plane of a stack; unsure regions to paint;
the CLI's --uncertainty and --probabilities files."""

import numpy as np
import pytest
import tifffile

from napari_unet import InputError, predict, predict_uncertainty, unsure_regions
from napari_unet.checkpoint import save_model
from napari_unet.cli import main
from napari_unet.uncertainty import entropy, margin


def test_entropy_and_margin_are_zero_when_sure_and_one_at_a_tie():
    p = np.array([[[0.0, 0.5, 1.0, 0.9]]], np.float32)  # (1, 1, 4): one foreground probability
    assert np.allclose(entropy(p)[0], [0, 1, 0, entropy(p)[0, 3]], atol=1e-5) and 0 < entropy(p)[0, 3] < 0.5
    assert np.allclose(margin(p)[0], [0, 1, 0, 0.2], atol=1e-6)
    three = np.array([[1 / 3, 0.9], [1 / 3, 0.05], [1 / 3, 0.05]], np.float32)[:, None]  # (3, 1, 2)
    assert entropy(three)[0, 0] == pytest.approx(1, abs=1e-5) and entropy(three)[0, 1] < 0.4
    # a boundary model: interior vs boundary is no doubt about the foreground
    split = np.array([[0.0], [0.5], [0.5]], np.float32)[:, None]
    assert entropy(split, boundary=True)[0, 0] == pytest.approx(0, abs=1e-5)


def test_the_map_is_in_0_1_and_higher_where_the_model_is_wrong(tiny_model, blobs):
    image, labels = blobs
    # a disk the model has never seen, dimmer than the training disks: the model must hesitate there
    yy, xx = np.mgrid[:64, :80]
    faint = (yy - 30) ** 2 + (xx - 40) ** 2 <= 36
    test = image.copy()
    test[faint] = 120 + np.random.default_rng(1).normal(0, 10, faint.sum())
    truth = (labels > 0) | faint
    pred, unsure = predict_uncertainty(tiny_model, test)
    assert unsure.dtype == np.float32 and unsure.shape == labels.shape
    assert unsure.min() >= 0 and unsure.max() <= 1
    wrong = (pred > 0) != truth
    assert wrong.any() and unsure[wrong].mean() > 2 * unsure[~wrong].mean()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(wrong.ravel(), unsure.ravel()) > 0.8
    # the labels are predict's (up to the averaging over flips), and predict's default return is unchanged
    plain = predict(tiny_model, test)
    assert isinstance(plain, np.ndarray) and np.mean(plain == pred) > 0.97


def test_stacks_are_mapped_per_plane(tiny_model, blobs):
    image, _ = blobs
    stack = np.stack([image, np.full_like(image, 50.0)])
    labels, unsure = predict_uncertainty(tiny_model, stack, channel_axis=None, method="entropy")
    assert labels.shape == unsure.shape == stack.shape
    one = predict_uncertainty(tiny_model, image, method="entropy")[1]
    assert np.allclose(unsure[0], one, atol=1e-3)


def test_unsure_regions_largest_first_and_not_where_annotated():
    u = np.zeros((40, 40), np.float32)
    u[2:6, 2:6] = 0.9  # 16 px
    u[10:20, 10:20] = 0.8  # 100 px
    u[30:38, 30:38] = 0.7  # 64 px
    u[0, 39] = 1.0  # one pixel: too small to paint
    regions = unsure_regions(u)
    assert [r.area for r in regions] == [100, 64, 16]
    assert regions[0].centroid == pytest.approx((14.5, 14.5)) and regions[0].bbox == (10, 10, 20, 20)
    annotated = np.zeros((40, 40), np.uint8)
    annotated[10:20, 10:15] = 2  # half of the largest is painted already
    assert [r.area for r in unsure_regions(u, annotated)] == [64, 50, 16]
    stack = np.stack([u, u])
    assert len(unsure_regions(stack)) == 6 and unsure_regions(stack)[0].centroid[0] in (0.0, 1.0)
    with pytest.raises(InputError, match="shape"):
        unsure_regions(u, annotated[:10])


def test_cli_writes_uncertainty_and_probabilities(tmp_path, tiny_model, blobs):
    image, _ = blobs
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([image, image[::-1]]))
    save_model(tiny_model, tmp_path / "m.pt")
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "m.pt"), str(tmp_path / "img.tif"), str(tmp_path / "stack.tif"), "-o",
            str(out), "--uncertainty", "--probabilities"]  # fmt: skip
    assert main(args) == 0
    u = tifffile.imread(out / "img_uncertainty.tif")
    p = tifffile.imread(out / "img_probabilities.tif")
    assert u.dtype == np.float32 and u.shape == image.shape and u.min() >= 0 and u.max() <= 1
    assert p.dtype == np.float32 and p.shape == (1, *image.shape) and p.min() >= 0 and p.max() <= 1
    assert np.array_equal(p[0] > 0.5, tifffile.imread(out / "img_labels.tif") > 0)  # binary: the foreground's
    assert tifffile.imread(out / "stack_uncertainty.tif").shape == (2, *image.shape)
    # never over an existing file
    assert main(args) != 0


def test_a_thin_rim_of_doubt_is_not_an_unsure_region_unless_nothing_else_is():
    """Every outline is a ring of doubt 1-2 px wide: the blob of doubt comes first even when the ring has more
    pixels, and a map of rims only still gives them."""
    u = np.zeros((80, 80), np.float32)
    u[10, 5:75] = u[70, 5:75] = 0.9  # two long 1-px rims, 70 px each
    u[30:37, 30:37] = 0.8  # a 7 x 7 blob, 49 px
    regions = unsure_regions(u)
    assert len(regions) == 1 and regions[0].area == 49
    rims_only = u.copy()
    rims_only[30:37, 30:37] = 0
    assert [r.area for r in unsure_regions(rims_only)] == [70, 70]
