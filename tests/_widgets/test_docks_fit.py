"""The three docks on a 1000 px screen: tabs, each scrolling; the Metrics table shows every row."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets import MetricsWidget, PredictWidget, TrainWidget
from napari_unet.layer_roles import PREDICTION, ROLE_KEY


def test_three_docks_fit_a_1000px_screen(qtbot, sample_viewer):
    viewer = sample_viewer
    widgets = [TrainWidget(viewer), PredictWidget(viewer), MetricsWidget(viewer)]
    for name, widget in zip(("Train", "Predict", "Metrics"), widgets, strict=True):
        viewer.window.add_dock_widget(widget, name=name)
    widgets[0]._collapsible.expand(animate=False)  # Advanced settings open: the tallest case
    qtbot.wait(200)
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() < 1000  # was: 1,593 px (1,913 with Advanced settings)
    from qtpy.QtWidgets import QDockWidget, QTabBar

    docks = [d for d in window.findChildren(QDockWidget) if d.windowTitle() in ("Train", "Predict", "Metrics")]
    assert len(docks) == 3
    assert len(window.tabifiedDockWidgets(docks[0])) == 2  # one tab each, not three stacked docks
    assert any(bar.count() >= 3 for bar in window.findChildren(QTabBar))


def test_metrics_table_grows_with_its_rows(make_napari_viewer):
    viewer = make_napari_viewer()
    truth = np.zeros((32, 32), np.uint8)
    truth[8:24, 8:24] = 1
    for k in range(3):
        viewer.add_labels(truth, name=f"img{k} ground truth")
        viewer.add_labels(np.roll(truth, k, 0), name=f"img{k} prediction", metadata={ROLE_KEY: PREDICTION})
    widget = MetricsWidget(viewer)
    rows = widget.update_table()
    assert len(rows) == 4 and rows[-1]["image"] == "mean"
    table = widget._table
    needed = sum(table.rowHeight(i) for i in range(4)) + table.horizontalHeader().sizeHint().height()
    assert table.minimumHeight() >= needed  # the mean row is not hidden under the buttons


def test_object_scores_fit_the_default_metrics_dock_width(qtbot, make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    truth = np.zeros((32, 32), np.uint16)
    truth[4:12, 4:12], truth[16:28, 16:28] = 1, 2
    name = "Fluo_Hela_02_img_with_a_long_name"
    viewer.add_labels(truth, name=f"{name} ground truth")
    viewer.add_labels(np.roll(truth, 1, 0), name=f"{name} prediction", metadata={ROLE_KEY: PREDICTION})
    widget = MetricsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Metrics")
    widget.update_table()
    qtbot.wait(100)
    table = widget._table
    shown = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount()) if not table.isColumnHidden(j)]
    assert {"Dice", "F1", "PQ", "objects"} <= set(shown)
    widths = sum(table.columnWidth(j) for j in range(table.columnCount()) if not table.isColumnHidden(j))
    assert widths <= table.viewport().width()  # was: 456 px of columns in 362 px
    assert not table.horizontalScrollBar().isVisible()
