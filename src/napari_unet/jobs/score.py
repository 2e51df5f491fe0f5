"""The Metrics dock's job: score (prediction, ground truth) array pairs into the rows of its table.

Pure computation on copies of the layers' data, safe in a worker thread: the whole-array checks (are these
instance ids?) and the object matching take longer than a GUI frame on large layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..labels import looks_like_instances
from ..metrics import COLUMNS, evaluate, mean_row
from ..training.config import DEFAULT_IOU_THRESHOLD
from .events import Scored

PAIR = "pair"  # key of a score row: the index of the (prediction, truth) pair it scores
MEAN = "mean"  # key of a mean row of the table (True); per-pair rows have none


@dataclass(frozen=True)
class ScoreRequest:
    """What to score: array pairs, their (prediction, truth) names, and the table's options."""

    data: Sequence[tuple[np.ndarray, np.ndarray]]
    names: Sequence[tuple[str, str]]
    instances: Sequence[bool]  # pairs known to hold instance ids (predicted with 'Split touching objects')
    multiclass: bool = False
    per_slice: bool = False
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    volume: bool = False  # stacks are volumes: objects matched in 3D, one row per volume


def score_pairs(request: ScoreRequest) -> Scored:
    """Rows for every pair (``PAIR`` says which), the table's mean rows, and the pairs scored as foreground:
    per-class scoring applies to class labels only, so instance ids are scored as foreground vs background."""
    rows: list[dict] = []
    as_foreground = []
    for k, ((p, t), flagged, (name, truth_name)) in enumerate(
        zip(request.data, request.instances, request.names, strict=True)
    ):
        multiclass = request.multiclass
        if multiclass and (flagged or looks_like_instances(p) or looks_like_instances(t)):
            multiclass = False
            as_foreground.append(k)
        for row in evaluate(
            p,
            t,
            names=[name],
            multiclass=multiclass,
            per_slice=request.per_slice,
            iou_threshold=request.iou_threshold,
            volume=request.volume,
        ):
            rows.append({**row, "ground truth": truth_name, PAIR: k})
    return Scored(rows, mean_rows(rows), tuple(as_foreground))


def mean_rows(rows: Sequence[dict]) -> list[dict]:
    """The table's last lines when it has more than one row: the mean of each class (several classes), then
    the mean of every row."""
    if len(rows) <= 1:
        return []
    means = []
    classes = sorted({r["class"] for r in rows})
    if len(classes) > 1:
        for k in classes:
            means.append({**mean_row([r for r in rows if r["class"] == k], f"mean, class {k}"), "class": k})
    means.append({**mean_row(rows), "ground truth": ""})
    return [{**m, MEAN: True} for m in means]


def csv_rows(table: Sequence[dict]) -> list[dict]:
    """The per-pair rows of a table, with exactly the CSV's ``COLUMNS`` (``metrics.write_table_csv`` adds
    the mean row); a row without them is an error, not a blank cell."""
    return [{k: row[k] for k in COLUMNS} for row in table if not row.get(MEAN)]


def score_job(request: ScoreRequest) -> Iterator[Scored]:
    """The scoring as a worker job: one ``Scored`` event."""
    yield score_pairs(request)
