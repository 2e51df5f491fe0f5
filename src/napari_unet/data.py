"""Images in, training batches out: image checks and channel axes, normalization, patches, augmentation.

The label conventions, the guess between them and their checks live in ``labels.py``; their names are
re-exported here so older imports keep working.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .labels import (  # noqa: F401  (re-exported: label conventions moved to labels.py)
    _MAX_LABEL,
    IGNORE,
    MAX_CLASSES,
    PSEUDO,
    _integer_labels,
    count_classes,
    guess_label_mode,
    labels_to_target,
    resolve_label_mode,
)

DEFAULT_NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}
_NORMALIZATION_SAMPLE = 1 << 22  # percentiles of a huge image from a strided sample of ~4 Mpx


# ---------------------------------------------------------------------------------------------- images


def guess_channel_axis(shape: Sequence[int], in_channels: int | None = None) -> int | None:
    """Which axis holds channels, or None. RGB(A)-like trailing axes count; stacks (Z, Y, X) do not."""
    if len(shape) < 3:
        if in_channels not in (None, 1):
            raise InputError(
                f"The model expects {in_channels} channels but the image is 2D {tuple(shape)}: "
                "give a multi-channel image."
            )
        return None
    last, first = shape[-1], shape[0]
    if in_channels is not None and in_channels > 1:
        if last == in_channels:
            return len(shape) - 1
        if first == in_channels:
            return 0
        raise InputError(
            f"The model expects {in_channels} channels but no axis of the image {tuple(shape)} has that "
            "size: pass channel_axis, or use a model trained on images like this one."
        )
    rgb_like = last in (2, 3, 4) and min(shape[-3], shape[-2]) >= 4 * last
    if rgb_like and in_channels == 1:
        raise InputError(
            f"The image {tuple(shape)} looks multi-channel (last axis {last}) but the model was trained on "
            f"1-channel images: convert it to grayscale or train a {last}-channel model (if the last axis "
            "really is spatial, pass channel_axis=None explicitly)."
        )
    return len(shape) - 1 if rgb_like else None


def spatial_shape(shape: Sequence[int], channel_axis: int | None) -> tuple[int, ...]:
    """The shape without the channel axis: (..., H, W)."""
    shape = list(shape)
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise InputError(f"channel_axis must be an integer axis or None, got {channel_axis!r}.")
        if not -len(shape) <= channel_axis < len(shape):
            raise InputError(
                f"channel_axis {channel_axis} is out of range for an image of shape {tuple(shape)}: "
                f"give an axis from {-len(shape)} to {len(shape) - 1}, or None for single-channel images."
            )
        del shape[channel_axis % len(shape)]
    return tuple(shape)


_DTYPE_HINTS = {
    "c": "complex numbers: give a real image, e.g. np.abs(image) or image.real",
    "O": "Python objects, not numbers (a list of images of different sizes?): give one numeric array per image",
    "U": "text, not numbers: give a numeric image",
    "S": "bytes, not numbers: give a numeric image",
    "M": "dates, not intensities: give a numeric image",
    "m": "time spans, not intensities: give a numeric image",
    "V": "a structured (record) type: give a plain numeric array, e.g. with one channel axis",
}


def check_image(image, what: str = "The image"):
    """``image`` as an array-like with a numeric dtype, >= 2 dimensions and no empty axis, else ``InputError``.

    Lazy arrays (memory-mapped, zarr, dask) are returned as they are; lists and scalars go through
    ``np.asarray``. Only the shape and dtype are looked at, so nothing is read.
    """
    if image is None:
        raise InputError(f"{what} is missing (None): give a numpy, zarr or dask array.")
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        try:
            image = np.asarray(image)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise InputError(f"{what} is not an array ({type(image).__name__}: {e}): give one numeric array.") from e
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        hint = _DTYPE_HINTS.get(dtype.kind, "not numbers: give a numeric image")
        raise InputError(f"{what} has dtype {dtype}, {hint}.")
    shape = tuple(image.shape)
    if len(shape) < 2:
        raise InputError(
            f"{what} needs at least 2 dimensions (height and width), got shape {shape}: give a 2D image or a stack."
        )
    if 0 in shape:
        raise InputError(f"{what} is empty (shape {shape}): give an image with at least one pixel along every axis.")
    return image


def available_memory() -> int | None:
    """Bytes of memory this process can still get without swapping (Linux, or with psutil), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no psutil, or a platform it does not know
        return None


def check_fits(need: int, what: str, advice: str) -> None:
    """An ``InputError`` saying what to do when ``need`` bytes would not fit in the free memory."""
    free = available_memory()
    if free is not None and need > 0.9 * free:
        raise InputError(f"{what} needs about {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is free: {advice}")


def iter_slices(image, channel_axis: int | None = None) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield (leading index, (C, H, W) float32 array) for every 2D plane of a 2D image or Z/T stack.

    Only one plane is read at a time, so memory-mapped, zarr and dask inputs stay lazy.
    """
    image = check_image(image)
    ndim = len(image.shape)
    if channel_axis is not None:
        spatial_shape(image.shape, channel_axis)  # checks the axis
        channel_axis %= ndim
    axes = [a for a in range(ndim) if a != channel_axis]
    if len(axes) < 2:
        raise InputError(
            f"An image needs at least 2 spatial dimensions, got shape {tuple(image.shape)} with channel axis "
            f"{channel_axis}: give a 2D image or a stack, with channel_axis=None if it has one channel."
        )
    lead_axes = axes[:-2]
    lead_shape = tuple(image.shape[a] for a in lead_axes)
    for idx in np.ndindex(*lead_shape):
        key: list = [slice(None)] * ndim
        for ax, i in zip(lead_axes, idx, strict=True):
            key[ax] = i
        plane = np.asarray(image[tuple(key)])
        if channel_axis is None:
            plane = plane[None]
        else:
            kept = [a for a in range(ndim) if a not in lead_axes]
            plane = np.moveaxis(plane, kept.index(channel_axis), 0)
        with np.errstate(over="ignore"):  # float64 beyond float32: refused just below
            plane32 = plane.astype(np.float32, copy=False)
        if plane.dtype.kind == "f" and plane.dtype.itemsize > 4 and np.isinf(plane32).any():
            big = np.isinf(plane32) & np.isfinite(plane)
            if big.any():
                raise InputError(
                    f"The image has values up to {np.abs(plane[big]).max():.3g}, beyond the float32 range used "
                    "for computing: rescale it first, e.g. image / np.nanmax(np.abs(image))."
                )
        yield idx, plane32


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


# ---------------------------------------------------------------------------------------------- patches


@dataclass
class Sample:
    """One training image: normalized (C, H, W) float32 and its target (H, W) int16."""

    image: np.ndarray
    target: np.ndarray


class PatchSampler:
    """Random patches that favour annotated pixels, class by class, so a few strokes are seen often.

    With probability ``p_annotated`` a patch is centred (with jitter) on an annotated pixel of a class drawn
    uniformly, otherwise it is placed uniformly. Images smaller than the patch are padded (target: ignore).
    """

    def __init__(
        self, samples: Sequence[Sample], patch_size: int, rng: np.random.Generator, p_annotated: float = 0.8
    ) -> None:
        self.patch = int(patch_size)
        self.rng = rng
        self.p_annotated = p_annotated
        self.images: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.coords: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, s in enumerate(samples):
            img, tgt = self._pad(s.image, s.target)
            self.images.append(img)
            self.targets.append(tgt)
            for cls in np.unique(tgt[(tgt >= 0) & (tgt < PSEUDO)]):  # centre on strokes, not pseudo-labels
                pts = np.argwhere(tgt == cls).astype(np.int32)
                if len(pts) > 200_000:  # keep memory bounded on huge dense masks
                    pts = pts[rng.choice(len(pts), 200_000, replace=False)]
                self.coords.setdefault(int(cls), []).append((i, pts))
        self.weights = np.array([max(1, np.count_nonzero(t >= 0)) for t in self.targets], dtype=float)
        self.weights /= self.weights.sum()

    def _pad(self, image: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = target.shape
        ph, pw = max(0, self.patch - h), max(0, self.patch - w)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "edge"
            image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode=mode)
            target = np.pad(target, ((0, ph), (0, pw)), constant_values=IGNORE)
        return np.ascontiguousarray(image), np.ascontiguousarray(target)

    def _origin(self) -> tuple[int, int, int]:
        p, rng = self.patch, self.rng
        if self.coords and rng.random() < self.p_annotated:
            cls = list(self.coords)[rng.integers(len(self.coords))]
            entries = self.coords[cls]
            i, pts = entries[rng.integers(len(entries))]
            y, x = pts[rng.integers(len(pts))]
            h, w = self.targets[i].shape
            y0 = int(np.clip(y - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, h - p))
            x0 = int(np.clip(x - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, w - p))
            return i, y0, x0
        i = int(rng.choice(len(self.images), p=self.weights))
        h, w = self.targets[i].shape
        return i, int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A (B, C, P, P) float32 image batch and (B, P, P) int64 target batch."""
        p = self.patch
        xs, ys = [], []
        for _ in range(batch_size):
            i, y0, x0 = self._origin()
            xs.append(self.images[i][:, y0 : y0 + p, x0 : x0 + p])
            ys.append(self.targets[i][y0 : y0 + p, x0 : x0 + p])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


# ---------------------------------------------------------------------------------------------- augmentation


@dataclass
class Augmentation:
    """Random flips, 90-degree rotations, elastic deformation, intensity scale/shift, Gaussian noise.

    Runs on whole batches in torch (one ``grid_sample`` for the elastic part), so it costs far less than
    the training step it feeds.
    """

    flips: bool = True
    elastic: float = 0.5  # probability per sample
    elastic_alpha: float = 0.04  # displacement std, in units of the patch half-width
    elastic_grid: int = 5  # control points per side of the smooth displacement field
    intensity: float = 0.2  # scale in [1 - s, 1 + s], shift in [-s, s]
    noise: float = 0.03  # Gaussian noise std, drawn per sample in [0, noise]
    # brightness: intensities times a factor log-uniform in [1 / (1 + c), 1 + c], so a model does not rely on
    # the absolute level, which percentile normalization leaves image-dependent (bright debris, crowding)
    contrast: float = 0.0
    blur: float = 0.0  # probability per sample of a Gaussian blur with sigma uniform in [0.5, 1.5] px

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        g = generator
        if self.flips:
            k = torch.randint(0, 4, (b,), generator=g)
            flip = torch.rand(b, generator=g) < 0.5
            xs, ys = [], []
            for i in range(b):
                xi, yi = x[i], y[i]
                if flip[i]:
                    xi, yi = xi.flip(-1), yi.flip(-1)
                xs.append(torch.rot90(xi, int(k[i]), (-2, -1)))
                ys.append(torch.rot90(yi, int(k[i]), (-2, -1)))
            x, y = torch.stack(xs), torch.stack(ys)
        if self.elastic > 0:
            x, y = self._elastic(x, y, g)
        if self.blur > 0:
            x = self._blur(x, g)
        if self.contrast > 0:
            span = math.log1p(self.contrast)
            x = x * torch.exp((torch.rand(b, x.shape[1], 1, 1, generator=g) * 2 - 1) * span)
        if self.intensity > 0:
            s = self.intensity
            scale = 1 + (torch.rand(b, x.shape[1], 1, 1, generator=g) * 2 - 1) * s
            shift = (torch.rand(b, x.shape[1], 1, 1, generator=g) * 2 - 1) * s
            x = x * scale + shift
        if self.noise > 0:
            std = torch.rand(b, 1, 1, 1, generator=g) * self.noise
            x = x + torch.randn(x.shape, generator=g) * std
        return x.contiguous(), y.contiguous()

    def _blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c = x.shape[:2]
        sigma = torch.rand(b, generator=g) + 0.5
        apply = torch.rand(b, generator=g) < self.blur
        r = 4
        t = torch.arange(-r, r + 1, dtype=x.dtype)
        k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        k = torch.where(apply[:, None], k / k.sum(1, keepdim=True), (t == 0).to(x.dtype).expand(b, -1))
        # one separable depthwise convolution per axis, every sample with its own kernel
        xs = x.reshape(1, b * c, *x.shape[2:])
        kk = k.repeat_interleave(c, 0)
        xs = F.conv2d(F.pad(xs, (r, r, 0, 0), mode="reflect"), kk[:, None, None, :], groups=b * c)
        xs = F.conv2d(F.pad(xs, (0, 0, r, r), mode="reflect"), kk[:, None, :, None], groups=b * c)
        return xs.reshape(x.shape)

    def _elastic(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        apply = (torch.rand(b, generator=g) < self.elastic).float().view(b, 1, 1, 1)
        coarse = torch.randn(b, 2, self.elastic_grid, self.elastic_grid, generator=g) * self.elastic_alpha
        disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True) * apply
        theta = torch.eye(2, 3).unsqueeze(0).expand(b, 2, 3)
        grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False) + disp.permute(0, 2, 3, 1)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        # labels: nearest neighbour; pixels pulled from outside the patch become "ignore"
        yf = (y + 1).unsqueeze(1).float()
        y = F.grid_sample(yf, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return x, y.squeeze(1).round().long() - 1
