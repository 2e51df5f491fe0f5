"""Issue 6 load check: predicting 500 small images in one process keeps memory flat.

Prints the resident set size (RSS) after a warm-up, every 100 images, and the growth from warm-up to the end.
Images come in several sizes (so per-shape caches show up too) and go through ``predict`` as a script or the
napari widgets would call it. Not a timed test.

    python benchmarks/memory_500_images.py [--n 500] [--model model.pt] [--instances]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch

import napari_unet as nu


def rss_mib() -> float:
    """Resident set size of this process, MiB (from /proc, else psutil)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--model", default=None, help="a model file (default: an untrained default-size U-Net)")
    ap.add_argument("--instances", action="store_true", help="also split instances (watershed) per image")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    model = nu.load_model(args.model) if args.model else nu.UNet()  # weights do not change memory use
    rng = np.random.default_rng(0)
    sizes = [(96, 96), (128, 160), (200, 144), (256, 256), (75, 310)]

    def image(i: int) -> np.ndarray:
        h, w = sizes[i % len(sizes)]
        return (rng.random((h, w)) * 255).astype(np.uint8)

    start = rss_mib()
    from predict_speed import machine

    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; RSS at start {start:.1f} MiB")
    t0 = time.perf_counter()
    for i in range(args.warmup):
        nu.predict(model, image(i), instances=args.instances)
    gc.collect()
    warm = rss_mib()
    print(f"after {args.warmup} warm-up images: RSS {warm:.1f} MiB")
    peak = warm
    for i in range(args.n):
        labels = nu.predict(model, image(i), instances=args.instances)
        del labels
        if (i + 1) % 100 == 0:
            gc.collect()
            now = rss_mib()
            peak = max(peak, now)
            print(f"after {i + 1:4d} images: RSS {now:.1f} MiB ({now - warm:+.1f} MiB since warm-up)")
    gc.collect()
    end = rss_mib()
    seconds = time.perf_counter() - t0
    print(
        f"{args.n} images in {seconds:.1f} s: RSS before {warm:.1f} MiB, after {end:.1f} MiB, growth "
        f"{end - warm:+.1f} MiB ({(end - warm) / args.n * 1024:+.1f} KiB per image), peak {peak:.1f} MiB"
    )


if __name__ == "__main__":
    main()
