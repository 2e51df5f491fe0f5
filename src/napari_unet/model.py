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


class TwoConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch normalization and ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += [
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max pooling, then two convolutions."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__(nn.MaxPool2d(2), TwoConv(in_ch, out_ch, dropout))


class UpCat(nn.Module):
    """2x2 transposed convolution, concatenation with the skip features, two convolutions."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = TwoConv(out_ch + skip_ch, out_ch, dropout)

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
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.filters = filters
        self.depth = depth
        self.dropout = dropout
        self.meta: dict[str, Any] = {}

        widths = [filters * 2**i for i in range(depth + 1)]
        self.inc = TwoConv(in_channels, widths[0])
        # dropout only in the deepest blocks, where it regularises without blurring boundaries
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], dropout if i >= depth - 2 else 0.0) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            UpCat(widths[i + 1], widths[i], widths[i], dropout if i >= depth - 1 else 0.0)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], self.out_channels, 1)
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
        }

    def _init_weights(self) -> None:
        # He-normal suits ReLU networks: it keeps activations' variance constant through depth.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"UNet expects a (batch, {self.in_channels}, height, width) tensor, got {tuple(x.shape)}.")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2**self.depth)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)[..., :h, :w]


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
