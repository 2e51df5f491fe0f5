"""Where and how the network runs: device choice and the bf16 fast path on CPUs that have it."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch

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


def pick_precision(device: torch.device, precision: str = "auto", volume: bool = False) -> str:
    """'bf16' or 'fp32' ('auto': bf16 on GPUs with native bf16 and on CPUs with native bf16; ``volume``: fp32 on
    CPUs, where the bf16 backward of 3D convolutions gave NaN or inf gradients in 2 to 5 of 12 steps on an
    AVX-512 BF16 EPYC, torch 2.13 / oneDNN).

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
        return "bf16" if cpu_has_fast_bf16() and not volume else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """An autocast context for bf16, or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_module(model: torch.nn.Module, device: torch.device, precision: str = "bf16") -> torch.nn.Module:
    """Move to the device; channels_last lets oneDNN/cuDNN pick their fastest convolution kernels."""
    return model.to(device=device, memory_format=channels_last(2 + getattr(model, "spatial_dims", 2), precision))


def channels_last(ndim: int, precision: str = "bf16") -> torch.memory_format:
    """channels_last for (B, C, H, W) tensors; for volumes (B, C, Z, Y, X) channels_last_3d with bf16 and plain
    contiguous with fp32: a 3D U-Net's training step on an AVX-512 BF16 EPYC ran 1.2x faster in channels_last_3d
    with bf16, but 1.5x slower with fp32 (benchmarks/volumes.py)."""
    if ndim == 5:
        return torch.channels_last_3d if precision == "bf16" else torch.contiguous_format
    return torch.channels_last
