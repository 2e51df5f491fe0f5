"""The scribble generator: a person's few strokes, deterministic, within the pixel budget."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.strokes import scribbles_from_truth


@pytest.fixture
def cells() -> np.ndarray:
    """A 200 x 240 instance mask with 40 ellipse-ish objects."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:200, :240]
    labels = np.zeros((200, 240), np.int32)
    for k in range(1, 41):
        cy, cx = rng.uniform(10, 190), rng.uniform(10, 230)
        ry, rx = rng.uniform(4, 9), rng.uniform(4, 9)
        labels[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = k
    return labels


def test_budget_classes_and_placement(cells):
    s = scribbles_from_truth(cells, seed=0)
    assert s.dtype == np.uint8 and s.shape == cells.shape
    assert set(np.unique(s)) == {0, 1, 2}
    assert np.count_nonzero(s) <= 0.002 * cells.size
    assert np.all(cells[s == 2] > 0)  # foreground strokes lie inside objects
    far = ndi.distance_transform_edt(cells == 0)
    assert np.all(far[s == 1] > 4.0)  # background strokes keep away from objects
    touched = np.unique(cells[s == 2])
    assert 1 <= len(touched) <= 0.15 * cells.max() + 1  # about 10% of the objects


def test_deterministic_and_seed_dependent(cells):
    a, b = scribbles_from_truth(cells, seed=3), scribbles_from_truth(cells, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, scribbles_from_truth(cells, seed=4))


def test_binary_masks_and_budget_scale(cells):
    binary = scribbles_from_truth(cells > 0, seed=0)
    assert np.all(cells[binary == 2] > 0)
    tight = scribbles_from_truth(cells, max_fraction=0.0005, seed=0)
    assert np.count_nonzero(tight) <= 0.0005 * cells.size


def test_empty_and_bad_input():
    assert not scribbles_from_truth(np.zeros((50, 50), np.int32)).any()
    with pytest.raises(ValueError):
        scribbles_from_truth(np.zeros((2, 50, 50), np.int32))
