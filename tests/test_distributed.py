"""Blockwise prediction on dask (local scheduler and a small LocalCluster), and lazy dask inputs."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from napari_unet import iter_predict, predict  # noqa: E402
from napari_unet.distributed import predict_dask  # noqa: E402
from napari_unet.normalization import apply_stats, normalize, plane_stats  # noqa: E402


@pytest.fixture
def stack(blobs):
    image, _ = blobs
    return np.stack([image, image[::-1], image * 2 + 5, image[:, ::-1]])


def test_stats_match_normalize():
    rng = np.random.default_rng(1)
    planes = [
        rng.normal(100, 20, (2, 30, 40)).astype(np.float32),
        np.full((1, 8, 9), 7.0, np.float32),  # constant
        np.where(rng.random((1, 16, 16)) < 0.2, np.nan, rng.random((1, 16, 16))).astype(np.float32),
        np.full((1, 4, 4), np.nan, np.float32),  # nothing finite
        rng.integers(0, 65535, (1, 20, 20)).astype(np.uint16),
    ]
    for p in planes:
        np.testing.assert_array_equal(apply_stats(p, plane_stats(p)), normalize(p))


def test_whole_planes_equal_single_process(tiny_model, stack):
    expected = predict(tiny_model, stack)
    lazy = predict_dask(tiny_model, da.from_array(stack, chunks=(2, 32, 32)), block_size=128)
    assert lazy.shape == stack.shape and lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), expected)


def test_blocks_with_overlap_agree(tiny_model, stack):
    expected = predict(tiny_model, stack)
    got = predict_dask(tiny_model, stack, block_size=32, overlap=16).compute(scheduler="sync")
    assert got.shape == expected.shape
    assert (got == expected).mean() > 0.99


def test_channel_axis_and_2d(blobs):
    from napari_unet import train

    image, labels = blobs
    rgb = np.stack([image, image * 0.5, image[::-1]], axis=-1)
    model = train(
        rgb,
        labels,
        mode="dense",
        filters=4,
        depth=2,
        patch_size=32,
        batch_size=2,
        epochs=1,
        steps_per_epoch=2,
        time_limit=None,
    )
    np.testing.assert_array_equal(predict_dask(model, rgb).compute(), predict(model, rgb))


def test_local_cluster_equals_single_process(tiny_model, stack):
    distributed = pytest.importorskip("distributed")
    expected = predict(tiny_model, stack)
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        lazy = predict_dask(tiny_model, da.from_array(stack, chunks=(1, 64, 80)))
        got = client.compute(lazy).result()
    np.testing.assert_array_equal(got, expected)


def test_iter_predict_reads_one_plane_of_a_dask_stack_at_a_time(tiny_model, stack):
    import dask

    reads: list[int] = []

    def load(i):
        reads.append(i)
        return stack[i]

    lazy = da.stack([da.from_delayed(dask.delayed(load)(i), stack.shape[1:], stack.dtype) for i in range(len(stack))])
    it = iter_predict(tiny_model, lazy)
    idx, labels = next(it)
    assert idx == (0,) and reads == [0]
    rest = list(it)
    assert reads == [0, 1, 2, 3]
    got = np.stack([labels] + [lab for _, lab in rest])
    np.testing.assert_array_equal(got, predict(tiny_model, stack))


def test_cli_predicts_zarr_to_zarr(tmp_path, tiny_model, stack):
    zarr = pytest.importorskip("zarr")
    from napari_unet import save_model
    from napari_unet.cli import main

    model_path = tmp_path / "m.pt"
    save_model(tiny_model, model_path)
    src = zarr.open(str(tmp_path / "stack.zarr"), mode="w", shape=stack.shape, chunks=(1, 32, 40), dtype=stack.dtype)
    src[:] = stack
    out = tmp_path / "out"
    assert main(["predict", str(model_path), str(tmp_path / "stack.zarr"), "-o", str(out)]) == 0
    got = zarr.open(str(out / "stack_labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(got, predict(tiny_model, stack))
    # instances go plane by plane into zarr too
    assert (
        main(["predict", str(model_path), str(tmp_path / "stack.zarr"), "-o", str(out), "--instances", "--overwrite"])
        == 0
    )
    inst = zarr.open(str(out / "stack_labels.zarr"), mode="r")
    assert inst.shape == stack.shape and inst.dtype == np.int32
