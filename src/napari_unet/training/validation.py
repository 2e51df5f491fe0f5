"""Held-out validation: blocks of annotation set aside, their Dice, and the verdict on a finished run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import IGNORE
from .config import MIN_USEFUL_DICE, TRUSTED_STEPS
from .events import Done
from .patches import Sample


def trust_warning(done: Done) -> str | None:
    """A plain sentence when a model has had too little training to be trusted, with what to do; else None."""
    from ..meta import total_steps

    steps = max(done.steps, total_steps(done.model))  # a continued model counts the steps of its earlier runs
    if steps == 0:
        return "The model was not trained at all (0 steps): train again and let it run."
    rate = done.steps / max(done.elapsed, 1e-9)
    reasons = []
    if steps < TRUSTED_STEPS:
        earlier = f", {steps - done.steps} of them in earlier runs" if steps > done.steps else ""
        reasons.append(
            f"only {steps} training steps ran{earlier}, {done.steps} in {done.elapsed:.0f} s here ({rate:.1f} steps/s)"
        )
    if done.val_dice is not None and done.val_dice < MIN_USEFUL_DICE:
        reasons.append(f"its Dice on held-out annotations is only {done.val_dice:.2f}")
    if done.val_dice is not None and done.forest_val_dice is not None and done.val_dice < done.forest_val_dice:
        reasons.append(
            f"it is still behind the quick forest of the first preview on held-out strokes "
            f"({done.val_dice:.2f} vs {done.forest_val_dice:.2f})"
        )
    if not reasons:
        return None
    return (
        f"Not to be trusted yet: {'; '.join(reasons)}. Train longer (a higher time limit, or Train again to "
        "continue from this model), close programs that use the CPU, or annotate more."
    )


@dataclass
class ValBlock:
    window: np.ndarray  # (C, P, P) normalized image around the block
    inner: tuple[slice, slice]  # where the block lies inside the window
    target: np.ndarray  # held-out target of the block
    sample: int = 0  # which sample (plane) the block comes from
    where: tuple[slice, slice] = (slice(0), slice(0))  # where the block lies in that plane


def split_validation(
    samples: list[Sample], fraction: float, rng: np.random.Generator, patch: int
) -> tuple[list[Sample], list[ValBlock]]:
    """Hold out square blocks of annotation until ``fraction`` of the annotated pixels is set aside.

    Blocks (not random pixels) keep neighbouring, near-identical pixels out of training, so validation
    Dice says something about generalization. When too little is annotated, or holding out would remove
    a class from training, there is no validation.
    """
    total = sum(int(np.count_nonzero(s.target >= 0)) for s in samples)
    if fraction <= 0 or total < 2000:
        return samples, []
    block = max(16, patch // 4)
    candidates = []
    for i, s in enumerate(samples):
        h, w = s.target.shape
        for y in range(0, h - block + 1, block):
            for x in range(0, w - block + 1, block):
                n = int(np.count_nonzero(s.target[y : y + block, x : x + block] >= 0))
                if n:
                    candidates.append((i, y, x, n))
    order = rng.permutation(len(candidates))
    picked, held = [], 0
    for j in order:
        if held >= fraction * total or len(picked) >= 64:
            break
        picked.append(candidates[j])
        held += candidates[j][3]
    train_targets = [s.target.copy() for s in samples]
    for i, y, x, _ in picked:
        train_targets[i][y : y + block, x : x + block] = IGNORE
    before = set(np.unique(np.concatenate([s.target[s.target >= 0] for s in samples])).tolist())
    after = set(np.unique(np.concatenate([t[t >= 0] for t in train_targets])).tolist())
    if after != before or not picked:
        return samples, []
    blocks = []
    for i, y, x, _ in picked:
        img = samples[i].image
        h, w = samples[i].target.shape
        p = min(patch, h, w)
        wy = int(np.clip(y + block // 2 - p // 2, 0, h - p))
        wx = int(np.clip(x + block // 2 - p // 2, 0, w - p))
        if p < block:
            continue
        blocks.append(
            ValBlock(
                np.ascontiguousarray(img[:, wy : wy + p, wx : wx + p]),
                (slice(y - wy, y - wy + block), slice(x - wx, x - wx + block)),
                samples[i].target[y : y + block, x : x + block].copy(),
                i,
                (slice(y, y + block), slice(x, x + block)),
            )
        )
    # windows must share one size to batch; blocks from images smaller than the patch are skipped
    sizes = {b.window.shape for b in blocks}
    if len(sizes) > 1:
        common = max(sizes, key=lambda s: sum(b.window.shape == s for b in blocks))
        blocks = [b for b in blocks if b.window.shape == common]
    train = [Sample(s.image, t) for s, t in zip(samples, train_targets, strict=True)]
    return train, blocks


def blocks_dice(blocks: list[ValBlock], predictions: list[np.ndarray], n_classes: int, instances: bool) -> float | None:
    """Dice (mean over foreground classes) of class labels on the held-out blocks; None without blocks or
    where a prediction is missing (-1: e.g. a tile the forest did not reach). A boundary model is scored on
    its foreground."""
    if not blocks:
        return None
    n_scored = 1 if instances else n_classes
    inter = np.zeros(n_scored)
    denom = np.zeros(n_scored)
    for b, sub in zip(blocks, predictions, strict=True):
        valid = (b.target >= 0) & (sub >= 0)
        tgt = np.minimum(b.target, 1) if instances else b.target
        sub = np.minimum(sub, 1) if instances else sub
        for c in range(1, n_scored + 1):
            pc, tc = (sub == c) & valid, (tgt == c) & valid
            inter[c - 1] += np.count_nonzero(pc & tc)
            denom[c - 1] += np.count_nonzero(pc) + np.count_nonzero(tc)
    present = denom > 0
    return float(np.mean(2 * inter[present] / denom[present])) if present.any() else None


def predict_blocks(model, blocks: list[ValBlock], device, precision: str) -> list[np.ndarray]:
    """The model's class labels on each held-out block (batches of 8 windows, eval mode)."""
    import torch

    from ..runtime import autocast

    model.eval()
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(blocks), 8):
            chunk = blocks[start : start + 8]
            x = torch.from_numpy(np.stack([b.window for b in chunk])).to(device)
            with autocast(device, precision):
                logits = model(x.contiguous(memory_format=torch.channels_last)).float()
            pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            predictions += [pr[b.inner] for b, pr in zip(chunk, pred.cpu().numpy(), strict=True)]
    return predictions
