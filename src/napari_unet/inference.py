"""The network in its fastest inference form: batch norm folded, ReLU fused, weights in the compute dtype.

Also the warm-up that pays torch's one-off costs (imports, oneDNN kernels) ahead of the first Train click.
"""

from __future__ import annotations

import functools
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from .runtime import autocast, cpu_has_fast_bf16, pick_device, pick_precision, prepare_module


@functools.cache
def _onednn_conv_relu():
    """oneDNN's fused convolution + ReLU (what torch.compile emits on CPUs), or None where it is missing or broken."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        for dtype in (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,):
            x = torch.ones(1, 2, 5, 5, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = torch.full((3, 2, 3, 3), -1.0, dtype=dtype).contiguous(memory_format=torch.channels_last)
            b = torch.full((3,), 2.0, dtype=dtype)
            got = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
            if not torch.equal(got.float(), F.relu(F.conv2d(x.float(), w.float(), b.float(), padding=1))):
                return None
    except Exception:  # an op whose signature changed: use the plain path
        return None
    return op


class _ConvReLU(nn.Module):
    """A 3x3 convolution with its batch normalization folded in, then ReLU, in one kernel where possible."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        def f32(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to("cpu", torch.float32)

        weight, bias = fuse_conv_bn_weights(
            f32(conv.weight), f32(conv.bias), f32(bn.running_mean), f32(bn.running_var), bn.eps,
            f32(bn.weight), f32(bn.bias),
        )  # fmt: skip
        self.weight = weight.detach().to(device, dtype).contiguous(memory_format=torch.channels_last)
        self.bias = bias.detach().to(device, dtype)
        self.padding = list(conv.padding)
        self.op = _onednn_conv_relu() if device.type == "cpu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op is not None:
            return self.op(x, self.weight, self.bias, self.padding, [1, 1], [1, 1], 1, "relu", [], "")
        return F.relu_(F.conv2d(x, self.weight, self.bias, padding=self.padding))


def _fold_two_conv(block: nn.Sequential, device: torch.device, dtype: torch.dtype) -> nn.Sequential:
    layers = [m for m in block if not isinstance(m, (nn.ReLU, nn.Dropout2d, nn.Dropout))]
    kinds = [type(m) for m in layers]
    if kinds != [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d]:
        raise TypeError(f"unexpected block {kinds}")
    return nn.Sequential(_ConvReLU(layers[0], layers[1], device, dtype), _ConvReLU(layers[2], layers[3], device, dtype))


class FusedUNet(nn.Module):
    """An inference-only copy of a ``UNet``: batch norms folded into the convolutions, ReLU fused into them,
    weights stored once in the compute dtype (bf16 or fp32) and channels_last.

    Same outputs as ``model.eval()`` (up to rounding) at about 1.5x the speed of the eager bf16 network on a
    CPU: batch norm and ReLU are memory-bound passes that cost as much as the convolutions at 16 filters.
    The weights are a snapshot: build a new one after training further.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:
        super().__init__()
        from .model import Down, TwoConv, UNet, UpCat

        if type(model).forward is not UNet.forward or not isinstance(model.inc, TwoConv):
            raise TypeError("not a plain UNet")
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.depth = model.depth
        self.out_channels = model.out_channels
        self.inc = _fold_two_conv(model.inc, device, self.dtype)
        downs = []
        for down in model.downs:
            if not (isinstance(down, Down) and isinstance(down[0], nn.MaxPool2d)):
                raise TypeError("unexpected down block")
            downs.append(_fold_two_conv(down[1], device, self.dtype))
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList()
        self.up_weights: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for up in model.ups:
            if not isinstance(up, UpCat):
                raise TypeError("unexpected up block")
            self.ups.append(_fold_two_conv(up.conv, device, self.dtype))
            bias = None if up.up.bias is None else up.up.bias.detach().to(device, self.dtype)
            self.up_weights.append((up.up.weight.detach().to(device, self.dtype), bias))
        head = model.head
        self.head_weight = head.weight.detach().to(device, self.dtype).contiguous(memory_format=torch.channels_last)
        self.head_bias = None if head.bias is None else head.bias.detach().to(device, self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits of a (B, C, H, W) batch of any size."""
        from .model import pad_to_multiple

        h, w = x.shape[-2:]
        x = pad_to_multiple(x.float(), 2**self.depth).to(self.dtype).contiguous(memory_format=torch.channels_last)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for conv, (weight, bias) in zip(self.ups, self.up_weights, strict=True):
            y = conv(torch.cat([F.conv_transpose2d(y, weight, bias, stride=2), skips.pop()], dim=1))
        return F.conv2d(y, self.head_weight, self.head_bias)[..., :h, :w].float()


class _AutocastNet(nn.Module):
    """Fallback for networks FusedUNet does not know: the model itself, channels_last, under autocast."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:
        super().__init__()
        self.net = prepare_module(model.eval(), device)
        self.device, self.precision = device, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.net(x.contiguous(memory_format=torch.channels_last)).float()


def inference_network(
    model: nn.Module, device: str | torch.device = "auto", precision: str = "auto", fuse: bool = True
) -> nn.Module:
    """The fastest inference form of ``model`` on ``device``: a ``FusedUNet`` where the model is a plain UNet,
    else the model under autocast. Call it under ``torch.inference_mode()``; it returns float32 logits."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    prec = pick_precision(dev, precision)
    if not fuse:
        return _AutocastNet(model, dev, prec).eval()
    # one fused copy per model, rebuilt when a weight changes (in-place updates bump a tensor's _version)
    key = (str(dev), prec, tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers())))
    cached = _FUSED.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        net = FusedUNet(model, dev, prec).eval()
    except (TypeError, AttributeError):
        return _AutocastNet(model, dev, prec).eval()
    _FUSED[model] = (key, net)
    return net


_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def warm_up(
    in_channels: int = 1,
    n_classes: int = 1,
    filters: int = 16,
    depth: int = 4,
    patch_size: int = 128,
    batch_size: int = 8,
    preview_size: int = 512,
    device: str | torch.device = "auto",
    precision: str = "auto",
    should_stop=lambda: False,
) -> float:
    """Pay the one-off costs of the first training step and preview ahead of time; returns the seconds spent.

    ``should_stop`` is checked between the phases (each well under a second), so an application that quits
    right after starting it waits for one phase at most.

    The first ``torch.optim`` optimizer imports ``torch._dynamo`` (1-2 s), and oneDNN builds its kernels for
    each new shape on first use (another 1-2 s for a bf16 forward + backward). Both are per process and
    shared by every later model of the same shapes, so a GUI can call this in a background thread while
    the user paints, and "Train" then shows its first preview seconds sooner. Safe to call more than once.
    """
    import time

    from .model import UNet

    start = time.perf_counter()
    dev = device if isinstance(device, torch.device) else pick_device(device)
    prec = pick_precision(dev, precision)
    model = prepare_module(UNet(in_channels, n_classes, filters, depth), dev)
    if should_stop():
        return time.perf_counter() - start
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.zeros(batch_size, in_channels, patch_size, patch_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    with autocast(dev, prec):
        loss = model(x).float().mean()
    if should_stop():
        return time.perf_counter() - start
    loss.backward()
    optimizer.step()
    if should_stop():
        return time.perf_counter() - start
    with torch.inference_mode():
        inference_network(model.eval(), dev, prec)(torch.zeros(1, in_channels, preview_size, preview_size, device=dev))
    return time.perf_counter() - start
