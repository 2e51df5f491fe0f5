"""Prediction throughput of napari-unet vs the bare network (the limit) and MONAI's sliding window.

The image is the bundled DSB2018 nuclei image (512 x 512) tiled 4 x 4 into 2048 x 2048, so the texture is
real. The model is trained for ``--train-seconds`` on the image's own masks (or loaded with ``--model``), so
that label agreement means something. In one process, interleaved, best of ``--repeats``:

- limit (eager): the UNet alone, eval, channels_last, bf16 autocast (fp32 without native bf16), on batches
  of tiles of the size napari-unet picks, no blending, no normalization: tile pixels per second;
- limit (fused): the same with napari-unet's ``FusedUNet`` (batch norm folded, ReLU fused): the fastest
  forward pass of this network on this CPU that we know of; the ratio target is against this one;
- napari-unet: ``predict(model, image)`` end to end (normalization, tiling, blending, thresholding):
  image pixels per second;
- MONAI: ``monai.inferers.sliding_window_inference`` with the same weights, tile size (``--tile``), overlap
  and batch of tiles, as a MONAI user would run it (fp32), and with napari-unet's fast path applied by hand
  (channels_last + bf16 autocast), on the same normalized image; labels by thresholding at 0.5.

Targets: napari-unet >= 0.8x the limit, >= 2x MONAI, labels agreeing (Dice >= 0.99); also bf16 vs fp32
labels of napari-unet (Dice >= 0.99).

    pip install -e ".[benchmarks]"          # monai (pure Python, no CUDA pull: torch is already there)
    python benchmarks/predict_speed.py      # ~3 minutes on 2 cores
    python benchmarks/predict_speed.py --tile 512 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * (a & b).sum() / denom)


def parse_overrides(items: list[str]) -> dict:
    """``--set key=value`` items as TrainConfig overrides; values are Python literals, else strings."""
    import ast

    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def machine() -> str:
    """The CPU model, its vector extensions and what napari-unet picks on it (every benchmark prints this)."""
    from napari_unet.runtime import cpu_summary

    return f"{cpu_summary()}, torch {torch.__version__}, load average {' '.join(f'{x:.1f}' for x in _load())}"


def _load() -> tuple[float, ...]:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return ()


def get_model(path: str | None, seconds: float):
    from napari_unet import load_model, train
    from napari_unet.sample_data import nuclei, nuclei_labels

    if path:
        return load_model(path)
    print(f"training a model for {seconds:.0f} s on the DSB2018 masks ...", flush=True)
    return train(nuclei(), nuclei_labels(), time_limit=seconds, mode="dense", seed=0)


def best(fn, repeats: int) -> float:
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: train one for --train-seconds)")
    ap.add_argument("--train-seconds", type=float, default=20.0)
    ap.add_argument("--tile", type=int, default=None, help="tile size (default: napari-unet's DEFAULT_TILE)")
    ap.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-monai", action="store_true")
    args = ap.parse_args(argv)

    from napari_unet import predict
    from napari_unet.data import normalize
    from napari_unet.prediction import DEFAULT_OVERLAP, DEFAULT_TILE, MAX_BATCH_PIXELS, _tiles
    from napari_unet.runtime import autocast, inference_network, pick_device, pick_precision
    from napari_unet.sample_data import nuclei

    tile = args.tile or DEFAULT_TILE
    overlap = DEFAULT_OVERLAP
    model = get_model(args.model, args.train_seconds).eval()
    image = np.tile(nuclei(), (4, 4))
    h, w = image.shape
    mpx = h * w / 1e6
    dev = pick_device("auto")
    prec = pick_precision(dev, "auto")
    print(f"machine: {machine()}")
    print(f"image {h} x {w} (DSB2018 tiled 4 x 4), tile {tile}, overlap {overlap}, device {dev}, precision {prec}")

    # the limit: batches of tiles of the size napari-unet uses, no blending
    th, ys = _tiles(h, tile, overlap, 2**model.depth)
    tw, xs = _tiles(w, tile, overlap, 2**model.depth)
    bs = max(1, min(args.batch, MAX_BATCH_PIXELS // (th * tw)))
    # the same tiles predict() runs, in the same batches, so both sides do the same amount of work (under a
    # fluctuating load, a short run's best time flatters it)
    plane = normalize(image[None].astype(np.float32))
    origins = [(y, x) for y in ys for x in xs]
    batches = [
        torch.from_numpy(np.stack([plane[:, y : y + th, x : x + tw] for y, x in origins[i : i + bs]])).contiguous(
            memory_format=torch.channels_last
        )
        for i in range(0, len(origins), bs)
    ]
    tile_mpx = len(origins) * th * tw / 1e6
    eager = model.to(memory_format=torch.channels_last)
    fused = inference_network(model, dev, prec)

    def eager_forward():
        with torch.inference_mode(), autocast(dev, prec):
            for x in batches:
                eager(x)

    def fused_forward():
        with torch.inference_mode():
            for x in batches:
                fused(x)

    results: dict[str, float] = {}

    def ours():
        results["labels"] = predict(model, image, tile_size=tile, overlap=overlap, batch_size=args.batch)

    monai_runs = {}
    if not args.no_monai:
        from monai.inferers import sliding_window_inference

        inp = torch.from_numpy(plane[None])

        def monai_fp32():
            with torch.inference_mode():
                out = sliding_window_inference(inp, (tile, tile), args.batch, model, overlap=overlap / tile)
            results["monai"] = (torch.sigmoid(out[0, 0]) > 0.5).numpy()

        def monai_fast():
            with torch.inference_mode(), autocast(dev, prec):
                out = sliding_window_inference(
                    inp.contiguous(memory_format=torch.channels_last),
                    (tile, tile),
                    args.batch,
                    eager,
                    overlap=overlap / tile,
                )
            results["monai_fast"] = (torch.sigmoid(out[0, 0].float()) > 0.5).numpy()

        monai_runs = {
            "MONAI sliding_window_inference, fp32 (as shipped)": monai_fp32,
            f"MONAI + channels_last + {prec} autocast": monai_fast,
        }

    # warm up everything once (oneDNN builds its kernels on first use), then interleave the repeats
    runs = {
        "limit, eager UNet": eager_forward,
        "limit, FusedUNet": fused_forward,
        "napari-unet predict": ours,
        **monai_runs,
    }
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(_timed(fn))
    secs = {name: min(t) for name, t in times.items()}
    rate = {
        "limit, eager UNet": tile_mpx / secs["limit, eager UNet"],
        "limit, FusedUNet": tile_mpx / secs["limit, FusedUNet"],
    }
    for name in ["napari-unet predict", *monai_runs]:
        rate[name] = mpx / secs[name]
    limit = max(rate["limit, eager UNet"], rate["limit, FusedUNet"])
    ours_rate = rate["napari-unet predict"]
    print(f"\n{'':52s} {'Mpx/s':>7s} {'napari-unet is':>15s}")
    for name, r in rate.items():
        rel = "" if name == "napari-unet predict" else f"{ours_rate / r:.2f}x this"
        print(f"{name:52s} {r:7.2f} {rel:>15s}")
    print(
        f"\nnapari-unet vs limit: {ours_rate / limit:.2f}x (target >= 0.8); tiles {len(ys)} x {len(xs)} of "
        f"{th} x {tw}: {len(ys) * len(xs) * th * tw / (h * w):.2f} network pixels per image pixel"
    )
    paired = sorted(
        min(times["limit, eager UNet"][i], times["limit, FusedUNet"][i])
        / tile_mpx
        / (times["napari-unet predict"][i] / mpx)
        for i in range(args.repeats)
    )
    print(f"per-repeat (paired) ratios vs limit: {', '.join(f'{r:.2f}' for r in paired)}")
    if monai_runs:
        m32 = rate["MONAI sliding_window_inference, fp32 (as shipped)"]
        mfast = rate[f"MONAI + channels_last + {prec} autocast"]
        print(
            f"napari-unet vs MONAI fp32: {ours_rate / m32:.2f}x, vs MONAI with the same fast path: {ours_rate / mfast:.2f}x (target >= 2)"
        )
        print(
            f"label Dice napari-unet vs MONAI fp32: {dice(results['labels'], results['monai']):.4f}, "
            f"vs MONAI fast: {dice(results['labels'], results['monai_fast']):.4f} (target >= 0.99)"
        )
    if prec == "bf16":
        fp32 = predict(model, image, tile_size=tile, overlap=overlap, precision="fp32")
        print(f"label Dice napari-unet bf16 vs fp32: {dice(results['labels'], fp32):.4f} (target >= 0.99)")


if __name__ == "__main__":
    main()
