"""Metrics dock widget: pixel Dice / IoU / precision / recall and object counts / F1 / PQ of prediction layers
against ground-truth layers."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton, Select
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem

from ..errors import InputError
from ..metrics import DEFAULT_IOU_THRESHOLD, OBJECT_COLUMNS, PIXEL_SCORES, evaluate, mean_row
from . import _common as c
from ._label_images import convert_to_labels, label_images
from ._state import get_store
from ._worker import WorkerRunner

if TYPE_CHECKING:
    import napari.viewer

AUTO = "auto"
_PREDICTION_NAME = re.compile(r"prediction(\s*\[\d+\])?\s*$", re.IGNORECASE)
SCORES = PIXEL_SCORES + OBJECT_COLUMNS  # every score, in the CSV
SHOWN = (*PIXEL_SCORES, "objects", "object_f1", "pq")  # the table's score columns
HEADERS = ("image", "class", "Dice", "IoU", "precision", "recall", "objects", "F1", "PQ")
HEADER_TIPS = {
    "objects": "Objects predicted / true. A binary (0/1) layer counts its connected pieces as objects.",
    "F1": "Object F1: objects matched one to one at IoU >= the threshold; 2 TP / (predicted + true).",
    "PQ": "Panoptic quality: sum of the matched objects' IoU / (TP + FP/2 + FN/2).",
}
MAX_NAME_WIDTH = 200  # pixels for the image name column; longer names are elided in the middle (tooltip: whole)
MAX_TABLE_HEIGHT = 600  # beyond this many pixels of rows, the table scrolls inside


class MetricsWidget(Container):
    """A table of scores, one row per prediction (and slice, and class), recomputed when the layers change."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = c.unwrap_viewer(viewer)
        self.rows: list[dict] = []  # the table's rows, mean rows included, with 'layer' for per-image rows
        self._watched: list = []
        self._closing = False
        self._auto = True  # the selection follows the default until the user changes it
        self._setting = False

        self._predictions = Select(choices=self._prediction_choices, label="Predictions", allow_multiple=True)
        self._predictions.tooltip = (
            "Layers to score. Selected by default: the prediction layers napari-unet made and layers named "
            "'… prediction'; any other Labels layer can be selected too."
        )
        self._predictions.native.setMaximumHeight(80)
        self._predictions.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._truth = ComboBox(choices=self._truth_choices, label="Ground truth")
        self._truth.tooltip = "'paired by name' matches 'cells prediction' with 'cells ground truth' and the like"
        self._per_slice = CheckBox(value=False, text="One row per slice (stacks)")
        self._multiclass = CheckBox(value=False, text="Per class (multi-class labels)")
        self._iou_threshold = FloatSpinBox(
            value=DEFAULT_IOU_THRESHOLD, min=0.05, max=1.0, step=0.05, label="Object IoU ≥"
        )
        self._iou_threshold.tooltip = (
            "A predicted and a true object match (one to one) when their IoU is at least this; object F1 and PQ "
            "count the matches. All object columns (matched, false positives and negatives, precision, recall, "
            "mean matched IoU) are in the exported CSV."
        )
        self._hint = c.wrapping_label()
        self._table = QTableWidget(0, len(HEADERS))
        self._table.setHorizontalHeaderLabels(HEADERS)
        for j, name in enumerate(HEADERS):
            if name in HEADER_TIPS:
                self._table.horizontalHeaderItem(j).setToolTip(HEADER_TIPS[name])
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._table.verticalHeader().setVisible(False)
        header = self._table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # the image name: as wide as it needs up to a cap (set in _fill), the scores beside it, a scroll bar beyond
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self._table.setWordWrap(False)
        self._table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header.setMinimumSectionSize(40)
        self._table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._table.setColumnHidden(1, True)  # the class column shows with 'Per class' only
        self._table.setMinimumHeight(120)
        self._table.setToolTip("Click a row to select its prediction layer. Scores compare foreground (> 0) pixels.")
        self._export = PushButton(text="Export CSV…")
        self._recompute = PushButton(text="Recompute")
        self._convert = PushButton(
            text="Use as labels",
            tooltip="Turn the Image layers that hold masks or label ids (opened with File > Open) into Labels "
            "layers, as napari's Convert to Labels does: same data, name and place",
            visible=False,
        )

        self._body = c.scrolling_body(self)  # fits a small screen: scrolls instead of growing the window
        self._body.extend(
            [
                c.form(self._predictions, self._truth, self._iou_threshold),
                self._per_slice,
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

        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(c.guarded(self.update_in_background))
        self._runner = WorkerRunner()
        self._stale = False
        self._predictions.changed.connect(self._on_predictions_changed)
        for w in (self._truth, self._per_slice, self._multiclass, self._iou_threshold):
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
        c.tabify_later(self)  # docked beside another napari-unet dock: one tab each, not stacked
        self.update_table()

    # ------------------------------------------------------------------------------------------ choices and pairs

    def _prediction_choices(self, *_) -> list:
        return [(lay.name, lay) for lay in c.labels_layers(self._viewer) if c.role(lay) != c.PREVIEW]

    def _truth_choices(self, *_) -> list:
        return [("paired by name", AUTO)] + [(lay.name, lay) for lay in c.labels_layers(self._viewer, False)]

    def _on_layers_changed(self, *_) -> None:
        if not self._alive():
            return
        self._setting = True
        try:
            self._predictions.reset_choices()
        finally:
            self._setting = False
        self._truth.reset_choices()
        self._apply_default_selection()
        self.schedule()

    def _on_predictions_changed(self, *_) -> None:
        if not self._setting:  # the user chose: keep their choice (an empty choice means the default again)
            self._auto = not self._predictions.value
        self.schedule()

    def default_predictions(self) -> list:
        """The layers scored unless the user chooses: napari-unet's finished predictions and '… prediction' layers."""
        return [
            lay
            for lay in c.labels_layers(self._viewer)
            if (c.role(lay) == c.PREDICTION and lay.metadata.get("napari_unet_complete", True))
            or (c.role(lay) is None and _PREDICTION_NAME.search(lay.name))
        ]

    def _apply_default_selection(self) -> None:
        if not self._auto:
            return
        wanted = self.default_predictions()
        if [id(x) for x in self._predictions.value] != [id(x) for x in wanted]:
            self._setting = True
            try:
                self._predictions.value = wanted
            finally:
                self._setting = False

    def pairs(self) -> list[tuple]:
        """(prediction, ground truth) layer pairs to score."""
        return self._pairs_and_skipped()[0]

    def _pairs_and_skipped(self) -> tuple[list[tuple], list[tuple]]:
        """The pairs to score, and those left out because the two layers' shapes differ."""
        labels = c.labels_layers(self._viewer)
        predictions = list(self._predictions.value) or self.default_predictions()
        out, skipped = [], []
        for pred in predictions:
            truth = self._truth.value
            if truth == AUTO:
                truth = c.best_truth_layer(pred, labels)
            if truth is not None and truth is not pred:
                if tuple(np.shape(pred.data)) == tuple(np.shape(truth.data)):
                    out.append((pred, truth))
                else:
                    skipped.append((pred, truth))
        return out, skipped

    # ------------------------------------------------------------------------------------------ table

    def schedule(self, *_) -> None:
        """Recompute shortly (many changes in a row, e.g. while painting, cost one recomputation)."""
        if self._alive():
            self._timer.start()

    def _snapshot(self):
        """What scoring needs, taken on the GUI thread: the pairs, copies of their data and the options."""
        self._apply_default_selection()  # a prediction may have completed since the layers last changed
        pairs, skipped = self._pairs_and_skipped()
        self._watch([x for pair in pairs for x in pair])
        data = [(np.array(pred.data), np.array(truth.data)) for pred, truth in pairs]
        options = dict(
            multiclass=bool(self._multiclass.value),
            per_slice=bool(self._per_slice.value),
            iou_threshold=float(self._iou_threshold.value),
            # predicted with 'Split touching objects'; the ids are looked at in _score, off the GUI thread
            instances=[_flagged_instances(pred) or _flagged_instances(truth) for pred, truth in pairs],
            names=[(pred.name, truth.name) for pred, truth in pairs],
        )
        return pairs, skipped, data, options

    def update_in_background(self) -> None:
        """Score in a worker thread and fill the table when done: object matching on large layers takes
        longer than a GUI frame, and painting must stay smooth. A change during scoring scores again."""
        if not self._alive():
            return
        if self._runner.running:
            self._stale = True
            return
        self._stale = False
        pairs, skipped, data, options = self._snapshot()

        def job():
            yield _score(pairs, data, options)

        def show(result) -> None:
            if self._alive() and not self._stale:
                self._show(pairs, skipped, *result)

        def finished() -> None:
            if self._alive() and self._stale:
                self._timer.start()

        self._runner.start(job, on_yield=show, on_error=lambda e: c.report_error(c.describe(e)), on_finish=finished)

    def update_table(self) -> list[dict]:
        """Score every pair now and fill the table; returns the rows (per image, then mean rows)."""
        if not self._alive():
            return []
        pairs, skipped, data, options = self._snapshot()
        return self._show(pairs, skipped, *_score(pairs, data, options))

    def _show(self, pairs, skipped, rows: list[dict], as_foreground: list) -> list[dict]:
        if len(rows) > 1:
            classes = sorted({r["class"] for r in rows})
            if len(classes) > 1:
                for k in classes:
                    rows.append({**mean_row([r for r in rows if r["class"] == k], f"mean, class {k}"), "class": k})
            rows.append({**mean_row([r for r in rows if "layer" in r]), "ground truth": ""})
        self.rows = rows
        self._table.setColumnHidden(1, not self._multiclass.value)
        self._fill(rows)
        masks = label_images(self._viewer)
        self._convert.visible = bool(masks) and not pairs
        if not pairs and masks:
            names = ", ".join(f"'{html.escape(m.name)}'" for m in masks)
            self._hint.value = (
                f"<small>No prediction with a ground truth of the same shape. {names} "
                f"{'is an Image layer' if len(masks) == 1 else 'are Image layers'} holding labels (a mask opened "
                "with File > Open): click 'Use as labels' (or right-click > Convert to Labels) to score "
                f"{'it' if len(masks) == 1 else 'them'}.</small>"
            )
        elif not pairs:
            self._hint.value = (
                "<small>No prediction with a ground truth of the same shape: predict an image that has a "
                "ground-truth Labels layer, or choose the layers above.</small>"
            )
        else:
            against = ", ".join(f"'{html.escape(p.name)}' vs '{html.escape(t.name)}'" for p, t in pairs[:3])
            more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
            how = "default choice, paired by name" if self._auto else "chosen"
            self._hint.value = f"<small>Scored {against}{more} ({how}). Click a row to select its layer.</small>"
        if as_foreground:
            names = ", ".join(f"'{html.escape(p.name)}'" for p in as_foreground)
            self._hint.value = self._hint.value.replace("</small>", "") + (
                f" Per class applies to class labels only: {names} (or its ground truth) holds one id per object, "
                "so it is scored as foreground vs background (class 1).</small>"
            )
        if skipped:
            names = ", ".join(f"'{html.escape(p.name)}'" for p, _ in skipped)
            self._hint.value = self._hint.value.replace("</small>", "") + (
                f" Not scored (shape differs from the ground truth): {names}.</small>"
            )
        return rows

    def convert_label_images(self) -> list:
        """Turn every Image layer that holds labels into a Labels layer (same data, name and place)."""
        converted = [convert_to_labels(self._viewer, layer) for layer in label_images(self._viewer)]
        if converted:
            c.report_info(f"Converted to Labels: {', '.join(lay.name for lay in converted)}.")
        return converted

    def _fill(self, rows: list[dict]) -> None:
        table = self._table
        table.blockSignals(True)
        table.setRowCount(len(rows))
        bold = QFont(table.font())
        bold.setBold(True)
        for i, row in enumerate(rows):
            values = [row["image"], str(row["class"])]
            values += [_cell(row, k) for k in SHOWN]
            for j, text in enumerate(values):
                item = QTableWidgetItem(str(text))
                if j == 0 and row.get("ground truth"):
                    item.setToolTip(f"{row['image']} against {row['ground truth']}")
                if j >= 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if "layer" not in row:
                    item.setFont(bold)
                table.setItem(i, j, item)
        table.blockSignals(False)
        table.resizeColumnToContents(0)
        table.setColumnWidth(0, min(table.columnWidth(0), MAX_NAME_WIDTH))
        self._fit_table_height()

    def _fit_table_height(self) -> None:
        """The table grows with its rows (the dock scrolls), so the mean rows are never hidden below it."""
        table = self._table
        rows = sum(table.rowHeight(i) for i in range(table.rowCount()))
        header = table.horizontalHeader().sizeHint().height()
        scrollbar = table.horizontalScrollBar().sizeHint().height()
        needed = rows + header + scrollbar + 2 * table.frameWidth() + 4
        table.setMinimumHeight(int(min(max(needed, 120), MAX_TABLE_HEIGHT)))

    def _watch(self, layers: list) -> None:
        """Recompute when the data of a scored layer changes (painting, or a prediction filling in)."""
        for layer in self._watched:
            for name in ("data", "paint", "set_data"):
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self.schedule)
        self._watched = list({id(x): x for x in layers}.values())
        for layer in self._watched:
            for name in ("data", "paint", "set_data"):
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self.schedule)

    def _on_row_selected(self) -> None:
        selected = self._table.selectionModel().selectedRows()
        if not selected:
            return
        row = self.rows[selected[0].row()] if selected[0].row() < len(self.rows) else None
        layer = row.get("layer") if row else None
        if layer is not None and layer in self._viewer.layers:
            layer.visible = True
            self._viewer.layers.selection.active = layer

    def select_row(self, index: int) -> None:
        """Select a table row, as a click does."""
        self._table.selectRow(index)

    # ------------------------------------------------------------------------------------------ export

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the table (mean rows included) as CSV."""
        if not self.rows:
            raise InputError("The table is empty: predict an image that has a ground-truth layer first.")
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Export scores", "scores.csv", "CSV (*.csv)")
            if not path:
                return None
        from ..io import atomic_path

        path = Path(path)
        # the save dialog has asked about replacing; written beside it and renamed, so a crash leaves no half file
        with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "ground_truth", "class", *SCORES, "iou_threshold"])
            for row in self.rows:
                writer.writerow(
                    [row["image"], row.get("ground truth", ""), row["class"]]
                    + [_csv_value(row[k]) for k in SCORES]
                    + [row.get("iou_threshold", "")]
                )
        c.report_info(f"Wrote {len(self.rows)} rows to {html.escape(str(path))}.")
        return path

    # ------------------------------------------------------------------------------------------ lifetime

    def _alive(self) -> bool:
        return not self._closing and c.is_alive(self.native)

    def _on_destroyed(self, *_) -> None:
        self._closing = True
        self._runner.abandon()


def _score(pairs, data, options) -> tuple[list[dict], list]:
    """Rows for every (prediction, truth) pair, and the predictions scored as foreground (instance labels):
    pure computation on copies, safe in a worker thread."""
    rows: list[dict] = []
    as_foreground = []  # instance layers: per-class scoring applies to class labels only
    from ..labels import looks_like_instances

    for (pred, _), (p, t), flagged, (name, truth_name) in zip(
        pairs, data, options["instances"], options["names"], strict=True
    ):
        instances = flagged or looks_like_instances(p) or looks_like_instances(t)
        multiclass = options["multiclass"]
        if multiclass and instances:
            multiclass = False
            as_foreground.append(pred)
        for row in evaluate(
            p,
            t,
            names=[name],
            multiclass=multiclass,
            per_slice=options["per_slice"],
            iou_threshold=options["iou_threshold"],
        ):
            rows.append({**row, "ground truth": truth_name, "layer": pred})
    return rows, as_foreground


def _flagged_instances(layer) -> bool:
    """A layer predicted with 'Split touching objects' (instance ids by construction)."""
    return bool(layer.metadata.get("napari_unet_instances"))


def _cell(row: dict, key: str) -> str:
    if key == "objects":
        return f"{row['objects_pred']:g} / {row['objects_true']:g}"
    return f"{row[key]:.3f}" if np.isfinite(row[key]) else ""


def _csv_value(value) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)
