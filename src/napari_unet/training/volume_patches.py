"""3D training patches of volumes, and their augmentation (flips, rotations in XY, intensity, noise)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..labels import IGNORE
from .config import TrainConfig
from .patches import Sample, annotated_points, annotated_weights


class VolumeSampler:
    """Random (Z, Y, X) patches of (C, Z, Y, X) samples that favour annotated voxels, class by class.

    With probability ``p_annotated`` a patch holds an annotated voxel of a class drawn uniformly (a painted
    plane or a stroke), otherwise it is placed uniformly. Volumes smaller than the patch are padded (ignored).
    The same interface as ``patches.PatchSampler``: ``batch(n)``.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        patch: tuple[int, int, int],
        rng: np.random.Generator,
        p_annotated: float = 0.8,
    ) -> None:
        self.patch = tuple(int(n) for n in patch)
        self.rng = rng
        self.p_annotated = p_annotated
        self.images: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        for s in samples:
            img, tgt = self._pad(s.image, s.target)
            self.images.append(img)
            self.targets.append(tgt)
        self.coords = annotated_points(self.targets, rng)
        self.weights = annotated_weights(self.targets)

    def _pad(self, image: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pads = [max(0, p - n) for p, n in zip(self.patch, target.shape, strict=True)]
        if any(pads):
            mode = "reflect" if all(p < n for p, n in zip(pads, target.shape, strict=True)) else "edge"
            image = np.pad(image, [(0, 0)] + [(0, p) for p in pads], mode=mode)
            target = np.pad(target, [(0, p) for p in pads], constant_values=IGNORE)
        return np.ascontiguousarray(image), np.ascontiguousarray(target)

    def _origin(self) -> tuple[int, list[int]]:
        rng = self.rng
        if self.coords and rng.random() < self.p_annotated:
            cls = list(self.coords)[rng.integers(len(self.coords))]
            entries = self.coords[cls]
            i, pts = entries[rng.integers(len(entries))]
            centre = pts[rng.integers(len(pts))]
            shape = self.targets[i].shape
            origin = [
                int(np.clip(c - p // 2 + rng.integers(-(p // 4), p // 4 + 1), 0, n - p))
                for c, p, n in zip(centre, self.patch, shape, strict=True)
            ]
            return i, origin
        i = int(rng.choice(len(self.images), p=self.weights))
        shape = self.targets[i].shape
        return i, [int(rng.integers(0, n - p + 1)) for p, n in zip(self.patch, shape, strict=True)]

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A (B, C, Z, Y, X) float32 image batch and (B, Z, Y, X) int64 target batch."""
        xs, ys = [], []
        for _ in range(batch_size):
            i, origin = self._origin()
            box = tuple(slice(o, o + p) for o, p in zip(origin, self.patch, strict=True))
            xs.append(self.images[i][(slice(None), *box)])
            ys.append(self.targets[i][box])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


@dataclass
class VolumeAugmentation:
    """Random flips in Z, Y and X, 90-degree rotations in XY (Z stays Z: anisotropy is kept), intensity
    scale/shift, brightness (``contrast``, as in ``augmentation.Augmentation``) and Gaussian noise."""

    intensity: float = 0.2
    noise: float = 0.03
    contrast: float = 0.0

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, g = x.shape[0], generator
        square = x.shape[-1] == x.shape[-2]
        k = torch.randint(0, 4, (b,), generator=g)
        flips = torch.rand(b, 3, generator=g) < 0.5
        xs, ys = [], []
        for i in range(b):
            dims = [d for d, f in zip((-3, -2, -1), flips[i].tolist(), strict=True) if f]
            xi, yi = (x[i].flip(dims), y[i].flip(dims)) if dims else (x[i], y[i])
            turns = int(k[i]) if square else 2 * int(k[i] % 2)
            xs.append(torch.rot90(xi, turns, (-2, -1)))
            ys.append(torch.rot90(yi, turns, (-2, -1)))
        x, y = torch.stack(xs), torch.stack(ys)
        per_channel = (b, x.shape[1], 1, 1, 1)
        if self.contrast > 0:
            span = math.log1p(self.contrast)
            x = x * torch.exp((torch.rand(per_channel, generator=g) * 2 - 1) * span)
        if self.intensity > 0:
            s = self.intensity
            x = x * (1 + (torch.rand(per_channel, generator=g) * 2 - 1) * s)
            x = x + (torch.rand(per_channel, generator=g) * 2 - 1) * s
        if self.noise > 0:
            x = x + torch.randn(x.shape, generator=g) * (torch.rand(b, 1, 1, 1, 1, generator=g) * self.noise)
        return x.contiguous(), y.contiguous()


def volume_parts(samples: Sequence[Sample], data, cfg: TrainConfig, contrast: float, model=None):
    """The sampler, augmentation and 3D U-Net (new, or ``model`` to fine-tune) of a volume run."""
    from ..meta import record_volume
    from ..model import UNet
    from ..volume import DEFAULT_ANISOTROPY, is_volume_model

    if model is not None and not is_volume_model(model):
        raise InputError("This model segments planes (2D): fine-tune it without volume, or train a new volume model.")
    anisotropy = cfg.anisotropy or (model.anisotropy if model is not None else DEFAULT_ANISOTROPY)
    if model is None:
        model = UNet(data.in_channels, data.n_classes, cfg.filters, cfg.volume_depth, cfg.dropout, 3, anisotropy)
        record_volume(model.meta, anisotropy)  # kept by meta.record_run at the end of the run
    augment = VolumeAugmentation(contrast=contrast) if cfg.augment else None
    rng = np.random.default_rng(cfg.seed)
    patch = (cfg.volume_patch_depth, cfg.volume_patch_size, cfg.volume_patch_size)
    return VolumeSampler(samples, patch, rng), augment, model
