import numpy as np
import pytest

from napari_unet import InputError, UNet, evaluate, iter_predict, predict, predict_proba
from napari_unet.instances import split_instances
from napari_unet.prediction import predict_proba_plane, probabilities_to_labels


def test_tiled_equals_whole_image(tiny_model, blobs):
    """Overlapping tiles blended smoothly agree with one pass over the whole image."""
    from napari_unet.normalization import normalize

    plane = normalize(np.tile(blobs[0], (3, 2))[None, :150, :130])
    whole = predict_proba_plane(tiny_model, plane, tile_size=512, precision="fp32")
    tiled = predict_proba_plane(tiny_model, plane, tile_size=48, overlap=16, batch_size=3, precision="fp32")
    assert tiled.shape == whole.shape == (1, 150, 130)
    assert np.mean(np.abs(tiled - whole)) < 0.02
    confident = np.abs(whole - 0.5) > 0.1
    assert ((tiled > 0.5) == (whole > 0.5))[confident].mean() > 0.98


@pytest.mark.parametrize("shape", [(8, 8), (9, 300), (33, 47)])
def test_any_size(tiny_model, shape):
    out = predict(tiny_model, np.random.default_rng(0).random(shape), tile_size=64, overlap=8)
    assert out.shape == shape and out.dtype == np.uint8


def test_stack_streams_plane_by_plane(tiny_model, blobs):
    image, labels = blobs
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    planes = list(iter_predict(tiny_model, stack))
    assert [idx for idx, _ in planes] == [(0,), (1,), (2,)]
    out = predict(tiny_model, stack)
    assert out.shape == stack.shape
    np.testing.assert_array_equal(out[1], predict(tiny_model, image[::-1]))
    preallocated = np.zeros(stack.shape, np.uint8)
    assert predict(tiny_model, stack, out=preallocated) is preallocated


def test_probabilities_to_labels():
    p = np.array([[[0.2, 0.7]]])
    assert probabilities_to_labels(p).tolist() == [[0, 1]]
    assert probabilities_to_labels(p, threshold=0.8).tolist() == [[0, 0]]
    multi = np.array([[[0.1, 0.8]], [[0.7, 0.1]], [[0.2, 0.1]]])
    assert probabilities_to_labels(multi).tolist() == [[1, 0]]


def test_split_touching_objects():
    yy, xx = np.mgrid[:40, :60]
    mask = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100) | ((yy - 20) ** 2 + (xx - 36) ** 2 < 100)
    mask[0, 0] = True  # a 1-pixel speck is dropped
    inst = split_instances(mask)
    assert inst.max() == 2 and inst[20, 20] != inst[20, 36] and inst[0, 0] == 0


def test_instances_and_proba(tiny_model, blobs):
    image, _ = blobs
    inst = predict(tiny_model, image, instances=True)
    assert inst.dtype == np.int32
    proba = predict_proba(tiny_model, image)
    assert proba.shape == (1, *image.shape) and proba.min() >= 0 and proba.max() <= 1


def test_shared_model_segments_the_blobs(tiny_model, blobs):
    """The shared fixture really segments (so tests comparing its outputs compare real segmentations)."""
    image, labels = blobs
    pred = predict(tiny_model, image, tile_size=32, overlap=8)
    (row,) = evaluate(pred, labels)
    assert row["dice"] > 0.9
    assert abs((pred > 0).mean() - (labels > 0).mean()) < 0.03


def test_bad_inputs(tiny_model):
    with pytest.raises(InputError, match="looks multi-channel"):
        predict(tiny_model, np.zeros((64, 64, 3)))
    with pytest.raises(InputError, match="at least 2 dimensions"):
        predict(tiny_model, np.zeros(10))
    with pytest.raises(InputError, match="needs a UNet"):
        predict("model.pt", np.zeros((8, 8)))
    with pytest.raises(InputError, match="channel"):
        predict(UNet(in_channels=2, filters=4, depth=2), np.zeros((16, 16)))
    with pytest.raises(InputError, match="overlap"):
        predict(tiny_model, np.zeros((16, 16)), tile_size=32, overlap=32)


def test_tta_averages_the_flips_so_a_flipped_image_gives_the_flipped_labels(tiny_model, blobs, tmp_path):
    """Test-time augmentation: the prediction of a mirrored image is the mirrored prediction (each view of the
    dihedral group is averaged), the labels keep their shape and dtype; the CLI's --tta writes them."""
    import tifffile

    from napari_unet import predict
    from napari_unet.checkpoint import save_model
    from napari_unet.cli import main

    image, _ = blobs
    plain = predict(tiny_model, image, instances=True)
    tta = predict(tiny_model, image, instances=True, tta=True)
    assert tta.shape == plain.shape and tta.dtype == plain.dtype and tta.max() > 0
    mirrored = predict(tiny_model, np.ascontiguousarray(image[:, ::-1]), tta=True)
    assert np.mean(mirrored[:, ::-1] != predict(tiny_model, image, tta=True)) < 1e-3
    model_path = save_model(tiny_model, tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "a.tif", image)
    assert main(["predict", str(model_path), str(tmp_path / "a.tif"), "-o", str(tmp_path / "out"), "--tta"]) == 0
    assert (tifffile.imread(tmp_path / "out" / "a_labels.tif") > 0).any()
