"""Prediction throughput of napari-unet vs the bare network (the limit) and MONAI's sliding window.

The image is the bundled DSB2018 nuclei image (512 x 512) tiled 4 x 4 into 2048 x 2048, so the texture is
real. The model is trained for ``--train-seconds`` on the image's own masks (or loaded with ``--model``), so
that label agreement means something. In one process, interleaved, best of ``--repeats``:

- the limit: the bare network's fastest forward on one tile, the best over tile sizes 256, 512, 768 and 1024
  and over the eager UNet in fp32 (NCHW), the eager UNet channels_last (bf16 autocast where the CPU has it)
  and napari-unet's ``FusedUNet`` (batch norm folded, ReLU fused), in pixels of network input per second,
  no blending, no normalization: the table of all of them is printed;
- napari-unet: ``predict(model, image)`` end to end with its own tile choice (measured once per machine,
  ``tiling.tile_rates``), normalization, tiling with overlap, blending, thresholding: image pixels per second
  (the overlap's recomputed pixels count against it);
- MONAI: ``monai.inferers.sliding_window_inference`` with the same weights, tile size (``--tile``), overlap
  and batch of tiles, as a MONAI user would run it (fp32), and with napari-unet's fast path applied by hand
  (channels_last + bf16 autocast), on the same normalized image; labels by thresholding at 0.5.

Targets: napari-unet >= 0.8x the limit, >= 2x MONAI, labels agreeing (Dice >= 0.99); also bf16 vs fp32
labels of napari-unet (Dice >= 0.99).

    pip install -e ".[benchmarks]"          # monai (pure Python, no CUDA pull: torch is already there)
    python benchmarks/predict_speed.py      # ~3 minutes on 2 cores
    DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 NAPARI_UNET_PRECISION=fp32 python benchmarks/predict_speed.py
    python benchmarks/predict_speed.py --tile 512 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
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
    # a binary model (instances=False), so its labels compare with MONAI's thresholded output
    return train(nuclei(), nuclei_labels(), time_limit=seconds, mode="dense", seed=0, instances=False)


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
    ap.add_argument("--tile", type=int, default=None, help="tile size (default: napari-unet's choice per machine)")
    ap.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-monai", action="store_true")
    args = ap.parse_args(argv)

    from napari_unet import predict
    from napari_unet.inference import inference_network
    from napari_unet.normalization import normalize
    from napari_unet.runtime import autocast, pick_device, pick_precision
    from napari_unet.sample_data import nuclei
    from napari_unet.tiling import DEFAULT_OVERLAP, auto_tile

    overlap = DEFAULT_OVERLAP
    model = get_model(args.model, args.train_seconds).eval()
    image = np.tile(nuclei(), (4, 4))
    h, w = image.shape
    mpx = h * w / 1e6
    dev = pick_device("auto")
    prec = pick_precision(dev, "auto")
    fused = inference_network(model, dev, prec)
    tile = args.tile or auto_tile(model, fused, h, w, overlap, dev, prec)  # measured once per machine, cached
    print(f"machine: {machine()}")
    print(f"image {h} x {w} (DSB2018 tiled 4 x 4), tile {tile} (overlap {overlap}), device {dev}, precision {prec}")

    # the limit: the bare network's fastest forward over tile sizes 256-1024 and memory formats, in pixels per
    # second of network input (about 1 Mpx per timed run); napari-unet pays its tiles' overlap against it
    plane = normalize(image[None].astype(np.float32))
    eager_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    eager = copy.deepcopy(model)
    nets = {
        "eager fp32 NCHW": (eager, torch.contiguous_format, "fp32"),
        f"eager {prec} channels_last": (eager_cl, torch.channels_last, prec),
        f"FusedUNet {prec}": (fused, torch.channels_last, None),
    }
    limit_runs = {}
    for size in (256, 512, 768, 1024):
        n = max(1, (1 << 20) // (size * size))
        x = torch.from_numpy(np.ascontiguousarray(plane[None, :, :size, :size]))
        for name, (net, fmt, p) in nets.items():
            xf = x.contiguous(memory_format=fmt)

            def run(net=net, x=xf, n=n, p=p):
                with torch.inference_mode(), autocast(dev, p or "fp32"):
                    for _ in range(n):
                        net(x)

            limit_runs[(name, size)] = (run, n * size * size / 1e6)

    results: dict[str, np.ndarray] = {}

    def ours():
        results["labels"] = predict(model, image, tile_size=args.tile, overlap=overlap, batch_size=args.batch)

    monai_runs = {}
    if not args.no_monai:
        from monai.inferers import sliding_window_inference

        inp = torch.from_numpy(plane[None])

        def monai_fp32():
            with torch.inference_mode():
                out = sliding_window_inference(inp, (tile, tile), args.batch, eager, overlap=overlap / tile)
            results["monai"] = (torch.sigmoid(out[0, 0]) > 0.5).numpy()

        def monai_fast():
            with torch.inference_mode(), autocast(dev, prec):
                out = sliding_window_inference(
                    inp.contiguous(memory_format=torch.channels_last), (tile, tile), args.batch, eager_cl,
                    overlap=overlap / tile,
                )  # fmt: skip
            results["monai_fast"] = (torch.sigmoid(out[0, 0].float()) > 0.5).numpy()

        monai_runs = {
            "MONAI sliding_window_inference, fp32 (as shipped)": monai_fp32,
            f"MONAI + channels_last + {prec} autocast": monai_fast,
        }

    # warm up everything once (oneDNN builds its kernels on first use), then interleave the repeats
    runs = {"napari-unet predict": ours, **monai_runs, **{k: v[0] for k, v in limit_runs.items()}}
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(_timed(fn))
    secs = {name: min(t) for name, t in times.items()}
    rate = {name: limit_runs[name][1] / secs[name] for name in limit_runs}
    for name in ["napari-unet predict", *monai_runs]:
        rate[name] = mpx / secs[name]
    best_limit = max(limit_runs, key=lambda k: rate[k])
    limit = rate[best_limit]
    ours_rate = rate["napari-unet predict"]
    print(f"\nthe bare network on one tile, Mpx/s of network input (best of {args.repeats}):")
    print(f"{'':28s}" + "".join(f"{size:>8d}" for size in (256, 512, 768, 1024)))
    for name in nets:
        print(f"{name:28s}" + "".join(f"{rate[(name, size)]:8.2f}" for size in (256, 512, 768, 1024)))
    print(f"\n{'':52s} {'Mpx/s':>7s} {'napari-unet is':>15s}")
    print(f"{'limit: ' + best_limit[0] + f' on {best_limit[1]} px tiles':52s} {limit:7.2f} {ours_rate / limit:14.2f}x")
    for name in ["napari-unet predict", *monai_runs]:
        rel = "" if name == "napari-unet predict" else f"{ours_rate / rate[name]:.2f}x this"
        print(f"{name:52s} {rate[name]:7.2f} {rel:>15s}")
    paired = sorted(
        times[best_limit][i] / limit_runs[best_limit][1] / (times["napari-unet predict"][i] / mpx)
        for i in range(args.repeats)
    )
    print(
        f"\nnapari-unet vs limit: {ours_rate / limit:.2f}x (target >= 0.8); per-repeat (paired): "
        f"{', '.join(f'{r:.2f}' for r in paired)}"
    )
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
        fp32 = predict(model, image, tile_size=args.tile, overlap=overlap, precision="fp32")
        print(f"label Dice napari-unet bf16 vs fp32: {dice(results['labels'], fp32):.4f} (target >= 0.99)")


if __name__ == "__main__":
    main()
