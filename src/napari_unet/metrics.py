"""Pixel metrics (precision, recall, IoU, Dice) per image and class, and object-level matching.

Definitions follow scikit-learn's binary precision/recall/jaccard/F1 on the foreground of each class,
with one deliberate difference: where prediction and truth are both empty every score is 1.0 (nothing to
find, nothing found), instead of scikit-learn's 0 with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError

COLUMNS = ("image", "class", "dice", "iou", "precision", "recall")


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def binary_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision and recall of two boolean masks of the same shape."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    empty = tp + fp + fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "iou": _ratio(tp, tp + fp + fn, empty),
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
    }


def evaluate(
    pred: np.ndarray | Sequence[np.ndarray],
    truth: np.ndarray | Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    multiclass: bool = False,
    per_slice: bool = False,
) -> list[dict]:
    """One row per image (and class) with keys ``image, class, dice, iou, precision, recall``.

    By default masks are compared as foreground (> 0) vs background, so instance labels work as they are.
    With ``multiclass`` every class id present in either image gets a row. With ``per_slice`` a stack gets
    a row per 2D plane, named ``name[z]``.
    """
    if isinstance(pred, np.ndarray) or not isinstance(pred, Sequence):
        pred, truth = [pred], [truth]
    if len(pred) != len(truth):
        raise InputError(
            f"{len(pred)} predictions but {len(truth)} ground-truth images: give one truth per prediction."
        )
    names = list(names) if names is not None else [f"image_{i}" for i in range(len(pred))]
    rows: list[dict] = []
    for name, p, t in zip(names, pred, truth, strict=True):
        p, t = np.asarray(p), np.asarray(t)
        if p.shape != t.shape:
            raise InputError(f"{name}: prediction shape {p.shape} differs from ground truth {t.shape}.")
        planes = [(name, p, t)]
        if per_slice and p.ndim > 2:
            planes = [(f"{name}[{','.join(map(str, i))}]", p[i], t[i]) for i in np.ndindex(*p.shape[:-2])]
        for plane_name, pp, tt in planes:
            if multiclass:
                classes = sorted((set(np.unique(pp).tolist()) | set(np.unique(tt).tolist())) - {0})
                for c in classes or [1]:
                    rows.append({"image": plane_name, "class": int(c), **binary_scores(pp == c, tt == c)})
            else:
                rows.append({"image": plane_name, "class": 1, **binary_scores(pp > 0, tt > 0)})
    return rows


def mean_row(rows: Sequence[dict], name: str = "mean") -> dict:
    """The mean of each score over rows (for the table's last line)."""
    if not rows:
        return {"image": name, "class": "", **{k: float("nan") for k in COLUMNS[2:]}}
    return {"image": name, "class": "", **{k: float(np.mean([r[k] for r in rows])) for k in COLUMNS[2:]}}


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table for the terminal, with a mean row when there is more than one row."""
    shown = list(rows) + ([mean_row(rows)] if len(rows) > 1 else [])
    width = max([len("image")] + [len(str(r["image"])) for r in shown])
    lines = [f"{'image':<{width}}  class    dice     iou  precision  recall"]
    for r in shown:
        lines.append(
            f"{r['image']!s:<{width}}  {r['class']!s:>5}  {r['dice']:6.3f}  {r['iou']:6.3f}"
            f"  {r['precision']:9.3f}  {r['recall']:6.3f}"
        )
    return "\n".join(lines)


def instance_scores(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level matching of two instance label images: counts, matches at IoU >= threshold, mean IoU.

    With a threshold >= 0.5 a true object can overlap at most one predicted object that well, so the
    greedy match is exact.
    """
    pred = np.asarray(pred).astype(np.int64, copy=False).ravel()
    truth = np.asarray(truth).astype(np.int64, copy=False).ravel()
    _, p_idx = np.unique(pred, return_inverse=True)
    _, t_idx = np.unique(truth, return_inverse=True)
    n_p, n_t = p_idx.max() + 1, t_idx.max() + 1
    inter = np.bincount(t_idx * n_p + p_idx, minlength=n_t * n_p).reshape(n_t, n_p)
    area_t, area_p = inter.sum(1), inter.sum(0)
    union = area_t[:, None] + area_p[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    has_bg_p, has_bg_t = 0 in pred, 0 in truth
    iou = iou[int(has_bg_t) :, int(has_bg_p) :]
    n_true, n_pred = iou.shape
    matched = iou >= iou_threshold
    tp = int(matched.any(axis=1).sum())
    matched_iou = iou.max(axis=1)[matched.any(axis=1)] if n_pred else np.array([])
    return {
        "n_true": int(n_true),
        "n_pred": int(n_pred),
        "matched": tp,
        "precision": tp / n_pred if n_pred else float(n_true == 0),
        "recall": tp / n_true if n_true else float(n_pred == 0),
        "mean_matched_iou": float(matched_iou.mean()) if tp else 0.0,
    }
