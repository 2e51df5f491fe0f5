"""The label conventions and the guess between them (labels.py)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.draw import disk, ellipse, line

from napari_unet import InputError
from napari_unet.labels import guess_label_mode, label_guess, resolve_label_mode

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _stroke(canvas, value, y, x0, x1, width, drift):
    """A brush stroke: a polyline through three points, painted with a disk of the given width."""
    h, w = canvas.shape
    r = width // 2
    pts = [(y, x0), (int(np.clip(y + drift, 0, h - 1)), (x0 + x1) // 2), (y, x1)]
    for (ya, xa), (yb, xb) in zip(pts[:-1], pts[1:], strict=True):
        rr, cc = line(ya, xa, yb, xb)
        for yy, xx in zip(rr, cc, strict=True):
            if r == 0:
                canvas[yy, xx] = value
            else:
                dr, dc = disk((yy, xx), r + 0.5, shape=canvas.shape)
                canvas[dr, dc] = value


@st.composite
def scribbles(draw):
    """1-3 classes, each value (1 = background, 2.. = classes) with 1-2 strokes of width 1-7, no crossings."""
    k = draw(st.integers(1, 3))
    values = [v for v in range(1, k + 2) for _ in range(draw(st.integers(1, 2)))]
    width = draw(st.sampled_from([1, 3, 5, 7]))
    band = 24
    size = max(128, band * len(values))
    canvas = np.zeros((size, size), np.int32)
    for i, v in enumerate(values):
        length = draw(st.integers(max(15, 8 * width), size - 10))
        x0 = draw(st.integers(2, size - length - 2))
        drift = draw(st.integers(-(band // 2 - width), band // 2 - width))
        _stroke(canvas, v, i * band + band // 2, x0, x0 + length, width, drift)
    return canvas


@st.composite
def class_masks(draw):
    """Complete masks of 1-3 classes: separate round or oval objects, or large areas, on part of the image."""
    k = draw(st.integers(1, 3))
    canvas = np.zeros((128, 128), np.int32)
    if draw(st.booleans()):  # large areas of each class (bands), over part or all of the image
        covered = draw(st.integers(34 * k, 128))  # areas at least 34 px across, wider than any brush
        edges = np.linspace(0, covered, k + 1).astype(int)
        for c in range(k):
            canvas[edges[c] : edges[c + 1], : draw(st.integers(64, 128))] = c + 1
        return canvas
    cells = [(y, x) for y in range(0, 128, 32) for x in range(0, 128, 32)]
    n = draw(st.integers(k, len(cells)))
    for i, (y, x) in enumerate(cells[:n]):
        r = draw(st.integers(5, 13))
        aspect = draw(st.floats(1.0, 1.8))
        rr, cc = ellipse(y + 16, x + 16, r, max(3, int(r / aspect)), shape=canvas.shape)
        canvas[rr, cc] = i % k + 1  # every class present
    return canvas


@st.composite
def instance_masks(draw):
    """1-200 separate objects, one id each, over part of the image."""
    n = draw(st.integers(1, 200))
    cell = 14
    side = int(np.ceil(np.sqrt(n)))
    canvas = np.zeros((cell * side + 40, cell * side + 40), np.int32)
    for i in range(n):
        y, x = divmod(i, side)
        r = draw(st.integers(3, 6))
        rr, cc = disk((y * cell + 7, x * cell + 7), r, shape=canvas.shape)
        canvas[rr, cc] = i + 1
    return canvas


@SETTINGS
@given(scribbles())
def test_strokes_are_guessed_sparse(labels):
    assert label_guess([labels]).mode == "sparse"
    assert resolve_label_mode([labels]) == "sparse"


@SETTINGS
@given(class_masks())
def test_class_masks_are_guessed_dense(labels):
    assert label_guess([labels]).mode == "dense"


@SETTINGS
@given(instance_masks())
def test_instance_masks_are_guessed_dense(labels):
    assert label_guess([labels]).mode == "dense"


def test_the_reproduced_misreadings_are_dense():
    two = np.zeros((64, 64), int)  # an instance mask with two objects (was: sparse)
    two[disk((16, 16), 7)] = 1
    two[disk((44, 40), 9)] = 2
    assert guess_label_mode([two]) == "dense"
    three = np.zeros((64, 64), int)  # a dense 3-class mask of a few objects (was: sparse)
    for i, c in enumerate((1, 2, 3, 1)):
        three[disk((14 + 12 * i, 10 + 14 * i), 5)] = c
    assert guess_label_mode([three]) == "dense"


def test_ambiguous_shapes_ask_and_the_error_names_the_choice():
    thick = np.zeros((100, 100), int)  # short thick bars of 1 and 2: strokes of a wide brush, or objects?
    thick[10:19, 10:37] = 1
    thick[60:69, 50:77] = 2
    guess = label_guess([thick])
    assert guess.mode == "ask" and guess.reason
    with pytest.raises(InputError, match="--sparse or --dense"):
        resolve_label_mode([thick])
    assert resolve_label_mode([thick], "sparse") == "sparse"
    assert resolve_label_mode([thick], multiclass=True) == "dense"
    assert label_guess([np.zeros((8, 8), int)]).mode == "ask"


def test_multiclass_means_dense_in_training():
    from napari_unet.training import Trainer

    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    labels = np.zeros((64, 64), int)  # a 3-class mask with values <= 3 that once trained as scribbles
    labels[disk((15, 15), 6)] = 1
    labels[disk((45, 20), 6)] = 2
    labels[disk((30, 48), 6)] = 3
    trainer = Trainer(image, labels, multiclass=True, epochs=1, device="cpu")
    assert trainer.mode == "dense" and trainer.n_classes == 3


def test_dense_stack_trains_only_on_painted_planes():
    from napari_unet.training import Trainer

    rng = np.random.default_rng(0)
    image = rng.random((20, 48, 48)).astype(np.float32)
    labels = np.zeros((20, 48, 48), np.uint16)
    labels[3][disk((20, 20), 8)] = 1  # complete masks on 1 plane of 20
    labels[3][disk((36, 36), 6)] = 2
    trainer = Trainer(image, labels, mode="dense", epochs=1, device="cpu", val_fraction=0.0)
    assert (trainer.planes_used, trainer.planes_total) == (1, 20)
    assert trainer.n_annotated == 48 * 48  # one plane, not 20 planes of "background"
    assert trainer.class_counts[0] < 48 * 48


def test_label_images_are_told_from_pictures():
    from napari_unet.labels import looks_like_label_image
    from napari_unet.sample_data import nuclei, nuclei_labels

    truth = nuclei_labels()
    assert looks_like_label_image(truth)
    assert looks_like_label_image((truth > 0).astype(np.uint8) * 255)
    assert looks_like_label_image(np.stack([truth] * 3))
    assert not looks_like_label_image(nuclei())
    assert not looks_like_label_image(nuclei().astype(np.float32))
    assert not looks_like_label_image(np.random.default_rng(0).integers(0, 200, (64, 64)))


def test_channel_axis_auto_sentinel_is_the_same_in_training_and_prediction():
    from napari_unet.training import TrainConfig, Trainer

    assert TrainConfig().channel_axis == "auto"
    rgb_like = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    labels = np.zeros((48, 48), int)
    labels[5, 5:40], labels[30, 5:40] = 1, 2
    assert Trainer(rgb_like, labels, epochs=1, device="cpu").in_channels == 3  # 'auto': channels detected
    stack_labels = np.zeros((48, 48, 3), int)
    stack_labels[5, 5:40], stack_labels[30, 5:40] = 1, 2
    trainer = Trainer(rgb_like, stack_labels, epochs=1, device="cpu", channel_axis=None, mode="sparse")
    assert trainer.in_channels == 1  # None: no channel axis, as in predict (was: None meant 'detect')
