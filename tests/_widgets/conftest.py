"""Fixtures for the dock-widget tests: a viewer with the bundled sample, a tiny model, captured notifications."""

from __future__ import annotations

import time

import numpy as np
import pytest

TINY = {"time_limit": 3.0, "filters": 8, "depth": 2, "patch_size": 64, "batch_size": 4, "steps_per_epoch": 5}


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """A viewer with the sample the README starts from: image, ground truth, strokes."""
    from napari_unet.sample_data import make_nuclei_strokes_sample

    viewer = make_napari_viewer()
    for data, kwargs, kind in make_nuclei_strokes_sample():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


@pytest.fixture(scope="session")
def tiny_model():
    """A model trained for a handful of steps on the sample strokes (headless core): enough to predict with."""
    from napari_unet import train
    from napari_unet.sample_data import nuclei, nuclei_strokes

    model = train(
        nuclei(),
        nuclei_strokes(),
        filters=8,
        depth=2,
        patch_size=64,
        batch_size=4,
        time_limit=None,
        epochs=1,
        steps_per_epoch=5,
        precision="fp32",
    )
    # five steps give noise: the cleaning sized from the strokes (specks, holes) would fill its many small
    # background pieces, and the widget tests want many objects to show; the cleaning has its own tests
    model.meta["object_size"] = None
    return model


@pytest.fixture
def messages(monkeypatch):
    """Every error / warning / info the widgets show, instead of napari notifications."""
    from napari_unet._widgets import _common

    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    monkeypatch.setattr(_common, "show_error", lambda m: seen["error"].append(str(m)))
    monkeypatch.setattr(_common, "show_warning", lambda m: seen["warning"].append(str(m)))
    monkeypatch.setattr(_common, "show_info", lambda m: seen["info"].append(str(m)))
    return seen


@pytest.fixture(autouse=True)
def _workers_end(qtbot):
    """No test may leave a worker thread running into the next one."""
    yield
    from qtpy.QtCore import QThreadPool

    assert QThreadPool.globalInstance().waitForDone(10_000), "a worker thread is still running"


def snapshot(viewer) -> dict:
    """Copies of every layer's data, to check later that the user's layers were not modified."""
    return {layer.name: np.array(layer.data, copy=True) for layer in viewer.layers}


def assert_unchanged(viewer, before: dict, names) -> None:
    for name in names:
        assert name in viewer.layers, f"layer {name!r} disappeared"
        np.testing.assert_array_equal(np.asarray(viewer.layers[name].data), before[name], err_msg=name)


def wait_until(qtbot, condition, timeout: float = 30.0) -> float:
    """Wait for ``condition`` while Qt runs; return the seconds it took."""
    start = time.perf_counter()
    qtbot.waitUntil(condition, timeout=int(timeout * 1000))
    return time.perf_counter() - start


def assert_close_ends_cleanly(qtbot, viewer, messages, caplog) -> None:
    """Closing the viewer mid-job ends every worker, with no error shown or logged (how soon: benchmarks)."""
    from qtpy.QtCore import QThreadPool

    viewer.close()
    assert QThreadPool.globalInstance().waitForDone(60_000), "a worker outlived the viewer"
    qtbot.wait(50)
    assert not messages["error"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text  # no failed job
