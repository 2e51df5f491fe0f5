"""Corrections of a prediction: what counts as reviewed, merge and split as one action each."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.corrections import (
    editable_copy,
    edited_region,
    mark_plane,
    merge_labels,
    reviewed_mask,
    split_label,
)
from napari_unet.errors import InputError


def _objects() -> np.ndarray:
    a = np.zeros((40, 40), np.uint8)
    a[2:8, 2:8] = 1
    a[20:30, 20:30] = 2
    a[2:8, 30:36] = 3
    return a


def test_only_touched_objects_and_a_margin_count_as_reviewed():
    original = editable_copy(_objects())
    current = original.copy()
    current[current == 2] = 0  # a wrong object removed
    current[12:16, 2:6] = 4  # a missed one painted
    region = edited_region(original, current, margin=2)
    assert region[20:30, 20:30].all() and region[12:16, 2:6].all()
    assert region[10:18, 0:8].sum() > 16  # the margin around the new object
    assert not region[2:8, 30:36].any()  # an untouched object stays unreviewed
    assert not edited_region(original, original.copy()).any()  # no edit, nothing reviewed (an undo too)


def test_a_marked_plane_counts_whole_and_only_edited_planes_of_a_stack():
    original = np.stack([_objects()] * 3).astype(np.uint16)
    current = original.copy()
    current[1][current[1] == 3] = 0
    marked = mark_plane(np.zeros(original.shape, bool), (2,))
    mask = reviewed_mask(original, current, marked)
    assert not mask[0].any() and mask[1, 2:8, 30:36].all() and not mask[1, 20:30, 20:30].any() and mask[2].all()


def test_merge_and_split_are_one_action_each():
    labels = editable_copy(_objects())
    assert merge_labels(labels, 1, 3) == 36
    assert set(np.unique(labels)) == {0, 1, 2}
    with pytest.raises(InputError):
        merge_labels(labels, 1, 3)  # 3 is gone
    dumbbell = np.zeros((30, 50), np.uint16)
    dumbbell[5:25, 3:20] = 7
    dumbbell[5:25, 30:47] = 7
    dumbbell[13:17, 20:30] = 7
    new = split_label(dumbbell, 7)
    assert new == 8
    assert (dumbbell[5:25, 3:20] == 7).all() and (dumbbell[5:25, 30:47] == 8).all()
    bar = np.zeros((10, 40), np.uint16)
    bar[4:6, 2:38] = 1  # one peak: a cut across the long axis
    split_label(bar, 1)
    assert bar[4, 2] != bar[4, 37] and set(np.unique(bar)) == {0, 1, 2}
    with pytest.raises(InputError):
        split_label(bar, 9)
