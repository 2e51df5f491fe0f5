"""Where and how the network runs: device choice and the bf16 fast path on CPUs that have it."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

log = logging.getLogger("napari_unet")

# Override the automatic choices without touching code, e.g. from a napari session:
# NAPARI_UNET_DEVICE=cpu, NAPARI_UNET_PRECISION=fp32. They apply where the caller asked for "auto".
DEVICE_ENV = "NAPARI_UNET_DEVICE"
PRECISION_ENV = "NAPARI_UNET_PRECISION"


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; an explicit name is checked before use."""
    name = str(device)
    if name == "auto":
        name = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"Unknown device {name!r}: use auto, cpu, cuda or mps.") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available: use --device auto or cpu.")
    return dev


def _isa_capped() -> bool:
    """True where oneDNN or ATen is told to use no more than AVX2 (an AVX2-only CPU, or emulating one)."""
    isa = os.environ.get("DNNL_MAX_CPU_ISA", "").strip().upper()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    capped_isa = isa.startswith(("SSE", "AVX")) and not isa.startswith(("AVX512", "AVX10"))
    return capped_isa or aten in ("default", "avx2")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX-512 BF16); elsewhere bf16 is slower than fp32."""
    if _isa_capped():
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        if any(probe is not None and probe() for probe in probes):
            return True
    except Exception:  # a private probe that changed or failed: fall back to the flags
        pass
    flags = _cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


@functools.cache
def cpu_can_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions at all (natively or emulated with AVX-512); AVX2-only CPUs cannot."""
    if _isa_capped():
        return False
    probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else cpu_has_fast_bf16()
    except Exception:
        return cpu_has_fast_bf16()


def cuda_has_native_bf16() -> bool:
    """bf16 computed by the GPU's tensor cores (compute capability >= 8.0), not emulated in fp32."""
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch: no including_emulation argument
        return torch.cuda.get_device_capability()[0] >= 8


@functools.cache
def cpu_summary() -> str:
    """The CPU model, its vector extensions and the precision 'auto' picks: every benchmark prints it."""
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    flags = _cpu_flags()
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx_ne_convert", "asimd") if f in flags]
    capped = ""
    if _isa_capped():
        capped = (
            f" (capped by DNNL_MAX_CPU_ISA={os.environ.get('DNNL_MAX_CPU_ISA', '')} "
            f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')}: emulating an AVX2 CPU)"
        )
    precision = pick_precision(torch.device("cpu"))
    return f"{model}; {' '.join(found) or 'no AVX2'}{capped}; {torch.get_num_threads()} threads; auto precision {precision}"


def pick_precision(device: torch.device, precision: str = "auto") -> str:
    """'bf16' or 'fp32' ('auto': bf16 on GPUs with native bf16 and on CPUs with native bf16).

    An explicit 'bf16' (argument or NAPARI_UNET_PRECISION) on a CPU that cannot run it is a one-line
    ``InputError``, not a traceback from deep inside oneDNN.
    """
    source = "precision 'bf16'"
    if precision == "auto":
        precision = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
        source = f"{PRECISION_ENV}=bf16"
    if precision not in ("auto", "bf16", "fp32"):
        raise InputError(f"Unknown precision {precision!r}: use auto, bf16 or fp32.")
    if precision == "bf16" and device.type == "cpu" and not cpu_can_bf16():
        raise InputError(
            f"{source} was asked for, but this CPU has no bf16 support (it needs AVX-512 or AMX): "
            "use precision fp32 or auto."
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """An autocast context for bf16, or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_module(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to the device; channels_last lets oneDNN/cuDNN pick their fastest convolution kernels."""
    return model.to(device=device, memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------- inference


@functools.cache
def _onednn_conv_relu():
    """oneDNN's fused convolution + ReLU (what torch.compile emits on CPUs), or None where it is missing or broken."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        for dtype in (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,):
            x = torch.ones(1, 2, 5, 5, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = torch.full((3, 2, 3, 3), -1.0, dtype=dtype).contiguous(memory_format=torch.channels_last)
            b = torch.full((3,), 2.0, dtype=dtype)
            got = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
            if not torch.equal(got.float(), F.relu(F.conv2d(x.float(), w.float(), b.float(), padding=1))):
                return None
    except Exception:  # an op whose signature changed: use the plain path
        return None
    return op


class _ConvReLU(nn.Module):
    """A 3x3 convolution with its batch normalization folded in, then ReLU, in one kernel where possible."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        def f32(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to("cpu", torch.float32)

        weight, bias = fuse_conv_bn_weights(
            f32(conv.weight), f32(conv.bias), f32(bn.running_mean), f32(bn.running_var), bn.eps,
            f32(bn.weight), f32(bn.bias),
        )  # fmt: skip
        self.weight = weight.detach().to(device, dtype).contiguous(memory_format=torch.channels_last)
        self.bias = bias.detach().to(device, dtype)
        self.padding = list(conv.padding)
        self.op = _onednn_conv_relu() if device.type == "cpu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op is not None:
            return self.op(x, self.weight, self.bias, self.padding, [1, 1], [1, 1], 1, "relu", [], "")
        return F.relu_(F.conv2d(x, self.weight, self.bias, padding=self.padding))


def _fold_two_conv(block: nn.Sequential, device: torch.device, dtype: torch.dtype) -> nn.Sequential:
    layers = [m for m in block if not isinstance(m, (nn.ReLU, nn.Dropout2d, nn.Dropout))]
    kinds = [type(m) for m in layers]
    if kinds != [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d]:
        raise TypeError(f"unexpected block {kinds}")
    return nn.Sequential(_ConvReLU(layers[0], layers[1], device, dtype), _ConvReLU(layers[2], layers[3], device, dtype))


class FusedUNet(nn.Module):
    """An inference-only copy of a ``UNet``: batch norms folded into the convolutions, ReLU fused into them,
    weights stored once in the compute dtype (bf16 or fp32) and channels_last.

    Same outputs as ``model.eval()`` (up to rounding) at about 1.5x the speed of the eager bf16 network on a
    CPU: batch norm and ReLU are memory-bound passes that cost as much as the convolutions at 16 filters.
    The weights are a snapshot: build a new one after training further.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:
        super().__init__()
        from .model import Down, TwoConv, UNet, UpCat

        if type(model).forward is not UNet.forward or not isinstance(model.inc, TwoConv):
            raise TypeError("not a plain UNet")
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.depth = model.depth
        self.out_channels = model.out_channels
        self.inc = _fold_two_conv(model.inc, device, self.dtype)
        downs = []
        for down in model.downs:
            if not (isinstance(down, Down) and isinstance(down[0], nn.MaxPool2d)):
                raise TypeError("unexpected down block")
            downs.append(_fold_two_conv(down[1], device, self.dtype))
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList()
        self.up_weights: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for up in model.ups:
            if not isinstance(up, UpCat):
                raise TypeError("unexpected up block")
            self.ups.append(_fold_two_conv(up.conv, device, self.dtype))
            bias = None if up.up.bias is None else up.up.bias.detach().to(device, self.dtype)
            self.up_weights.append((up.up.weight.detach().to(device, self.dtype), bias))
        head = model.head
        self.head_weight = head.weight.detach().to(device, self.dtype).contiguous(memory_format=torch.channels_last)
        self.head_bias = None if head.bias is None else head.bias.detach().to(device, self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits of a (B, C, H, W) batch of any size."""
        from .model import pad_to_multiple

        h, w = x.shape[-2:]
        x = pad_to_multiple(x.float(), 2**self.depth).to(self.dtype).contiguous(memory_format=torch.channels_last)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for conv, (weight, bias) in zip(self.ups, self.up_weights, strict=True):
            y = conv(torch.cat([F.conv_transpose2d(y, weight, bias, stride=2), skips.pop()], dim=1))
        return F.conv2d(y, self.head_weight, self.head_bias)[..., :h, :w].float()


class _AutocastNet(nn.Module):
    """Fallback for networks FusedUNet does not know: the model itself, channels_last, under autocast."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:
        super().__init__()
        self.net = prepare_module(model.eval(), device)
        self.device, self.precision = device, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.net(x.contiguous(memory_format=torch.channels_last)).float()


def inference_network(
    model: nn.Module, device: str | torch.device = "auto", precision: str = "auto", fuse: bool = True
) -> nn.Module:
    """The fastest inference form of ``model`` on ``device``: a ``FusedUNet`` where the model is a plain UNet,
    else the model under autocast. Call it under ``torch.inference_mode()``; it returns float32 logits."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    prec = pick_precision(dev, precision)
    if not fuse:
        return _AutocastNet(model, dev, prec).eval()
    # one fused copy per model, rebuilt when a weight changes (in-place updates bump a tensor's _version)
    key = (str(dev), prec, tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers())))
    cached = _FUSED.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        net = FusedUNet(model, dev, prec).eval()
    except (TypeError, AttributeError):
        return _AutocastNet(model, dev, prec).eval()
    _FUSED[model] = (key, net)
    return net


_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def warm_up(
    in_channels: int = 1,
    n_classes: int = 1,
    filters: int = 16,
    depth: int = 4,
    patch_size: int = 128,
    batch_size: int = 8,
    preview_size: int = 512,
    device: str | torch.device = "auto",
    precision: str = "auto",
    should_stop=lambda: False,
) -> float:
    """Pay the one-off costs of the first training step and preview ahead of time; returns the seconds spent.

    ``should_stop`` is checked between the phases (each well under a second), so an application that quits
    right after starting it waits for one phase at most.

    The first ``torch.optim`` optimizer imports ``torch._dynamo`` (1-2 s), and oneDNN builds its kernels for
    each new shape on first use (another 1-2 s for a bf16 forward + backward). Both are per process and
    shared by every later model of the same shapes, so a GUI can call this in a background thread while
    the user paints, and "Train" then shows its first preview seconds sooner. Safe to call more than once.
    """
    import time

    from .model import UNet

    start = time.perf_counter()
    dev = device if isinstance(device, torch.device) else pick_device(device)
    prec = pick_precision(dev, precision)
    model = prepare_module(UNet(in_channels, n_classes, filters, depth), dev)
    if should_stop():
        return time.perf_counter() - start
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.zeros(batch_size, in_channels, patch_size, patch_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    with autocast(dev, prec):
        loss = model(x).float().mean()
    if should_stop():
        return time.perf_counter() - start
    loss.backward()
    optimizer.step()
    if should_stop():
        return time.perf_counter() - start
    with torch.inference_mode():
        inference_network(model.eval(), dev, prec)(torch.zeros(1, in_channels, preview_size, preview_size, device=dev))
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- tile choice

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
            from .io import atomic_path

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
    from .prediction import _tiles

    plans: dict[int, tuple[int, int, int]] = {}
    for size in sorted(TILE_CANDIDATES):
        tile = size + overlap
        th, ys = _tiles(height, tile, overlap, multiple)
        tw, xs = _tiles(width, tile, overlap, multiple)
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
