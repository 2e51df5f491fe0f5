"""Volumes: a Z-stack learnt from a few painted planes and segmented as 3D objects (issue 18)."""

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import load_model, predict, save_model, train
from napari_unet.cli import main
from napari_unet.errors import InputError
from napari_unet.meta import volume_anisotropy
from napari_unet.metrics import evaluate, iou_matrix, object_scores
from napari_unet.model import UNet, volume_pools
from napari_unet.prediction3d import volume_labels
from napari_unet.training import Trainer
from napari_unet.volume import anisotropy_from_scale, anisotropy_from_tiff, boundary_target_volume, is_volume_model

TINY = {"filters": 4, "volume_depth": 2, "volume_patch_depth": 8, "volume_patch_size": 32, "volume_batch_size": 1}


@pytest.fixture
def balls():
    """A (12, 32, 36) volume with three balls (one id each) and its instance labels."""
    z, y, x = np.mgrid[:12, :32, :36]
    labels = np.zeros((12, 32, 36), np.uint16)
    for k, (cz, cy, cx, r) in enumerate([(5, 9, 9, 5), (6, 20, 24, 6), (4, 24, 8, 4)], start=1):
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = k
    rng = np.random.default_rng(0)
    image = (labels > 0) * 100.0 + rng.normal(20, 5, labels.shape)
    return image.astype(np.float32), labels


def test_anisotropic_pooling_and_odd_sizes():
    assert volume_pools(4.0, 3) == [(1, 2, 2), (1, 2, 2), 2]
    assert volume_pools(1.0, 2) == [2, 2]
    net = UNet(1, 2, 4, 3, spatial_dims=3, anisotropy=4.0)
    assert net.z_multiple == 2
    x = torch.randn(2, 1, 5, 33, 19, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 3, 5, 33, 19)
    out.sum().backward()
    assert x.grad is not None
    with pytest.raises(InputError, match="depth, height, width"):
        net(torch.randn(1, 1, 32, 32))


def test_volume_model_file_round_trip(tmp_path):
    net = UNet(1, 2, 4, 2, spatial_dims=3, anisotropy=2.5)
    net.meta["volume"] = {"anisotropy": 2.5}
    path = save_model(net, tmp_path / "v.pt")
    back = load_model(path)
    assert is_volume_model(back) and back.anisotropy == 2.5 and volume_anisotropy(back) == 2.5
    x = torch.randn(1, 1, 4, 16, 16)
    torch.testing.assert_close(back(x), net.eval()(x))
    assert not is_volume_model(load_model(save_model(UNet(1, 1, 4, 2), tmp_path / "p.pt")))


def test_boundary_target_looks_in_z_only_towards_painted_planes():
    labels = np.zeros((4, 8, 8), np.int32)
    labels[:, 2:6, 2:6] = 1
    labels[2, 2:6, 2:6] = 2  # another object above
    painted = np.array([True, True, False, True])
    t = boundary_target_volume(labels, painted)
    assert (t[2] == -1).all()  # an unpainted plane counts for nothing
    assert t[0, 3, 3] == 1  # interior: plane 1 above has the same object
    assert t[1, 3, 3] == 1  # its neighbour plane 2 is not painted: no Z boundary from it
    assert t[3, 3, 3] == 1 and t[0, 2, 2] == 2


def test_training_learns_from_painted_planes_only(balls):
    image, truth = balls
    painted = np.zeros_like(truth)
    painted[[4, 7]] = truth[[4, 7]]
    trainer = Trainer(image, painted, volume=True, mode="dense", time_limit=None, epochs=1, steps_per_epoch=3, **TINY)
    target = trainer.data.samples[0].target
    assert target.shape == truth.shape and trainer.planes_used == 2 and trainer.planes_total == 12
    assert (target[[0, 1, 2, 3, 5, 6, 8, 9, 10, 11]] == -1).all()
    assert trainer.boundaries and set(np.unique(target[4])) == {0, 1, 2}
    done = list(trainer.run())[-1]
    model = done.model
    assert done.steps == 3 and is_volume_model(model) and volume_anisotropy(model) == 1.0
    labels = predict(model, image, instances=True)
    assert labels.shape == truth.shape and labels.dtype == np.int32


def test_volume_steps_take_the_volume_batch(balls):
    """A volume step trains on ``volume_batch_size`` 3D patches, not the 2D ``batch_size`` (4x the work per step)."""
    image, truth = balls
    painted = np.zeros_like(truth)
    painted[[4, 7]] = truth[[4, 7]]
    trainer = Trainer(image, painted, volume=True, mode="dense", time_limit=None, epochs=1, steps_per_epoch=2, **TINY)
    trainer.config.volume_batch_size, trainer.config.batch_size = 3, 8
    asked = []
    batch = trainer.sampler.batch
    trainer.sampler.batch = lambda n: asked.append(n) or batch(n)
    list(trainer.run())
    assert asked and set(asked) == {3}


def test_training_from_scribbles_anywhere(balls):
    image, truth = balls
    strokes = np.zeros(truth.shape, np.uint8)
    strokes[5, 9, 6:12] = 2  # foreground strokes on two planes
    strokes[6, 18:23, 24] = 2
    strokes[1, 2, 2:30] = 1  # background on another plane
    strokes[10, 30, 2:30] = 1
    model = train(image, strokes, volume=True, anisotropy=2.0, time_limit=None, epochs=1, steps_per_epoch=2, **TINY)
    assert model.meta["label_mode"] == "sparse" and model.anisotropy == 2.0
    assert predict(model, image).shape == truth.shape


def test_2d_model_cannot_be_fine_tuned_as_a_volume(balls):
    image, truth = balls
    with pytest.raises(InputError, match="segments planes"):
        Trainer(image, truth, model=UNet(1, 2, 4, 2), volume=True, mode="dense", time_limit=None, epochs=1)
    with pytest.raises(InputError, match="a volume is"):
        Trainer(image[0], truth[0], volume=True, mode="dense", time_limit=None, epochs=1)


def test_3d_decoding_gives_one_id_per_object_through_z(balls):
    _, truth = balls
    fg = truth > 0
    interior = np.zeros_like(fg)
    for k in (1, 2, 3):
        from scipy import ndimage as ndi

        interior |= ndi.binary_erosion(truth == k, iterations=1)
    probs = np.stack([~fg, interior, fg & ~interior]).astype(np.float32)
    labels = volume_labels(probs, 0.5, True, True, 8.0)
    assert labels.max() == 3  # unique in the volume: three objects, not one per plane
    for k in (1, 2, 3):
        ids = np.unique(labels[truth == k])
        assert len(ids) == 1 and ids[0] > 0  # each ball keeps one id through Z


def _brute_force_matches(pred: np.ndarray, truth: np.ndarray, threshold: float) -> int:
    """Matched pairs at IoU > threshold (>= 0.5: at most one partner each), by a loop over object pairs."""
    matched = 0
    for t in np.unique(truth[truth > 0]):
        for p in np.unique(pred[pred > 0]):
            a, b = truth == t, pred == p
            iou = np.count_nonzero(a & b) / np.count_nonzero(a | b)
            matched += iou >= threshold
    return matched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_3d_matching_agrees_with_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    truth = np.zeros((6, 20, 20), np.int32)
    for k in range(1, 6):
        z, y, x = rng.integers(0, 4), rng.integers(0, 15), rng.integers(0, 15)
        truth[z : z + 3, y : y + 5, x : x + 5] = k
    pred = np.roll(truth, rng.integers(-1, 2), axis=int(rng.integers(0, 3)))
    pred[rng.random(pred.shape) < 0.02] = 9  # noise: a stray object
    s = object_scores(pred, truth, 0.5, volume=True)
    assert s["matched"] == _brute_force_matches(pred, truth, 0.5)
    assert s["objects_true"] == len(np.unique(truth[truth > 0]))
    assert s["objects_pred"] == len(np.unique(pred[pred > 0]))
    # the matrix itself, pair by pair
    iou = iou_matrix(pred, truth)
    t_ids, p_ids = np.unique(truth[truth > 0]), np.unique(pred[pred > 0])
    i, j = 0, len(p_ids) - 1
    a, b = truth == t_ids[i], pred == p_ids[j]
    assert iou[i, j] == pytest.approx(np.count_nonzero(a & b) / np.count_nonzero(a | b))


def test_volume_rows_match_in_3d_and_planes_on_request():
    truth = np.zeros((3, 10, 10), np.int32)
    truth[:, 2:6, 2:6] = 1
    pred = truth.copy()
    pred[1] *= 2  # the middle plane of the object has another id: two planes' worth is still IoU 2/3
    rows = evaluate(pred, truth, ["v"], volume=True)
    assert len(rows) == 1 and rows[0]["objects_true"] == 1 and rows[0]["objects_pred"] == 2
    assert rows[0]["matched"] == 1
    rows = evaluate(pred, truth, ["v"], volume=True, per_slice=True)
    assert [r["image"] for r in rows] == ["v", "v[0]", "v[1]", "v[2]"]
    assert evaluate(pred, truth, ["v"])[0]["objects_true"] == 3  # stacks without volume: plane by plane


def test_anisotropy_from_scale_and_tiff(tmp_path):
    assert anisotropy_from_scale((4.0, 0.5, 0.5)) == 8.0
    assert anisotropy_from_scale((1.0, 1.0)) is None
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"spacing": 2.0, "axes": "ZYX"})  # fmt: skip
    assert anisotropy_from_tiff(path) == pytest.approx(4.0)


def test_cli_train_volume_then_predict_and_evaluate(tmp_path, balls, capsys):
    image, truth = balls
    painted = np.zeros_like(truth)
    painted[[4, 7]] = truth[[4, 7]]
    tifffile.imwrite(tmp_path / "vol.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", painted)
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    model = tmp_path / "m.pt"
    args = ["train", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "lab.tif"), "-o", str(model)]
    rc = main([*args, "--dense", "--volume", "--anisotropy", "1.5", "--epochs", "1", "--filters", "4"])
    assert rc == 0 and is_volume_model(load_model(model)) and load_model(model).anisotropy == 1.5
    out = tmp_path / "out"
    assert main(["predict", str(model), str(tmp_path / "vol.tif"), "-o", str(out), "--instances"]) == 0
    labels = tifffile.imread(out / "vol_labels.tif")
    assert labels.shape == truth.shape
    capsys.readouterr()
    rc = main(["evaluate", "--pred", str(out / "vol_labels.tif"), "--truth", str(tmp_path / "truth.tif"), "--volume"])
    assert rc == 0 and "vol_labels.tif" in capsys.readouterr().out


def test_2d_only_prediction_options_are_refused_for_a_volume_model(balls):
    """A stitch threshold or test-time flips mean nothing to a volume model: said, not silently ignored."""
    image, _ = balls
    model = UNet(1, 1, 4, 2, spatial_dims=3)
    with pytest.raises(InputError, match="already keep one id through Z"):
        predict(model, image, instances=True, stitch_threshold=0.3)
    with pytest.raises(InputError, match="for 2D models"):
        predict(model, image, tta=True)
