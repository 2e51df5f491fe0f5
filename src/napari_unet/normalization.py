"""The percentile rule shared by training, prediction, the dask path and the bioimage.io export.

Per channel, (x - p_low) / (p_high - p_low) with the percentiles of the plane (of a strided ~4 Mpx sample on
large planes); the rule is recorded in the model file (``meta.NORMALIZATION``) so prediction repeats it.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError

DEFAULT_NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}


_NORMALIZATION_SAMPLE = 1 << 22  # percentiles of a huge image from a strided sample of ~4 Mpx


def sample_step(height: int, width: int) -> int:
    """Stride of the sample that percentiles are taken from: about 4 Mpx, so huge planes stay cheap."""
    return max(1, int(math.sqrt(height * width / _NORMALIZATION_SAMPLE)))


def plane_stats(sample: np.ndarray, rule: dict | None = None) -> np.ndarray:
    """Per-channel (low, scale) from a (C, h, w) sample of a plane; scale is inf for a channel with no finite pixel."""
    rule = rule or DEFAULT_NORMALIZATION
    if rule.get("method") != "percentile":
        raise InputError(f"Unknown normalization method {rule.get('method')!r} in the model file.")
    out = np.zeros((sample.shape[0], 2), np.float64)
    for c in range(sample.shape[0]):
        s = np.asarray(sample[c], dtype=np.float32)
        s = s[np.isfinite(s)]
        if s.size == 0:
            out[c] = (0.0, math.inf)
            continue
        lo, hi = np.percentile(s, [rule["low"], rule["high"]])
        scale = hi - lo
        if not np.isfinite(scale) or scale <= 0:
            scale = float(np.max(s) - np.min(s)) or 1.0
            lo = float(np.min(s))
        out[c] = (lo, scale)
    return out


def apply_stats(plane: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """(x - low) / scale per channel, as float32; NaN/inf pixels and channels with no finite pixel become 0."""
    out = np.empty(plane.shape, np.float32)
    for c in range(plane.shape[0]):
        ch = np.asarray(plane[c], dtype=np.float32)
        lo, scale = stats[c]
        if math.isinf(scale):
            out[c] = 0
            continue
        if abs(lo) + scale < 1e37:
            np.subtract(ch, lo, out=out[c])
            out[c] /= scale
        else:  # values near the float32 limit: scale first so nothing overflows to inf
            np.divide(ch, scale, out=out[c])
            out[c] -= lo / scale
        out[c][~np.isfinite(ch)] = 0
    return out


def normalize(plane: np.ndarray, rule: dict | None = None) -> np.ndarray:
    """Per-channel robust percentile scaling of a (C, H, W) plane to about [0, 1].

    NaN and inf pixels become 0; a constant channel becomes all zeros instead of dividing by zero.
    """
    step = sample_step(*plane.shape[-2:])
    return apply_stats(plane, plane_stats(plane[:, ::step, ::step], rule))
