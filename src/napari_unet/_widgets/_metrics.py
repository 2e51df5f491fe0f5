"""Metrics dock widget: pixel Dice / IoU / precision / recall and object counts / F1 / PQ of prediction layers
against ground-truth layers.

The dock pairs layers (``_metrics_pairs``), scores copies of their data with ``jobs.score`` in a worker thread
and shows the rows in its table (``_metrics_table``); the CSV export is the CLI's (``metrics.write_table_csv``).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox, PushButton
from qtpy.QtCore import QTimer

from .. import layer_roles as roles
from ..errors import InputError
from ..jobs.events import Scored
from ..jobs.score import PAIR, ScoreRequest, csv_rows, score_job, score_pairs
from ..training.config import DEFAULT_IOU_THRESHOLD
from . import _common as c
from ._label_images import convert_to_labels, label_images
from ._metrics_pairs import DataWatcher, PairChoice, pairing_hint
from ._metrics_table import ScoresTable
from ._state import get_store
from ._worker import WorkerRunner

if TYPE_CHECKING:
    import napari.viewer

IOU_TIP = (
    "A predicted and a true object match (one to one) when their IoU is at least this; object F1 and PQ "
    "count the matches. All object columns (matched, false positives and negatives, precision, recall, "
    "mean matched IoU) are in the exported CSV."
)
CONVERT_TIP = (
    "Turn the Image layers that hold masks or label ids (opened with File > Open) into Labels "
    "layers, as napari's Convert to Labels does: same data, name and place"
)


class MetricsWidget(Container):
    """A table of scores, one row per prediction (and slice, and class), recomputed when the layers change."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = c.unwrap_viewer(viewer)
        self.rows: list[dict] = []  # the table's rows, mean rows included, with 'layer' for per-image rows
        self._closing = False
        self._choice = PairChoice(self._viewer)
        self._predictions, self._truth = self._choice.predictions, self._choice.truth
        self._per_slice = CheckBox(value=False, text="One row per slice (stacks)")
        self._multiclass = CheckBox(value=False, text="Per class (multi-class labels)")
        self._volume = CheckBox(
            value=False, text="Volumes (Z): 3D objects", tooltip="Match objects in 3D, one row per Z-stack"
        )
        self._iou_threshold = FloatSpinBox(
            value=DEFAULT_IOU_THRESHOLD, min=0.05, max=1.0, step=0.05, label="Object IoU ≥", tooltip=IOU_TIP
        )
        self._hint = c.wrapping_label()
        self._table = ScoresTable()
        self._export = PushButton(text="Export CSV…")
        self._recompute = PushButton(text="Recompute")
        self._convert = PushButton(text="Use as labels", tooltip=CONVERT_TIP, visible=False)
        self._lay_out()
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._runner = WorkerRunner()
        self._stale = False
        self._watcher = DataWatcher(self.schedule)
        self._connect()
        c.tabify_later(self)  # docked beside another napari-unet dock: one tab each, not stacked
        self.update_table()

    def _lay_out(self) -> None:
        self._body = c.scrolling_body(self)  # fits a small screen: scrolls instead of growing the window
        self._body.extend(
            [
                c.form(self._predictions, self._truth, self._iou_threshold),
                self._per_slice,
                self._volume,
                self._multiclass,
                c.wrap_qt(self._table),
                self._hint,
                self._convert,
                Container(widgets=[self._recompute, self._export], layout="horizontal", labels=False),
            ]
        )
        for sub in self._body:
            if isinstance(sub, Container):
                sub.margins = (0, 0, 0, 0)

    def _connect(self) -> None:
        self._timer.timeout.connect(c.guarded(self.update_in_background))
        self._predictions.changed.connect(self.schedule)
        for w in (self._truth, self._per_slice, self._volume, self._multiclass, self._iou_threshold):
            w.changed.connect(self.schedule)
        self._recompute.changed.connect(c.guarded(self.update_table))
        self._export.changed.connect(c.guarded(lambda: self.export_csv()))
        self._convert.changed.connect(c.guarded(lambda: self.convert_label_images()))
        self._table.itemSelectionChanged.connect(self._on_row_selected)
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.reordered.connect(self._on_layers_changed)
        get_store(self._viewer).predicted.connect(self.schedule)
        self.native.destroyed.connect(self._on_destroyed)

    # ------------------------------------------------------------------------------------------ choices and pairs

    def _on_layers_changed(self, *_) -> None:
        if not self._alive():
            return
        self._choice.reset_choices()
        self.schedule()

    def default_predictions(self) -> list:
        """The layers scored unless the user chooses: napari-unet's finished predictions and '… prediction' layers."""
        return self._choice.default_predictions()

    def pairs(self) -> list[tuple]:
        """(prediction, ground truth) layer pairs to score."""
        return self._choice.pairs_and_skipped()[0]

    # ------------------------------------------------------------------------------------------ table

    def schedule(self, *_) -> None:
        """Recompute shortly (many changes in a row, e.g. while painting, cost one recomputation)."""
        if self._alive():
            self._timer.start()

    def _snapshot(self) -> tuple[list, list, ScoreRequest]:
        """What scoring needs, taken on the GUI thread: the pairs, copies of their data and the options."""
        self._choice.apply_default_selection()  # a prediction may have completed since the layers last changed
        pairs, skipped = self._choice.pairs_and_skipped()
        self._watcher.watch([x for pair in pairs for x in pair])
        request = ScoreRequest(
            data=[(np.array(pred.data), np.array(truth.data)) for pred, truth in pairs],
            names=[(pred.name, truth.name) for pred, truth in pairs],
            # predicted with 'Split touching objects'; the ids are looked at in the job, off the GUI thread
            instances=[roles.predicted_instances(pred) or roles.predicted_instances(truth) for pred, truth in pairs],
            multiclass=bool(self._multiclass.value),
            per_slice=bool(self._per_slice.value),
            iou_threshold=float(self._iou_threshold.value),
            volume=bool(self._volume.value),
        )
        return pairs, skipped, request

    def update_in_background(self) -> None:
        """Score in a worker thread and fill the table when done: object matching on large layers takes
        longer than a GUI frame, and painting must stay smooth. A change during scoring scores again."""
        if not self._alive():
            return
        if self._runner.running:
            self._stale = True
            return
        self._stale = False
        pairs, skipped, request = self._snapshot()

        def show(scored: Scored) -> None:
            if self._alive() and not self._stale:
                self._show(pairs, skipped, scored)

        def finished() -> None:
            if self._alive() and self._stale:
                self._timer.start()

        self._runner.start(score_job, request, on_yield=show, on_error=self._on_score_error, on_finish=finished)

    def _on_score_error(self, error: BaseException) -> None:
        c.report_error(c.describe(error))

    def update_table(self) -> list[dict]:
        """Score every pair now and fill the table; returns the rows (per image, then mean rows)."""
        if not self._alive():
            return []
        pairs, skipped, request = self._snapshot()
        return self._show(pairs, skipped, score_pairs(request))

    def _show(self, pairs: list, skipped: list, scored: Scored) -> list[dict]:
        """Fill the table with the scores of ``pairs``, and say in the hint what was scored."""
        rows = [{**_without(row, PAIR), "layer": pairs[row[PAIR]][0]} for row in scored.rows]
        self.rows = rows + list(scored.means)
        self._table.fill(self.rows, show_class=bool(self._multiclass.value))
        masks = label_images(self._viewer)
        self._convert.visible = bool(masks) and not pairs
        as_foreground = [pairs[k][0] for k in scored.as_foreground]
        self._hint.value = pairing_hint(pairs, skipped, masks, as_foreground, self._choice.auto)
        return self.rows

    def convert_label_images(self) -> list:
        """Turn every Image layer that holds labels into a Labels layer (same data, name and place)."""
        converted = [convert_to_labels(self._viewer, layer) for layer in label_images(self._viewer)]
        if converted:
            c.report_info(f"Converted to Labels: {', '.join(lay.name for lay in converted)}.")
        return converted

    def _on_row_selected(self) -> None:
        index = self._table.selected_index()
        row = self.rows[index] if index is not None and index < len(self.rows) else None
        layer = row.get("layer") if row else None
        if layer is not None and layer in self._viewer.layers:
            layer.visible = True
            self._viewer.layers.selection.active = layer

    def select_row(self, index: int) -> None:
        """Select a table row, as a click does."""
        self._table.selectRow(index)

    # ------------------------------------------------------------------------------------------ export

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the table as the CLI does (``metrics.write_table_csv``): a row per image, then their mean."""
        if not self.rows:
            raise InputError("The table is empty: predict an image that has a ground-truth layer first.")
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Export scores", "scores.csv", "CSV (*.csv)")
            if not path:
                return None
        from ..io import atomic_path
        from ..metrics import write_table_csv

        path = Path(path)
        # the save dialog has asked about replacing; written beside it and renamed, so a crash leaves no half file
        with atomic_path(path, overwrite=True) as tmp:
            rows = csv_rows(self.rows)
            write_table_csv(rows, tmp)
        n = len(rows) + (len(rows) > 1)  # the mean row
        c.report_info(f"Wrote {n} rows to {html.escape(str(path))}.")
        return path

    # ------------------------------------------------------------------------------------------ lifetime

    def _alive(self) -> bool:
        return not self._closing and c.is_alive(self.native)

    def _on_destroyed(self, *_) -> None:
        self._closing = True
        self._runner.abandon()


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}
