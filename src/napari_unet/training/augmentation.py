"""Batch augmentation in torch: flips, rotations, elastic deformation, intensity, noise, blur."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
