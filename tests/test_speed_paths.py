"""The fast paths behave like the plain ones: fused inference network, bf16, tile layout, device choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_unet.runtime as runtime
import napari_unet.tiling as tiling
from napari_unet import UNet, predict
from napari_unet.errors import InputError
from napari_unet.inference import FusedUNet, inference_network
from napari_unet.prediction import predict_proba_plane
from napari_unet.runtime import cpu_can_bf16, cpu_has_fast_bf16, pick_device, pick_precision
from napari_unet.tiling import axis_tiles, choose_tile, tile_rates

needs_bf16 = pytest.mark.skipif(
    not cpu_can_bf16(), reason="this CPU cannot run bf16 convolutions (needs AVX-512 or AMX; AVX2-only CPUs use fp32)"
)


def _randomize_bn(model: UNet) -> UNet:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize(
    "kwargs,size",
    [
        (dict(in_channels=1, n_classes=1, filters=4, depth=2), (33, 47)),
        (dict(in_channels=3, n_classes=3, filters=4, depth=3, dropout=0.3), (64, 63)),
        (dict(in_channels=2, n_classes=1, filters=8, depth=1), (16, 20)),
    ],
)
def test_fused_network_matches_eager_fp32(kwargs, size):
    torch.manual_seed(0)
    model = _randomize_bn(UNet(**kwargs))
    x = torch.randn(2, kwargs["in_channels"], *size)
    with torch.inference_mode():
        expected = model(x)
        net = inference_network(model, "cpu", "fp32")
        assert isinstance(net, FusedUNet)
        got = net(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@needs_bf16
def test_fused_network_bf16_close_to_fp32():
    torch.manual_seed(0)
    model = _randomize_bn(UNet(1, 1, filters=8, depth=3))
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        got = inference_network(model, "cpu", "bf16")(x)
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()
    assert ((got > 0) == (ref > 0)).float().mean() > 0.97


def test_predict_does_not_change_the_model(tiny_model, blobs):
    image, _ = blobs
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    predict(tiny_model, image)
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert not tiny_model.training


def test_fused_network_is_rebuilt_when_weights_change(tiny_model, blobs):
    image, _ = blobs
    plane = image[None].astype(np.float32) / image.max()
    a = predict_proba_plane(tiny_model, plane, precision="fp32")
    with torch.no_grad():
        tiny_model.head.bias.add_(5.0)  # in place, like an optimizer step
    b = predict_proba_plane(tiny_model, plane, precision="fp32")
    assert (b >= a).all() and (b - a).mean() > 0.1  # probabilities already at 1.0 cannot rise


def test_unknown_architecture_falls_back_to_autocast(blobs):
    class Doubled(UNet):
        def forward(self, x):
            return super().forward(x) * 2

    torch.manual_seed(0)
    model = Doubled(1, 1, filters=4, depth=2).eval()
    net = inference_network(model, "cpu", "fp32")
    assert not isinstance(net, FusedUNet)
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), model(x))


@needs_bf16
def test_bf16_and_fp32_labels_agree(tiny_model, blobs):
    image, _ = blobs
    fp32 = predict(tiny_model, image, precision="fp32")
    bf16 = predict(tiny_model, image, precision="bf16")
    inter = np.count_nonzero((fp32 > 0) & (bf16 > 0))
    dice = 2 * inter / max(1, np.count_nonzero(fp32) + np.count_nonzero(bf16))
    assert dice >= 0.99 or np.array_equal(fp32, bf16)


@pytest.mark.parametrize(
    "length,tile,overlap", [(2048, 512, 64), (1024, 1024, 64), (1000, 300, 32), (97, 40, 8), (50, 64, 8)]
)
def test_tiles_cover_evenly_with_overlap(length, tile, overlap):
    size, starts = axis_tiles(length, tile, overlap, 16)
    assert size <= tile and size <= length
    assert starts[0] == 0 and starts[-1] + size == length
    gaps = np.diff(starts)
    assert (gaps <= size - overlap + 1).all()  # neighbours overlap by the requested amount (+- rounding)
    assert gaps.max() - gaps.min() <= 1 if len(gaps) else True  # evenly spread
    # no more tiles than the classic layout would use
    assert len(starts) <= max(1, -(-(length - overlap) // (tile - overlap)))


def test_tiled_prediction_agrees_with_one_tile(tiny_model, blobs):
    image, _ = blobs
    one = predict(tiny_model, image, tile_size=128, precision="fp32")
    tiled = predict(tiny_model, image, tile_size=32, overlap=16, precision="fp32")
    assert (one == tiled).mean() > 0.98


def test_device_and_precision_choice(monkeypatch):
    monkeypatch.delenv("NAPARI_UNET_DEVICE", raising=False)
    monkeypatch.delenv("NAPARI_UNET_PRECISION", raising=False)
    cpu = torch.device("cpu")
    assert pick_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(InputError):
            pick_device("cuda")
    with pytest.raises(InputError):
        pick_device("tpu9")
    assert pick_precision(cpu, "auto") == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert pick_precision(cpu, "fp32") == "fp32"
    with pytest.raises(InputError):
        pick_precision(cpu, "fp8")
    monkeypatch.setenv("NAPARI_UNET_PRECISION", "fp32")
    monkeypatch.setenv("NAPARI_UNET_DEVICE", "cpu")
    assert pick_precision(cpu, "auto") == "fp32"
    if cpu_can_bf16():
        assert pick_precision(cpu, "bf16") == "bf16"  # an explicit choice wins over the environment
    else:
        with pytest.raises(InputError, match="no bf16 support"):
            pick_precision(cpu, "bf16")
    assert pick_device("auto") == cpu


def test_release_pages_keeps_memmap_data(tmp_path):
    import tifffile

    from napari_unet.io import read_image, release_pages

    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    tifffile.imwrite(tmp_path / "s.tif", data)
    arr = read_image(tmp_path / "s.tif")
    assert isinstance(arr, np.memmap)
    first = np.array(arr[0])
    release_pages(arr)
    release_pages(np.zeros(3))  # no-op for plain arrays
    np.testing.assert_array_equal(arr[0], first)
    np.testing.assert_array_equal(arr, data)


def test_warm_up_runs_a_tiny_step():
    from napari_unet.inference import warm_up

    seconds = warm_up(filters=4, depth=2, patch_size=32, batch_size=2, preview_size=48, device="cpu")
    assert seconds > 0


def test_bf16_on_a_cpu_without_it_is_a_one_line_error(monkeypatch):

    monkeypatch.setattr(runtime, "cpu_can_bf16", lambda: False)
    monkeypatch.delenv("NAPARI_UNET_PRECISION", raising=False)
    cpu = torch.device("cpu")
    with pytest.raises(InputError, match="no bf16 support.*fp32") as err:
        pick_precision(cpu, "bf16")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("NAPARI_UNET_PRECISION", "bf16")
    with pytest.raises(InputError, match="NAPARI_UNET_PRECISION=bf16"):
        pick_precision(cpu, "auto")
    assert pick_precision(cpu, "fp32") == "fp32"  # an explicit fp32 still wins over the environment


def test_an_avx2_cap_turns_bf16_off(monkeypatch):

    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    for probe in (runtime.cpu_has_fast_bf16, runtime.cpu_can_bf16):
        probe.cache_clear()
    try:
        assert not runtime.cpu_has_fast_bf16() and not runtime.cpu_can_bf16()
        assert pick_precision(torch.device("cpu"), "auto") == "fp32"
        assert "emulating an AVX2 CPU" in runtime.cpu_summary.__wrapped__()
    finally:
        monkeypatch.delenv("DNNL_MAX_CPU_ISA")
        for probe in (runtime.cpu_has_fast_bf16, runtime.cpu_can_bf16):
            probe.cache_clear()


# speeds per tile size (pixels/s) as measured on the two CPU kinds: AVX2 fp32 is fastest on 512 px tiles,
# AMX bf16 on the largest ones
AVX2_RATES = {384: 1.0e6, 512: 1.33e6, 768: 1.0e6, 1024: 0.89e6}
AMX_RATES = {384: 4.0e6, 512: 5.0e6, 768: 6.0e6, 1024: 6.4e6}


def test_tile_choice_follows_the_measured_speeds():
    assert choose_tile(AVX2_RATES, 2048, 2048, 64, 16) == 512 + 64
    assert choose_tile(AMX_RATES, 2048, 2048, 64, 16) == 1024 + 64
    # a plane that fits one tile of the fastest size is one tile
    assert choose_tile(AVX2_RATES, 500, 500, 64, 16) >= 500


def test_tile_speeds_are_measured_once_and_cached(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("NAPARI_UNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiling, "_TILE_RATES", {})
    model = UNet(1, 1, filters=2, depth=2).eval()
    cpu = torch.device("cpu")
    calls = []

    def net(x):
        calls.append(x.shape[-1])
        return x

    rates = tile_rates(model, net, cpu, "fp32")
    squares = {(s, s) for s in tiling.TILE_CANDIDATES}
    assert set(rates) == squares and all(r > 0 for r in rates.values())
    assert calls, "the speeds were measured"
    (entry,) = json.loads((tmp_path / "tiles.json").read_text()).values()
    assert set(entry) == {f"{s}x{s}" for s in tiling.TILE_CANDIDATES}
    # a new process (empty memory cache) reads the file instead of measuring again
    monkeypatch.setattr(tiling, "_TILE_RATES", {})
    calls.clear()
    assert tile_rates(model, net, cpu, "fp32") == pytest.approx(rates)
    assert not calls
    # a plane's own tile shapes: only the new ones are measured, and added to the file
    rates = tile_rates(model, net, cpu, "fp32", [(560, 560), (512, 512), (384, 416)])
    assert set(rates) == {(560, 560), (512, 512), (384, 416)}
    assert sorted(set(calls)) == [416, 560]
    (entry,) = json.loads((tmp_path / "tiles.json").read_text()).values()
    assert {"560x560", "384x416", "512x512"} <= set(entry)
    # another network shape is measured on its own
    calls.clear()
    tile_rates(UNet(1, 3, filters=2, depth=2).eval(), net, cpu, "fp32")
    assert calls


def test_the_tiling_is_chosen_by_the_speed_of_its_own_tile_shape():
    # AMD EPYC fp32: fast up to ~700 px, then a cliff. Read between 640 and 768 the 736 px tiles of a
    # 3 x 3 tiling look fast; measured, they are not, and the 4 x 4 tiling of 560 px tiles wins
    squares = {384: 1.9e6, 512: 1.82e6, 640: 1.9e6, 768: 1.85e6, 1024: 1.51e6}
    plans = tiling.tilings(2048, 2048, 64, 16)
    assert {(th, n) for th, _, n in plans.values()} == {(400, 36), (560, 16), (736, 9), (1056, 4)}
    assert choose_tile(squares, 2048, 2048, 64, 16) == 832  # interpolated: the cliff is missed
    measured = {**squares, (736, 736): 1.5e6, (560, 560): 1.84e6, (400, 400): 1.9e6, (1056, 1056): 1.5e6}
    assert choose_tile(measured, 2048, 2048, 64, 16) == 576
    # near-ties go to fewer tiles
    even = {(400, 400): 1.0e6, (560, 560): 1.0e6, (736, 736): 1.0e6 * 4.875 / 5.02, (1056, 1056): 0.5e6}
    assert choose_tile(even, 2048, 2048, 64, 16) == 832
