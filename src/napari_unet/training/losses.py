"""Masked losses: unannotated pixels (target -1) contribute nothing, so scribbles train correctly."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import PSEUDO

_EPS = 1.0


def _class_weights(target: torch.Tensor, valid: torch.Tensor, n_out: int) -> torch.Tensor:
    """Inverse-frequency weights over the annotated pixels of this batch, mean 1 per pixel."""
    counts = torch.bincount(target[valid], minlength=n_out).float()
    present = counts > 0
    w = torch.zeros(n_out, device=target.device)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, class_balance: bool = False, dice_weight: float = 1.0
) -> torch.Tensor:
    """BCE + soft Dice (one logit) or cross-entropy + soft Dice (several logits), on annotated pixels only.

    ``logits`` is (B, K, H, W) (or (B, K, Z, Y, X)); ``target`` is (B, H, W) (or (B, Z, Y, X)) int64 with -1 = ignore. With ``class_balance`` the
    pixel loss is weighted by inverse class frequency, which matters when strokes are mostly background.
    """
    logits = logits.float()
    valid = target >= 0
    n_valid = valid.sum()
    if n_valid == 0:
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    binary = logits.shape[1] == 1
    n_out = 2 if binary else logits.shape[1]
    safe_target = target.clamp(min=0)
    weights = _class_weights(safe_target, valid, n_out) if class_balance else torch.ones(n_out, device=logits.device)
    pixel_w = weights[safe_target] * valid

    if binary:
        z = logits[:, 0]
        t = safe_target.float()
        pixel = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        prob = torch.sigmoid(z)[:, None]
        onehot = t[:, None]
    else:
        pixel = F.cross_entropy(logits, safe_target, reduction="none")
        prob = torch.softmax(logits, dim=1)[:, 1:]
        onehot = F.one_hot(safe_target, n_out).movedim(-1, 1).float()[:, 1:]
    ce = (pixel * pixel_w).sum() / pixel_w.sum().clamp(min=1e-6)
    if dice_weight == 0:
        return ce
    m = valid[:, None].float()
    dims = (0, *range(2, logits.ndim))  # batch and every spatial axis: planes and volumes alike
    inter = (prob * onehot * m).sum(dim=dims)
    denom = (prob * m).sum(dim=dims) + (onehot * m).sum(dim=dims)
    dice = (2 * inter + _EPS) / (denom + _EPS)
    return ce + dice_weight * (1 - dice.mean())


def sparse_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    pseudo_weight: float = 0.5,
    class_balance: bool = True,
    dice_weight: float = 1.0,
    pseudo_offset: int = PSEUDO,
) -> torch.Tensor:
    """Loss for scribbles with dense pseudo-labels: strokes (``0..K``) + ``pseudo_weight`` x pseudo-labels
    (``pseudo_offset + k``), each a ``segmentation_loss`` over its own pixels, so a few hundred stroke
    pixels are not drowned by a whole image of pseudo-labels. Class balance applies to the strokes only:
    dense pseudo-labels already have the image's class frequencies."""
    strokes = torch.where(target < pseudo_offset, target, torch.full_like(target, -1))
    loss = segmentation_loss(logits, strokes, class_balance, dice_weight)
    if pseudo_weight > 0:
        pseudo = torch.where(target >= pseudo_offset, target - pseudo_offset, torch.full_like(target, -1))
        loss = loss + pseudo_weight * segmentation_loss(logits, pseudo, False, dice_weight)
    return loss
