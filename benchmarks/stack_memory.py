"""Peak memory of ``napari-unet predict`` on 6-slice and 48-slice 1024 x 1024 stacks: flat in the depth.

Each stack is the DSB2018 nuclei image tiled 2 x 2 (1024 x 1024), rolled a little per slice, written as an
uncompressed TIFF (read memory-mapped) and as a zarr array (predicted blockwise on dask, written to zarr).
Each prediction runs ``napari-unet predict`` in its own subprocess; its peak resident memory is the
``ru_maxrss`` of that subprocess alone (a fresh wrapper process per run). Targets: 48 slices <= 1.3x the
6-slice peak, and <= 1.5 GB.

    python benchmarks/stack_memory.py              # ~2-4 minutes on 2 cores
    python benchmarks/stack_memory.py --depths 6 48 96 --formats tif
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``cmd`` run as a child of a fresh wrapper process."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - t


def make_stack(depth: int) -> np.ndarray:
    from napari_unet.sample_data import nuclei

    base = np.tile(nuclei(), (2, 2))
    return np.stack([np.roll(base, 7 * z, axis=1) for z in range(depth)])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[6, 48])
    ap.add_argument("--formats", nargs="+", default=["tif", "zarr"], choices=["tif", "zarr"])
    ap.add_argument("--model", default=None, help="model file (default: a briefly trained one)")
    args = ap.parse_args(argv)

    import tifffile
    import zarr
    from predict_speed import machine

    from napari_unet import save_model, train
    from napari_unet.sample_data import nuclei, nuclei_labels

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = str(tmp / "model.pt")
            save_model(train(nuclei(), nuclei_labels(), epochs=1, steps_per_epoch=2, time_limit=None), model)
        results = {}
        for fmt in args.formats:
            for depth in args.depths:
                stack = make_stack(depth)
                path = tmp / f"stack{depth}.{fmt}"
                if fmt == "tif":
                    tifffile.imwrite(path, stack)  # uncompressed: napari-unet memory-maps it
                else:
                    z = zarr.open(str(path), mode="w", shape=stack.shape, chunks=(1, 512, 512), dtype=stack.dtype)
                    z[:] = stack
                del stack
                cmd = ["napari-unet", "predict", model, str(path), "-o", str(tmp / "out"), "--overwrite"]
                mb, secs = peak_rss_mb(cmd)
                results[fmt, depth] = mb
                print(
                    f"{fmt:4s} {depth:3d} x 1024 x 1024: peak RSS {mb:7.0f} MB, {secs:5.1f} s ({depth / secs:.2f} slices/s)"
                )
        for fmt in args.formats:
            lo, hi = results[fmt, min(args.depths)], results[fmt, max(args.depths)]
            print(
                f"{fmt}: {max(args.depths)} slices / {min(args.depths)} slices = {hi / lo:.2f}x (target <= 1.3), "
                f"peak {hi / 1024:.2f} GB (target <= 1.5)"
            )


if __name__ == "__main__":
    main()
