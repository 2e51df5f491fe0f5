"""Pixel metrics (precision, recall, IoU, Dice) per image and class, and object-level matching.

Pixel definitions follow scikit-learn's binary precision/recall/jaccard/F1 on the foreground of each class,
with one deliberate difference: where prediction and truth are both empty every score is 1.0 (nothing to
find, nothing found), instead of scikit-learn's 0 with a warning.

Objects: a label image with ids > 1 is read as instances (one id per object); a binary one (0/1) is split
into its connected components, so a semantic prediction is scored by its connected pieces. Predicted and
true objects are matched one to one (Hungarian assignment on the IoU matrix, pairs below the IoU threshold
never match); precision = TP / predicted, recall = TP / true, F1 = 2 TP / (predicted + true), and panoptic
quality PQ = sum of matched IoUs / (TP + FP / 2 + FN / 2). With nothing predicted and nothing true, every
object score is 1.0, as for pixels. Stacks are matched plane by plane (the prediction is 2D per plane) and
the counts pooled.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputError
from .labels import as_objects
from .training.config import DEFAULT_IOU_THRESHOLD

PIXEL_SCORES = ("dice", "iou", "precision", "recall")
OBJECT_COLUMNS = (
    "objects_pred",
    "objects_true",
    "matched",
    "false_pos",
    "false_neg",
    "object_precision",
    "object_recall",
    "object_f1",
    "matched_iou",
    "pq",
)
COLUMNS = ("image", "class", *PIXEL_SCORES, *OBJECT_COLUMNS, "iou_threshold")
SCORES = PIXEL_SCORES + OBJECT_COLUMNS  # averaged by mean_row


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
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    volume: bool = False,
) -> list[dict]:
    """One row per image (and class) with the keys of ``COLUMNS``: pixel and object scores.

    Pixel scores compare foreground (> 0) vs background, so instance labels work as they are. Object
    scores match objects one to one at IoU >= ``iou_threshold``; a binary image counts its connected
    components as objects (see the module docstring). With ``multiclass`` every class id present in either
    image gets a row, its objects being the connected components of that class. With ``per_slice`` a stack
    gets a row per 2D plane, named ``name[z]``. With ``volume`` a (Z, Y, X) stack's objects are 3D: matched
    once in the whole volume, not plane by plane (with ``per_slice`` too, the rows of its planes follow).
    """
    iou_threshold = check_iou_threshold(iou_threshold)
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
            planes = [(name, p, t), *planes] if volume else planes
        for plane_name, pp, tt in planes:
            if multiclass:
                classes = sorted((set(np.unique(pp).tolist()) | set(np.unique(tt).tolist())) - {0})
                for c in classes or [1]:
                    pc, tc = pp == c, tt == c
                    rows.append(
                        {
                            "image": plane_name,
                            "class": int(c),
                            **binary_scores(pc, tc),
                            **object_scores(pc, tc, iou_threshold, volume and pc.ndim == p.ndim),
                            "iou_threshold": iou_threshold,
                        }
                    )
            else:
                rows.append(
                    {
                        "image": plane_name,
                        "class": 1,
                        **binary_scores(pp > 0, tt > 0),
                        **object_scores(pp, tt, iou_threshold, volume and pp.ndim == p.ndim),
                        "iou_threshold": iou_threshold,
                    }
                )
    return rows


def mean_row(rows: Sequence[dict], name: str = "mean") -> dict:
    """The mean of each score over rows (for the table's last line); counts are averaged too."""
    keys = [k for k in SCORES if all(k in r for r in rows)] if rows else list(SCORES)
    out = {"image": name, "class": ""}
    out.update({k: float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in keys})
    thresholds = {r.get("iou_threshold") for r in rows}
    if len(thresholds) == 1 and None not in thresholds:
        out["iou_threshold"] = thresholds.pop()
    return out


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table for the terminal, with a mean row when there is more than one row.

    Pixel scores, then objects predicted / true, object F1 and panoptic quality at the IoU threshold.
    """
    shown = list(rows) + ([mean_row(rows)] if len(rows) > 1 else [])
    width = max([len("image")] + [len(str(r["image"])) for r in shown])
    objects = all("object_f1" in r for r in shown)
    thr = next((r["iou_threshold"] for r in shown if "iou_threshold" in r), DEFAULT_IOU_THRESHOLD)
    head = f"{'image':<{width}}  class    dice     iou  precision  recall"
    if objects:
        head += f"  objects pred/true  F1@{thr:g}  PQ@{thr:g}"
    lines = [head]
    for r in shown:
        line = (
            f"{r['image']!s:<{width}}  {r['class']!s:>5}  {r['dice']:6.3f}  {r['iou']:6.3f}"
            f"  {r['precision']:9.3f}  {r['recall']:6.3f}"
        )
        if objects:
            counts = f"{r['objects_pred']:g}/{r['objects_true']:g}"
            line += f"  {counts:>17}  {r['object_f1']:{len(f'F1@{thr:g}')}.3f}  {r['pq']:{len(f'PQ@{thr:g}')}.3f}"
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- objects


def check_iou_threshold(iou_threshold: float) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float, np.number)):
        raise InputError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}.")
    if not 0 < iou_threshold <= 1:
        raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
    return float(iou_threshold)


def _compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object ids (> 0, sorted) of a flat label array and each pixel's index among them (-1: background).

    A lookup table indexed by id instead of ``np.unique(return_inverse=True)``, whose argsort of every pixel
    took 1.6 s of a 2048 x 2048 pair's 1.8 s (the Metrics widget rescores after each paint stroke)."""
    top = int(labels.max(initial=0))
    if labels.size and int(labels.min()) >= 0 and top <= max(1 << 24, labels.size):
        present = np.bincount(labels, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.full(top + 1, -1, np.int64)
        lut[ids] = np.arange(len(ids))
        return ids, lut[labels]
    ids, idx = np.unique(labels, return_inverse=True)  # huge or negative ids: sort instead
    idx = idx.ravel()
    if len(ids) and ids[0] == 0:
        return ids[1:], idx - 1
    return ids, idx


def iou_matrix(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every (true object, predicted object) pair, shape (n_true, n_pred), object ids in sorted order.

    Computed from the contingency table of paired ids over the pixels where both are objects (no loop over
    objects, no sort of all pixels); id 0 is background.
    """
    pred = np.asarray(pred).astype(np.int64, copy=False).ravel()
    truth = np.asarray(truth).astype(np.int64, copy=False).ravel()
    p_ids, p_idx = _compact_ids(pred)
    t_ids, t_idx = _compact_ids(truth)
    n_p, n_t = len(p_ids), len(t_ids)
    area_p = np.bincount(p_idx[p_idx >= 0], minlength=n_p)
    area_t = np.bincount(t_idx[t_idx >= 0], minlength=n_t)
    both = (p_idx >= 0) & (t_idx >= 0)
    codes = t_idx[both] * n_p + p_idx[both]
    inter = np.zeros((n_t, n_p), np.float64)
    if n_t * n_p <= 1 << 22:  # a dense count is cheapest while it stays small (<= 32 MB)
        inter[:] = np.bincount(codes, minlength=n_t * n_p).reshape(n_t, n_p)
    else:
        pairs, counts = np.unique(codes, return_counts=True)
        inter[pairs // n_p, pairs % n_p] = counts
    union = area_t[:, None] + area_p[None, :] - inter
    return inter / np.maximum(union, 1)


def match_objects(iou: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches (true index, predicted index) with IoU >= threshold: as many as possible, then
    the highest total IoU (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``)."""
    cand = iou >= iou_threshold
    rows, cols = np.nonzero(cand)
    if len(rows) == 0:
        return rows, cols
    # above 0.5 an object overlaps at most one other that well: the candidates are the matching already
    if len(np.unique(rows)) == len(rows) and len(np.unique(cols)) == len(cols):
        return rows, cols
    from scipy.optimize import linear_sum_assignment

    r_ids, c_ids = np.unique(rows), np.unique(cols)
    sub = iou[np.ix_(r_ids, c_ids)]
    big = min(len(r_ids), len(c_ids)) + 1  # one more match always outweighs any gain in IoU
    weight = np.where(sub >= iou_threshold, big + sub, 0.0)
    r, c = linear_sum_assignment(weight, maximize=True)
    keep = sub[r, c] >= iou_threshold
    return r_ids[r[keep]], c_ids[c[keep]]


def _object_counts(pred: np.ndarray, truth: np.ndarray, iou_threshold: float) -> tuple[int, int, int, float]:
    iou = iou_matrix(as_objects(pred), as_objects(truth))
    r, c = match_objects(iou, iou_threshold)
    return iou.shape[1], iou.shape[0], len(r), float(iou[r, c].sum())


def _object_row(n_pred: int, n_true: int, tp: int, iou_sum: float) -> dict:
    fp, fn = n_pred - tp, n_true - tp
    empty = n_pred + n_true == 0
    return {
        "objects_pred": int(n_pred),
        "objects_true": int(n_true),
        "matched": int(tp),
        "false_pos": int(fp),
        "false_neg": int(fn),
        "object_precision": _ratio(tp, n_pred, empty),
        "object_recall": _ratio(tp, n_true, empty),
        "object_f1": _ratio(2 * tp, n_pred + n_true, empty),
        "matched_iou": iou_sum / tp if tp else (1.0 if empty else 0.0),
        "pq": _ratio(iou_sum, tp + fp / 2 + fn / 2, empty) if not empty else 1.0,
    }


def object_scores(
    pred: np.ndarray, truth: np.ndarray, iou_threshold: float = DEFAULT_IOU_THRESHOLD, volume: bool = False
) -> dict:
    """Object counts and scores of a prediction against the truth (see the module docstring).

    Keys: ``objects_pred, objects_true, matched, false_pos, false_neg, object_precision, object_recall,
    object_f1, matched_iou, pq``. Stacks are matched plane by plane and the counts pooled; with ``volume`` the
    objects are 3D (a binary mask's: its 6-connected pieces) and matched once in the whole volume.
    """
    iou_threshold = check_iou_threshold(iou_threshold)
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"prediction shape {pred.shape} differs from ground truth {truth.shape}.")
    if pred.ndim < 2:
        raise InputError(f"object scores need 2D label images (or stacks of them), got shape {pred.shape}.")
    if volume:
        return _object_row(*_object_counts(pred, truth, iou_threshold))
    totals = np.zeros(4)
    for idx in np.ndindex(*pred.shape[:-2]):
        totals += _object_counts(pred[idx], truth[idx], iou_threshold)
    n_pred, n_true, tp, iou_sum = totals
    return _object_row(int(n_pred), int(n_true), int(tp), float(iou_sum))


def instance_scores(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> dict:
    """``object_scores`` under short names: ``n_pred, n_true, matched, fp, fn, precision, recall, f1,
    mean_matched_iou, pq`` (for scripts and benchmarks)."""
    s = object_scores(pred, truth, iou_threshold)
    return {
        "n_true": s["objects_true"],
        "n_pred": s["objects_pred"],
        "matched": s["matched"],
        "fp": s["false_pos"],
        "fn": s["false_neg"],
        "precision": s["object_precision"],
        "recall": s["object_recall"],
        "f1": s["object_f1"],
        "mean_matched_iou": s["matched_iou"] if s["matched"] else 0.0,
        "pq": s["pq"],
    }


def count_objects(labels: np.ndarray) -> int:
    """Objects in a label image as the object scores count them: instance ids, or the connected pieces of a
    binary mask; plane by plane for a stack."""
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise InputError(f"count_objects needs a 2D label image (or a stack of them), got shape {labels.shape}.")
    total = 0
    for idx in np.ndindex(*labels.shape[:-2]):
        ids = np.unique(as_objects(labels[idx]))
        total += int(np.count_nonzero(ids))
    return total


def write_table_csv(rows: Sequence[dict], path: str | Path) -> None:
    """The table as CSV, with the mean row the printed table shows when there is more than one row."""

    rows = list(rows) + ([mean_row(rows)] if len(rows) > 1 else [])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in COLUMNS if k in r})
