"""Shared fixtures: tiny synthetic images and a tiny, fast-to-train model configuration."""

from __future__ import annotations

import copy
import os
import tempfile

import numpy as np
import pytest
import torch

torch.set_num_threads(2)
# per-machine measurements (tile speeds) go to a throw-away folder, not the user's cache; subprocesses inherit it
os.environ.setdefault("NAPARI_UNET_CACHE_DIR", tempfile.mkdtemp(prefix="napari-unet-cache-"))

# small enough to train in well under a second on a CPU
TINY = dict(filters=4, depth=2, patch_size=32, batch_size=2, epochs=1, steps_per_epoch=3, time_limit=None)


def make_blobs() -> tuple[np.ndarray, np.ndarray]:
    """A 64x80 image of bright disks on a noisy background, and their instance labels."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :80]
    labels = np.zeros((64, 80), np.uint16)
    for k, (cy, cx, r) in enumerate([(15, 15, 7), (40, 20, 9), (20, 55, 8), (48, 60, 6)], start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    image = (labels > 0) * 200.0 + rng.normal(50, 10, labels.shape)
    return image.astype(np.float32), labels


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs()


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture(scope="session")
def _trained_blobs_model():
    """Trained once per session until it segments the blobs (Dice > 0.9), so agreement tests mean something.

    A binary model (instances=False: the blobs' instance ids would otherwise train the boundary classes), as
    the tiling and fast-path tests expect one probability channel; boundary models have tests of their own.
    """
    from napari_unet import train

    image, labels = make_blobs()
    return train(image, labels, mode="dense", filters=8, depth=2, patch_size=32, epochs=4, steps_per_epoch=20,
                 time_limit=None, learning_rate=5e-3, instances=False)  # fmt: skip


@pytest.fixture
def tiny_model(_trained_blobs_model):
    """A fresh copy for each test: tests may fine-tune or modify it."""
    return copy.deepcopy(_trained_blobs_model)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """A 48x48 image of one bright disk and its mask (shared by the bad-input and interruption tests)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    labels = ((yy - 20) ** 2 + (xx - 24) ** 2 < 100).astype(np.uint8)
    image = (labels * 100 + rng.normal(20, 5, labels.shape)).astype(np.float32)
    return image, labels
