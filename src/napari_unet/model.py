"""The classic U-Net (Ronneberger et al., 2015), small enough to train on a laptop CPU.

The network carries a ``meta`` dict (normalization rule, label convention, training record) so that one
object is all that ``predict``, ``save_model`` and the widgets need.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

# the layers of a 2D network and of a volume (3D) network, by spatial_dims
_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_DROP = {2: nn.Dropout2d, 3: nn.Dropout3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_UP = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class TwoConv(nn.Sequential):
    """Two 3x3 (3x3x3 for volumes) convolutions, each followed by batch normalization and ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0, spatial_dims: int = 2) -> None:
        conv, norm = _CONV[spatial_dims], _NORM[spatial_dims]
        layers: list[nn.Module] = [
            conv(in_ch, out_ch, 3, padding=1, bias=False),
            norm(out_ch),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(_DROP[spatial_dims](dropout))
        layers += [
            conv(out_ch, out_ch, 3, padding=1, bias=False),
            norm(out_ch),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max pooling (for volumes: ``pool``, (1, 2, 2) where Z is coarser than XY), then two convolutions."""

    def __init__(
        self, in_ch: int, out_ch: int, dropout: float = 0.0, spatial_dims: int = 2, pool: int | tuple = 2
    ) -> None:
        super().__init__(_POOL[spatial_dims](pool), TwoConv(in_ch, out_ch, dropout, spatial_dims))


class UpCat(nn.Module):
    """2x2 transposed convolution, concatenation with the skip features, two convolutions."""

    def __init__(
        self, in_ch: int, skip_ch: int, out_ch: int, dropout: float = 0.0, spatial_dims: int = 2, pool: int | tuple = 2
    ) -> None:
        super().__init__()
        self.up = _UP[spatial_dims](in_ch, out_ch, pool, stride=pool)
        self.conv = TwoConv(out_ch + skip_ch, out_ch, dropout, spatial_dims)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net with ``depth`` poolings and ``filters * 2**level`` channels per level.

    ``n_classes`` counts foreground classes: 1 gives one logit (binary, sigmoid), K > 1 gives K + 1 logits
    (background first, softmax). Inputs of any height and width are padded to a multiple of ``2**depth``
    and the output is cropped back, so callers never have to think about sizes.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 1,
        filters: int = 16,
        depth: int = 4,
        dropout: float = 0.0,
        spatial_dims: int = 2,
        anisotropy: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("n_classes", n_classes, 1),
            ("filters", filters, 1),
            ("depth", depth, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise InputError(f"UNet {name} must be an integer >= {low}, got {value!r}.")
        if depth > 7:
            raise InputError(f"UNet depth {depth} is too deep: use 1 to 7 levels (4 is the default).")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"UNet dropout must be in [0, 1), got {dropout!r}.")
        if spatial_dims not in (2, 3):
            raise InputError(f"UNet spatial_dims must be 2 (planes) or 3 (volumes), got {spatial_dims!r}.")
        if not (isinstance(anisotropy, (int, float)) and 0.1 <= anisotropy <= 100):
            raise InputError(f"UNet anisotropy (Z spacing / XY spacing) must be in [0.1, 100], got {anisotropy!r}.")
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.filters = filters
        self.depth = depth
        self.dropout = dropout
        self.spatial_dims = spatial_dims
        self.anisotropy = float(anisotropy)
        self.meta: dict[str, Any] = {}
        dims = spatial_dims
        pools = volume_pools(self.anisotropy, depth) if dims == 3 else [2] * depth

        widths = [filters * 2**i for i in range(depth + 1)]
        self.inc = TwoConv(in_channels, widths[0], 0.0, dims)
        # dropout only in the deepest blocks, where it regularises without blurring boundaries
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], dropout if i >= depth - 2 else 0.0, dims, pools[i]) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            UpCat(widths[i + 1], widths[i], widths[i], dropout if i >= depth - 1 else 0.0, dims, pools[i])
            for i in reversed(range(depth))
        )
        self.head = _CONV[dims](widths[0], self.out_channels, 1)
        self._init_weights()

    @property
    def out_channels(self) -> int:
        return 1 if self.n_classes == 1 else self.n_classes + 1

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments: enough to rebuild the architecture from a model file."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "filters": self.filters,
            "depth": self.depth,
            "dropout": self.dropout,
            # a volume model only: 2D model files stay as they were
            **({"spatial_dims": 3, "anisotropy": self.anisotropy} if self.spatial_dims == 3 else {}),
        }

    @property
    def z_multiple(self) -> int:
        """A volume's depth is padded to a multiple of this (2 per pooling in Z); 1 for a 2D network."""
        if self.spatial_dims == 2:
            return 1
        return 2 ** sum(1 for p in volume_pools(self.anisotropy, self.depth) if p == 2)

    def _init_weights(self) -> None:
        # He-normal suits ReLU networks: it keeps activations' variance constant through depth.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 + self.spatial_dims or x.shape[1] != self.in_channels:
            axes = "depth, height, width" if self.spatial_dims == 3 else "height, width"
            raise InputError(f"UNet expects a (batch, {self.in_channels}, {axes}) tensor, got {tuple(x.shape)}.")
        size = x.shape[2:]
        if self.spatial_dims == 3:
            x = pad_volume(x, self.z_multiple, 2**self.depth)
        else:
            x = pad_to_multiple(x, 2**self.depth)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)[(..., *(slice(0, n) for n in size))]


def volume_pools(anisotropy: float, depth: int) -> list[int | tuple[int, int, int]]:
    """Pooling of each level of a volume network: (1, 2, 2) while Z spacing is at least twice the XY spacing
    (the XY spacing doubles at each pooling), then 2 in every axis once voxels are near-isotropic."""
    pools: list[int | tuple[int, int, int]] = []
    ratio = float(anisotropy)
    for _ in range(depth):
        if ratio >= 2:
            pools.append((1, 2, 2))
            ratio /= 2
        else:
            pools.append(2)
    return pools


def pad_volume(x: torch.Tensor, z_multiple: int, multiple: int) -> torch.Tensor:
    """Pad a (B, C, Z, Y, X) tensor at the end: Z to ``z_multiple``, Y and X to ``multiple`` (replicate)."""
    d, h, w = x.shape[-3:]
    pd, ph, pw = (-d) % z_multiple, (-h) % multiple, (-w) % multiple
    if pd == 0 and ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph, 0, pd), mode="replicate")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad height and width at the end up to a multiple; reflect where the image is big enough."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
