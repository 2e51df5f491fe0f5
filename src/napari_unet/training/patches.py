"""Training samples and the patch sampler that favours annotated pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..labels import IGNORE, PSEUDO


@dataclass
class Sample:
    """One training image: normalized (C, H, W) float32 and its target (H, W) int16."""

    image: np.ndarray
    target: np.ndarray


MAX_POINTS = 200_000  # annotated points kept per class and sample: memory stays bounded on huge dense masks


def annotated_points(
    targets: Sequence[np.ndarray], rng: np.random.Generator
) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Per class, (sample index, coordinates of its annotated pixels or voxels) to centre patches on; strokes
    only, not pseudo-labels."""
    coords: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, tgt in enumerate(targets):
        for cls in np.unique(tgt[(tgt >= 0) & (tgt < PSEUDO)]):
            pts = np.argwhere(tgt == cls).astype(np.int32)
            if len(pts) > MAX_POINTS:
                pts = pts[rng.choice(len(pts), MAX_POINTS, replace=False)]
            coords.setdefault(int(cls), []).append((i, pts))
    return coords


def annotated_weights(targets: Sequence[np.ndarray]) -> np.ndarray:
    """How often each sample is drawn for a uniformly placed patch: by its annotated pixels."""
    weights = np.array([max(1, np.count_nonzero(t >= 0)) for t in targets], dtype=float)
    return weights / weights.sum()


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
        for s in samples:
            img, tgt = self._pad(s.image, s.target)
            self.images.append(img)
            self.targets.append(tgt)
        self.coords = annotated_points(self.targets, rng)
        self.weights = annotated_weights(self.targets)
        self.focus: list[tuple[int, np.ndarray]] = []  # pixels a continued model got wrong (see focus_on)
        self.focus_share = 0.0

    def focus_on(self, masks: Sequence[np.ndarray] | None, weight: float) -> PatchSampler:
        """Centre patches on the pixels of ``masks`` (one per sample) ``weight`` times as often as on one class."""
        if masks is None:
            return self
        self.focus = [(i, np.argwhere(m).astype(np.int32)) for i, m in enumerate(masks) if m.any()]
        self.focus_share = weight / (weight + len(self.coords)) if self.focus and weight > 0 else 0.0
        return self

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
            if self.focus_share and rng.random() < self.focus_share:
                entries = self.focus
            else:
                entries = self.coords[list(self.coords)[rng.integers(len(self.coords))]]
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
