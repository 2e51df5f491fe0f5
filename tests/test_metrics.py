import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from napari_unet import InputError, evaluate, instance_scores
from napari_unet.metrics import binary_scores, format_table, mean_row


def test_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    pred, truth = rng.random((32, 32)) > 0.5, rng.random((32, 32)) > 0.6
    s = binary_scores(pred, truth)
    t, p = truth.ravel(), pred.ravel()
    assert s["precision"] == pytest.approx(precision_score(t, p))
    assert s["recall"] == pytest.approx(recall_score(t, p))
    assert s["iou"] == pytest.approx(jaccard_score(t, p))
    assert s["dice"] == pytest.approx(f1_score(t, p))


def test_empty_cases_are_defined():
    z = np.zeros((4, 4), bool)
    o = np.ones((4, 4), bool)
    assert binary_scores(z, z) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    assert binary_scores(z, o) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert binary_scores(o, z)["precision"] == 0.0


def test_rows_multiclass_per_slice_and_table():
    truth = np.zeros((2, 6, 6), int)
    truth[:, :3] = 1
    truth[:, 3:, :2] = 2
    pred = truth.copy()
    pred[1] = 0
    rows = evaluate([pred], [truth], ["stack"], multiclass=True, per_slice=True)
    assert [(r["image"], r["class"]) for r in rows] == [
        ("stack[0]", 1),
        ("stack[0]", 2),
        ("stack[1]", 1),
        ("stack[1]", 2),
    ]
    assert rows[0]["dice"] == 1.0 and rows[2]["dice"] == 0.0
    assert mean_row(rows)["dice"] == pytest.approx(0.5)
    text = format_table(rows)
    assert "mean" in text and "stack[1]" in text
    with pytest.raises(InputError, match="shape"):
        evaluate(np.zeros((3, 3)), np.zeros((4, 4)))


def test_instance_matching():
    truth = np.zeros((20, 20), int)
    truth[2:8, 2:8], truth[12:18, 12:18] = 1, 2
    pred = np.zeros_like(truth)
    pred[2:8, 2:9] = 7  # IoU 36/42
    pred[0:2, 15:20] = 9  # a false positive
    s = instance_scores(pred, truth)
    assert (s["n_true"], s["n_pred"], s["matched"]) == (2, 2, 1)
    assert s["mean_matched_iou"] == pytest.approx(36 / 42)
    assert s["recall"] == 0.5 and s["precision"] == 0.5
