"""Dense supervision for scribbles: the forest's pseudo-labels first, the U-Net's own later (self-training).

Strokes cover a fraction of a percent of the pixels. Before the first step a random forest on pixel
features labels every tile it can reach in its share of the budget (``pseudo.PseudoLabeler``); its labels,
weaker than a stroke, are merged around the strokes. Once the U-Net beats the forest on the held-out
strokes (``unet_beats_forest``, the one rule for "the U-Net is better now"), its own confident pixels,
snapped to edges, replace the forest's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .config import SELF_TRAIN_MIN_STEPS, TrainConfig
from .events import Preparing

if TYPE_CHECKING:
    from .patches import Sample


def uses_pseudo_labels(cfg: TrainConfig, mode: str) -> bool:
    """Pseudo-labels train scribbles ('auto' = 'forest' for scribbles, 'none' for complete masks)."""
    pseudo = cfg.pseudo_labels if cfg.pseudo_labels != "auto" else ("forest" if mode == "sparse" else "none")
    return pseudo == "forest" and mode == "sparse" and cfg.pseudo_weight > 0


def unet_beats_forest(
    steps: int, val_dice: float | None, forest_val_dice: float | None, min_steps: int = SELF_TRAIN_MIN_STEPS
) -> bool:
    """Whether the U-Net is now better than the forest: at least as good on the held-out strokes (after half of
    ``min_steps``, so a validation score means something), or, without held-out strokes, after ``min_steps``.

    Self-training waits for it: a U-Net still behind (a short budget on a slow CPU: 45 steps in 30 s) would
    learn its own mistakes (Dice 0.35 after 30 s on a 2048 x 2048 plane with scribbles, AVX2 fp32; 0.73 with
    this wait). The live preview shows the forest's labels until then too.
    """
    if steps < min_steps // 2:
        return False
    if val_dice is None or forest_val_dice is None:
        return steps >= min_steps
    return val_dice >= forest_val_dice


def forest_pseudo_labels(
    samples: list[Sample],
    held_out: list[np.ndarray],
    n_classes: int,
    cfg: TrainConfig,
    cache,
    should_stop: Callable[[], bool],
    deadline: float = math.inf,
) -> Iterator[Preparing]:
    """Pseudo-labels for the scribbled planes, tile by tile until done, the deadline or ``should_stop``;
    yields progress and returns (the labeler, the samples with pseudo-labels merged). Unlabelled tiles keep
    their strokes only; held-out pixels never come back as pseudo-labels."""
    from .patches import Sample
    from .pseudo import PseudoLabeler, merge

    labeler = PseudoLabeler(
        [s.image for s in samples],
        [s.target for s in samples],
        n_classes,
        cfg.seed,
        cfg.pseudo_confidence,
        cache,
        should_stop=should_stop,
    )
    started = time.perf_counter()
    for _ in labeler.run(deadline):
        yield Preparing(labeler.tiles_done, labeler.tiles_total, time.perf_counter() - started)
    merged = [
        Sample(s.image, merge(s.target, dense, held))
        for s, dense, held in zip(samples, labeler.dense, held_out, strict=True)
    ]
    return labeler, merged


def self_trained_samples(
    model,
    dense_labels: list[np.ndarray],
    stroke_samples: list[Sample],
    held_out: list[np.ndarray],
    cfg: TrainConfig,
    device,
    precision: str,
    should_stop: Callable[[], bool],
    deadline: float = math.inf,
) -> list[Sample]:
    """New pseudo-labels from the U-Net's own confident pixels, snapped to edges, on the tiles that have
    pseudo-labels, until the deadline or ``should_stop`` (tiles not reached keep the forest's)."""
    from ..prediction import predict_proba_plane
    from .patches import Sample
    from .pseudo import merge, outer_box, snap_to_edges, tile_boxes

    merged = []
    for strokes, forest, held in zip(stroke_samples, dense_labels, held_out, strict=True):
        dense = forest.copy()
        image = strokes.image
        h, w = dense.shape
        for y0, y1, x0, x1 in tile_boxes(h, w):
            if should_stop() or time.perf_counter() > deadline or not np.any(dense[y0:y1, x0:x1] >= 0):
                continue
            oy0, oy1, ox0, ox1 = outer_box((y0, y1, x0, x1), h, w)
            crop = np.ascontiguousarray(image[:, oy0:oy1, ox0:ox1])
            probs = predict_proba_plane(
                model, crop, tile_size=max(crop.shape[1:]) + 16, overlap=0, device=device, precision=precision
            )
            if probs.shape[0] == 1:
                probs = np.concatenate([1 - probs, probs])
            inner = (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0))
            dense[y0:y1, x0:x1] = snap_to_edges(
                image[:, y0:y1, x0:x1], probs[(slice(None), *inner)], strokes.target[y0:y1, x0:x1],
                cfg.pseudo_confidence,
            )  # fmt: skip
        merged.append(Sample(image, merge(strokes.target, dense, held)))
    return merged


def pseudo_box(dense: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray | None:
    """The pseudo-labels (class labels, 0 where there are none) of a box of one plane, or None where the box
    has none: the forest's answer, shown as the first preview while the U-Net starts learning."""
    box = dense[rows[0] : rows[1], cols[0] : cols[1]]
    if not np.any(box >= 0):
        return None
    return np.clip(box, 0, None).astype(np.uint8)
