"""The Metrics dock's table: one line per score row, mean rows in bold, as tall as its rows."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..metrics import PIXEL_SCORES

SHOWN = (*PIXEL_SCORES, "objects", "object_f1", "pq")  # the table's score columns (the CSV has them all)
HEADERS = ("image", "class", "Dice", "IoU", "prec.", "recall", "objects", "F1", "PQ")
HEADER_TIPS = {
    "Dice": "Pixel Dice of the foreground: 2 |P and T| / (|P| + |T|).",
    "IoU": "Pixel IoU (Jaccard) of the foreground: |P and T| / |P or T|.",
    "prec.": "Pixel precision: the fraction of predicted foreground pixels that are true foreground.",
    "recall": "Pixel recall: the fraction of true foreground pixels that were predicted.",
    "objects": "Objects predicted / true. A binary (0/1) layer counts its connected pieces as objects.",
    "F1": "Object F1: objects matched one to one at IoU >= the threshold; 2 TP / (predicted + true).",
    "PQ": "Panoptic quality: sum of the matched objects' IoU / (TP + FP/2 + FN/2).",
}
#: shown at first, so the object scores fit the dock's default width without scrolling sideways; the others
#: are a right click on the header away (and all are in the CSV)
DEFAULT_HIDDEN = ("IoU", "prec.", "recall")
HEADER_MENU_TIP = "Right-click the header to show or hide columns (IoU, precision, recall); the CSV has them all."
MAX_TABLE_HEIGHT = 600  # beyond this many pixels of rows, the table scrolls inside
CLASS_COLUMN = 1


def cell(row: dict, key: str) -> str:
    """The text of one score in the table: 3 decimals, counts as 'predicted / true', blank when undefined."""
    if key == "objects":
        return f"{row['objects_pred']:g} / {row['objects_true']:g}"
    return f"{row[key]:.3f}" if np.isfinite(row[key]) else ""


class ScoresTable(QTableWidget):
    """A read-only table of score rows; a row with a ``layer`` is a per-image row, the others are means."""

    def __init__(self) -> None:
        super().__init__(0, len(HEADERS))
        self.setHorizontalHeaderLabels(HEADERS)
        for j, name in enumerate(HEADERS):
            if name in HEADER_TIPS:
                self.horizontalHeaderItem(j).setToolTip(HEADER_TIPS[name])
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # the image name takes the width the scores leave (elided in the middle, whole in its tooltip), so the
        # scores fit the dock's default width without a sideways scroll bar
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header.setMinimumSectionSize(40)
        self.setColumnHidden(CLASS_COLUMN, True)  # the class column shows with 'Per class' only
        for name in DEFAULT_HIDDEN:
            self.setColumnHidden(HEADERS.index(name), True)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._header_menu)
        header.setToolTip(HEADER_MENU_TIP)
        self.setMinimumHeight(120)
        self.setToolTip(
            "Click a row to select its prediction layer. Scores compare foreground (> 0) pixels.\n" + HEADER_MENU_TIP
        )

    def _header_menu(self, pos) -> None:
        """Tick the score columns to show (the image and class columns are not offered)."""
        from qtpy.QtWidgets import QMenu

        menu = QMenu(self)
        for j, name in enumerate(HEADERS[2:], start=2):
            action = menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(not self.isColumnHidden(j))
            action.toggled.connect(lambda on, j=j: self.setColumnHidden(j, not on))
        menu.popup(self.horizontalHeader().mapToGlobal(pos))

    def fill(self, rows: list[dict], show_class: bool) -> None:
        """Show ``rows`` (mean rows in bold), with the class column when asked."""
        self.setColumnHidden(CLASS_COLUMN, not show_class)
        self.blockSignals(True)
        self.setRowCount(len(rows))
        bold = QFont(self.font())
        bold.setBold(True)
        for i, row in enumerate(rows):
            values = [row["image"], str(row["class"])]
            values += [cell(row, k) for k in SHOWN]
            for j, text in enumerate(values):
                item = QTableWidgetItem(str(text))
                if j == 0:
                    truth = row.get("ground truth")
                    item.setToolTip(f"{row['image']} against {truth}" if truth else str(row["image"]))
                if j >= 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if "layer" not in row:
                    item.setFont(bold)
                self.setItem(i, j, item)
        self.blockSignals(False)
        self.fit_height()

    def fit_height(self) -> None:
        """The table grows with its rows (the dock scrolls), so the mean rows are never hidden below it."""
        rows = sum(self.rowHeight(i) for i in range(self.rowCount()))
        header = self.horizontalHeader().sizeHint().height()
        scrollbar = self.horizontalScrollBar().sizeHint().height()
        needed = rows + header + scrollbar + 2 * self.frameWidth() + 4
        self.setMinimumHeight(int(min(max(needed, 120), MAX_TABLE_HEIGHT)))

    def selected_index(self) -> int | None:
        """The index of the selected row, or None."""
        selected = self.selectionModel().selectedRows()
        return selected[0].row() if selected else None
