"""Where and how the network runs: device choice and the bf16 fast path on CPUs that have it."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .errors import InputError


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; an explicit name is checked before use."""
    name = str(device)
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


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX or AVX-512 BF16); elsewhere bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_precision(device: torch.device, precision: str = "auto") -> str:
    """'bf16' or 'fp32' ('auto': bf16 on CUDA with bf16 support and on CPUs with native bf16)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise InputError(f"Unknown precision {precision!r}: use auto, bf16 or fp32.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
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
