"""Metrics widget: pairing by name, table rows and mean, per slice and class, CSV, row selection, updates."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_unet._widgets._metrics import MetricsWidget
from napari_unet.layer_roles import PREDICTION, ROLE_KEY
from napari_unet.metrics import evaluate


@pytest.fixture
def viewer(make_napari_viewer):
    rng = np.random.default_rng(0)
    v = make_napari_viewer()
    truth_a = np.zeros((2, 32, 32), np.uint8)
    truth_a[:, 8:24, 8:24] = 1
    pred_a = truth_a.copy()
    pred_a[1, 8:16] = 0
    truth_b = (rng.random((40, 40)) > 0.5).astype(np.uint8)
    v.add_labels(truth_a, name="cells ground truth")
    v.add_labels(truth_b, name="tissue ground truth")
    v.add_labels(pred_a, name="cells prediction", metadata={ROLE_KEY: PREDICTION, "napari_unet_source": "cells"})
    v.add_labels(truth_b.copy(), name="tissue prediction", metadata={ROLE_KEY: PREDICTION})
    return v


def test_table_pairs_by_name_with_a_mean_row(viewer):
    widget = MetricsWidget(viewer)
    rows = widget.update_table()
    assert [(r["image"], r["ground truth"]) for r in rows[:2]] == [
        ("cells prediction", "cells ground truth"),
        ("tissue prediction", "tissue ground truth"),
    ]
    expected = evaluate(viewer.layers["cells prediction"].data, viewer.layers["cells ground truth"].data)[0]
    assert rows[0]["dice"] == pytest.approx(expected["dice"])
    assert rows[1]["dice"] == 1.0
    assert rows[-1]["image"] == "mean"
    assert rows[-1]["dice"] == pytest.approx((expected["dice"] + 1.0) / 2)
    assert widget._table.rowCount() == 3
    assert widget._table.item(0, 2).text() == f"{expected['dice']:.3f}"


def test_per_slice_and_per_class(viewer):
    widget = MetricsWidget(viewer)
    widget._per_slice.value = True
    rows = widget.update_table()
    names = [r["image"] for r in rows]
    assert "cells prediction[0]" in names and "cells prediction[1]" in names
    assert rows[0]["dice"] == 1.0 and rows[1]["dice"] < 1.0
    multi = np.zeros((40, 40), np.uint8)
    multi[:20] = 1
    multi[20:] = 2
    viewer.add_labels(multi, name="classes ground truth")
    viewer.add_labels(multi, name="classes prediction", metadata={ROLE_KEY: PREDICTION})
    widget._per_slice.value = False
    widget._multiclass.value = True
    widget._predictions.value = [viewer.layers["classes prediction"]]
    rows = widget.update_table()
    assert [r["class"] for r in rows if "layer" in r] == [1, 2]
    assert any(r["image"] == "mean, class 2" for r in rows)


def test_export_csv_and_select_row(viewer, tmp_path):
    widget = MetricsWidget(viewer)
    widget.update_table()
    path = widget.export_csv(tmp_path / "scores.csv")
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert [r["image"] for r in table] == ["cells prediction", "tissue prediction", "mean"]
    assert float(table[1]["dice"]) == 1.0
    widget.select_row(1)
    assert viewer.layers.selection.active is viewer.layers["tissue prediction"]


def test_export_csv_is_atomic(viewer, tmp_path):
    widget = MetricsWidget(viewer)
    widget.update_table()
    path = tmp_path / "scores.csv"
    path.write_text("earlier export")
    widget.rows.insert(1, {"image": "broken", "class": ""})  # no scores: the write fails half way
    with pytest.raises(KeyError):
        widget.export_csv(path)
    assert path.read_text() == "earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_object_columns_threshold_and_csv(viewer, tmp_path):
    widget = MetricsWidget(viewer)
    rows = widget.update_table()
    # 'cells': one square per plane, the second plane's prediction is half the square (IoU 0.5)
    assert (rows[0]["objects_pred"], rows[0]["objects_true"], rows[0]["matched"]) == (2, 2, 2)
    headers = [widget._table.horizontalHeaderItem(j).text() for j in range(widget._table.columnCount())]
    assert headers[-3:] == ["objects", "F1", "PQ"]
    assert widget._table.item(0, headers.index("objects")).text() == "2 / 2"
    assert widget._table.item(0, headers.index("F1")).text() == "1.000"
    widget._iou_threshold.value = 0.6
    rows = widget.update_table()
    assert rows[0]["matched"] == 1 and rows[0]["object_f1"] == 0.5
    with open(widget.export_csv(tmp_path / "objects.csv")) as f:
        table = list(csv.DictReader(f))
    assert {"objects_pred", "objects_true", "matched", "false_pos", "false_neg", "object_f1", "pq"} <= set(table[0])
    assert float(table[0]["iou_threshold"]) == 0.6 and int(table[0]["false_neg"]) == 1


def test_recomputes_when_a_layer_changes(qtbot, viewer):
    widget = MetricsWidget(viewer)
    widget.update_table()
    pred = viewer.layers["tissue prediction"]
    pred.paint((5, 5), 0 if pred.data[5, 5] else 1)  # one wrong pixel, as a brush stroke
    qtbot.waitUntil(lambda: widget.rows[1]["dice"] < 1.0, timeout=3000)
    viewer.layers.remove("tissue prediction")
    qtbot.waitUntil(lambda: len(widget.rows) == 1, timeout=3000)


def test_no_pairs_shows_a_hint(make_napari_viewer, messages):
    widget = MetricsWidget(make_napari_viewer())
    assert widget.update_table() == []
    assert "No prediction" in widget._hint.value
    widget._export.changed.emit(True)
    assert len(messages["error"]) == 1 and "empty" in messages["error"][0]


def test_default_selection_is_predictions_only_others_selectable(viewer):
    viewer.add_labels(np.zeros((40, 40), np.uint8), name="tissue strokes")
    viewer.add_labels(np.zeros((40, 40), np.uint8), name="my own prediction")  # a user's layer, by its name
    widget = MetricsWidget(viewer)
    chosen = {lay.name for lay in widget._predictions.value}
    assert chosen == {"cells prediction", "tissue prediction", "my own prediction"}
    offered = {lay.name for lay in widget._predictions.choices}
    assert {"cells ground truth", "tissue strokes"} <= offered  # still selectable
    # the user's choice sticks when layers come and go
    widget._predictions.value = [viewer.layers["tissue strokes"]]
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="later prediction")
    assert [lay.name for lay in widget._predictions.value] == ["tissue strokes"]


def test_explicit_truth_skips_predictions_of_another_shape(viewer):
    widget = MetricsWidget(viewer)
    widget._predictions.value = [viewer.layers["cells prediction"], viewer.layers["tissue prediction"]]
    widget._truth.value = viewer.layers["tissue ground truth"]
    rows = widget.update_table()
    assert [(r["image"], r["ground truth"]) for r in rows] == [("tissue prediction", "tissue ground truth")]
    assert widget._table.rowCount() == 1
    assert "cells prediction" in widget._hint.value
    assert [p.name for p, _ in widget.pairs()] == ["tissue prediction"]


def test_painting_rescores_in_a_worker_not_on_the_gui_thread(viewer, qtbot, monkeypatch):
    import threading

    from napari_unet.jobs import score

    widget = MetricsWidget(viewer)
    widget.update_table()
    release, threads = threading.Event(), []
    real = score.score_pairs

    def slow_score(*args):
        threads.append(threading.current_thread())
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(score, "score_pairs", slow_score)
    tissue = viewer.layers["tissue prediction"]
    tissue.data = np.zeros_like(tissue.data)  # the user clears the prediction: its Dice drops to 0
    widget.update_in_background()  # what the debounce timer calls: returns at once, the table is not stale-filled
    assert widget.rows[1]["dice"] == 1.0
    qtbot.waitUntil(lambda: bool(threads), timeout=10_000)
    assert threads[0] is not threading.main_thread()
    release.set()
    qtbot.waitUntil(lambda: widget.rows[1]["dice"] == 0.0, timeout=30_000)
