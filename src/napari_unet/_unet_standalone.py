"""The U-Net of napari-unet as one self-contained, TorchScript-compatible file (it needs only torch).

This file travels inside every bioimage.io package that ``napari-unet export`` writes, as the architecture of
the ``pytorch_state_dict`` weights, and it is what those packages' TorchScript weights are scripted from. Its
modules carry the same names and shapes as ``napari_unet.model.UNet``, so the same state dict loads into
either, and both compute the same function (a test checks it). It must import nothing but torch.
"""

import torch
import torch.nn.functional as F
from torch import nn


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
    """(batch, in_channels, H, W) float32 -> (batch, out_channels, H, W) logits, for any H and W.

    ``n_classes`` = 1: one logit (sigmoid > 0.5 is foreground); K > 1: K + 1 logits, background first
    (the label is the argmax). Inputs are padded to a multiple of ``2**depth`` and the output cropped back.
    """

    def __init__(
        self, in_channels: int = 1, n_classes: int = 1, filters: int = 16, depth: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        widths = [filters * 2**i for i in range(depth + 1)]
        self.multiple = 2**depth
        self.inc = TwoConv(in_channels, widths[0])
        self.downs = nn.ModuleList(
            [Down(widths[i], widths[i + 1], dropout if i >= depth - 2 else 0.0) for i in range(depth)]
        )
        self.ups = nn.ModuleList(
            [
                UpCat(widths[i + 1], widths[i], widths[i], dropout if i >= depth - 1 else 0.0)
                for i in reversed(range(depth))
            ]
        )
        self.head = nn.Conv2d(widths[0], 1 if n_classes == 1 else n_classes + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2]
        w = x.shape[-1]
        ph = (self.multiple - h % self.multiple) % self.multiple
        pw = (self.multiple - w % self.multiple) % self.multiple
        if ph > 0 or pw > 0:
            # reflect where the image is big enough, as napari_unet.model.pad_to_multiple does
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, [0, pw, 0, ph], mode=mode)
        skips: list[torch.Tensor] = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)[:, :, :h, :w]
