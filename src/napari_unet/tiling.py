"""Tile geometry, per-machine tile speeds and the tile choice for tiled prediction.

A plane is cut into as few overlapping tiles as the tile size allows, spread evenly; tiles are blended with a
linear ramp. With ``tile_size=None`` the tiling is chosen by the network's measured speed on each candidate
tiling's own tile shape (cached per machine in ``cache_dir()/tiles.json``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .io import atomic_path
from .runtime import cpu_summary

if TYPE_CHECKING:
    from .model import UNet

log = logging.getLogger("napari_unet")


# the tile sizes (core, without the overlap) a plane's tiling is chosen from; smaller ones pay too much
# overlap to win
TILE_CANDIDATES = (384, 512, 640, 768, 1024)


CACHE_ENV = "NAPARI_UNET_CACHE_DIR"


_TILE_RATES: dict[str, dict[tuple[int, int], float]] = {}


def cache_dir() -> Path:
    """Where per-machine measurements are kept: $NAPARI_UNET_CACHE_DIR, else $XDG_CACHE_HOME/napari-unet."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-unet"


def _tile_key(model: nn.Module, device: torch.device, precision: str) -> str:
    shape = [getattr(model, name, None) for name in ("in_channels", "out_channels", "filters", "depth")]
    where = cpu_summary().split("; auto precision")[0] if device.type == "cpu" else str(device)
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    return f"{where}|torch {torch.__version__}|{precision}|{type(model).__name__}{shape}"


def _shape_key(shape) -> tuple[int, int]:
    return (int(shape), int(shape)) if isinstance(shape, (int, np.integer)) else (int(shape[0]), int(shape[1]))


def tile_rates(
    model: nn.Module, net: nn.Module, device: torch.device, precision: str, shapes=TILE_CANDIDATES
) -> dict[tuple[int, int], float]:
    """Pixels per second of ``net`` (from ``inference_network``) on tiles of each of ``shapes`` ((h, w) or a
    square's side), keyed by (h, w).

    Each shape is measured once per machine, precision and network shape (it runs once to build its kernels,
    then four times, interleaved with the other new shapes, best of four), and cached in
    ``cache_dir()/tiles.json``, because the best tile depends on the CPU's caches and is not smooth in the
    size: on a 2-core AMD EPYC in fp32, 560 px tiles ran at 1.9 Mpx/s and 736 px ones at 1.5.
    """
    import json
    import time

    wanted = [_shape_key(shape) for shape in shapes]
    key = _tile_key(model, device, precision)
    known = _TILE_RATES.setdefault(key, {})
    path = cache_dir() / "tiles.json"
    stored: dict = {}
    if any(shape not in known for shape in wanted):
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        stored = stored if isinstance(stored, dict) else {}
        entry = stored.get(key)
        for name, rate in entry.items() if isinstance(entry, dict) else ():
            try:
                h, _, w = str(name).partition("x")
                known.setdefault((int(h), int(w or h)), float(rate))
            except ValueError:
                continue
    missing = list(dict.fromkeys(shape for shape in wanted if shape not in known))
    if missing:
        c = getattr(model, "in_channels", 1)
        inputs = {shape: torch.zeros(1, c, *shape, device=device) for shape in missing}
        seconds = dict.fromkeys(missing, math.inf)
        with torch.inference_mode():
            for x in inputs.values():
                net(x)  # oneDNN builds its kernels for each new shape on first use: not timed
            # interleaved rounds, best of each: a load that comes and goes slows every shape alike
            for _ in range(4):
                for shape, x in inputs.items():
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t = time.perf_counter()
                    net(x)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    seconds[shape] = min(seconds[shape], time.perf_counter() - t)
        known.update({shape: shape[0] * shape[1] / max(seconds[shape], 1e-9) for shape in missing})
        try:  # a cache that cannot be written only costs the measurement next time
            path.parent.mkdir(parents=True, exist_ok=True)
            stored[key] = {f"{h}x{w}": rate for (h, w), rate in known.items()}
            with atomic_path(path, overwrite=True) as tmp:
                tmp.write_text(json.dumps(stored, indent=1))
        except Exception:
            log.debug("napari-unet: could not cache tile timings in %s", path, exc_info=True)
    return {shape: known[shape] for shape in wanted}


def tilings(height: int, width: int, overlap: int, multiple: int) -> dict[int, tuple[int, int, int]]:
    """The candidate tilings of a plane: tile parameter (a candidate core plus the overlap) -> (tile height,
    tile width, number of tiles), one per distinct tile shape (tiles shrink to spread evenly, so several
    candidates can give the same tiling)."""

    plans: dict[int, tuple[int, int, int]] = {}
    for size in sorted(TILE_CANDIDATES):
        tile = size + overlap
        th, ys = axis_tiles(height, tile, overlap, multiple)
        tw, xs = axis_tiles(width, tile, overlap, multiple)
        if (th, tw, len(ys) * len(xs)) not in plans.values():
            plans[tile] = (th, tw, len(ys) * len(xs))
    return plans


def choose_tile(rates: dict, height: int, width: int, overlap: int, multiple: int, plans: dict | None = None) -> int:
    """The tile parameter that predicts a ``height`` x ``width`` plane soonest: each candidate tiling's pixels
    (overlaps included) over the measured speed of its own tile shape; near-ties (1%) go to fewer tiles.

    ``rates`` maps tile shapes ((h, w), or a square's side) to pixels per second; shapes not in it are read
    between the measured sizes (by the larger side). ``plans``: the plane's ``tilings``, if already made."""
    rates = {_shape_key(shape): rate for shape, rate in rates.items()}
    squares = sorted((h, r) for (h, w), r in rates.items() if h == w)
    best, best_time = None, math.inf
    plans = plans if plans is not None else tilings(height, width, overlap, multiple)
    for tile, (th, tw, n) in sorted(plans.items(), reverse=True):
        speed = rates.get((th, tw))
        if speed is None:
            speed = float(np.interp(max(th, tw), [h for h, _ in squares], [r for _, r in squares]))
        seconds = n * th * tw / speed
        if seconds < best_time * 0.99:  # larger tiles come first: a smaller one must be clearly faster
            best, best_time = tile, seconds
    return best


# pixels shared by neighbouring tiles, blended by a ramp: 32 changed 0.02-0.06% of the labels of 64 on the tiled
# DSB2018 image (2048 x 2048; a scribble model and a mask model, pixel Dice equal to 4 decimals) and computes
# 6% fewer pixels there (4 tiles of 544 per axis instead of 560): prediction is bound by the network's pixels
DEFAULT_OVERLAP = 32


# tile_size=None (the default) picks the tile per machine and plane (choose_tile): the network's
# measured speed on each candidate tiling's tile shape, times the pixels that tiling computes. DEFAULT_TILE is
# the fixed choice where measuring is not wanted: 1024 pixels plus the overlap, the fastest on AMX CPUs.
DEFAULT_TILE = 1024 + DEFAULT_OVERLAP


MAX_BATCH_PIXELS = 1 << 21  # tiles per forward pass: at most ~2 Mpx, so memory stays bounded


def axis_tiles(length: int, tile: int, overlap: int, multiple: int = 16) -> tuple[int, list[int]]:
    """Tile size and start offsets along one axis: as few tiles as ``tile`` allows, spread evenly.

    The tiles shrink to just cover the axis with at least ``overlap`` between neighbours (rounded up to a size
    the network takes without padding), instead of a last tile that overlaps its neighbour by most of its
    width: on a 2048-pixel axis with 512-pixel tiles that is 5 tiles of 464, not 4 of 512 plus one more.
    """
    if length <= tile:
        return length, [0]
    n = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (n - 1) * overlap) // n)
    size = min(tile, -(-size // multiple) * multiple, length)
    step = (length - size) / (n - 1)
    return size, [int(round(i * step)) for i in range(n)]


def ramp(n: int, overlap: int) -> np.ndarray:
    """1D blending weights: 1 in the middle, falling linearly to near 0 across the overlap at each end."""
    if overlap <= 0:
        return np.ones(n, np.float32)
    i = np.arange(n, dtype=np.float32)
    return np.clip((np.minimum(i, n - 1 - i) + 0.5) / (overlap / 2 + 0.5), 1e-3, 1.0)


def check_tiling(tile_size: int | None, overlap: int, batch_size: int) -> None:
    if tile_size is None:
        tile_size = DEFAULT_TILE
    elif isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)):
        raise InputError(f"tile_size must be a whole number of pixels or None (auto), got {tile_size!r}.")
    if tile_size < 16:
        raise InputError(f"tile_size must be at least 16, got {tile_size}.")
    if not 0 <= overlap < tile_size:
        raise InputError(f"overlap must be in [0, tile_size), got {overlap}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")


def auto_tile(model: UNet, net: torch.nn.Module, height: int, width: int, overlap: int, dev, precision: str) -> int:
    """The fastest tiling for this plane on this machine: its candidate tile shapes are timed once per
    machine and model shape (``tile_rates``), then read from the cache."""
    multiple = 2 ** getattr(model, "depth", 4)
    if max(height, width) <= min(TILE_CANDIDATES) + overlap:
        return max(height, width) + multiple  # one tile whatever the speeds: nothing to measure
    plans = tilings(height, width, overlap, multiple)
    shapes = [(th, tw) for th, tw, _ in plans.values()]
    return choose_tile(tile_rates(model, net, dev, precision, shapes), height, width, overlap, multiple, plans)
