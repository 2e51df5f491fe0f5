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


def _brute_force(pred, truth, thr):
    """An independent reference: IoU by looping over objects, then scipy's Hungarian assignment."""
    from scipy.optimize import linear_sum_assignment

    p_ids = [i for i in np.unique(pred) if i]
    t_ids = [i for i in np.unique(truth) if i]
    iou = np.zeros((len(t_ids), len(p_ids)))
    for a, t in enumerate(t_ids):
        for b, p in enumerate(p_ids):
            inter = np.count_nonzero((truth == t) & (pred == p))
            iou[a, b] = inter / np.count_nonzero((truth == t) | (pred == p))
    r, c = linear_sum_assignment(iou, maximize=True)
    good = iou[r, c] >= thr
    tp = int(good.sum())
    return len(p_ids), len(t_ids), tp, float(iou[r, c][good].sum())


def _random_instances(rng, shape=(40, 40), n=8):
    from skimage.draw import disk

    lab = np.zeros(shape, int)
    for k in range(1, n + 1):
        rr, cc = disk(tuple(rng.integers(0, shape[0], 2)), rng.integers(2, 7), shape=shape)
        lab[rr, cc] = k
    return lab


@pytest.mark.parametrize("thr", [0.5, 0.7, 0.9])
def test_object_matching_agrees_with_brute_force_hungarian(thr):
    from napari_unet.metrics import object_scores

    rng = np.random.default_rng(1)
    for _ in range(20):
        truth = _random_instances(rng, n=int(rng.integers(0, 10)))
        pred = _random_instances(rng, n=int(rng.integers(0, 10)))
        if rng.random() < 0.5:  # a noisy copy of the truth: many good matches
            pred = np.where(rng.random(truth.shape) < 0.1, 0, truth * 3)
        n_p, n_t, tp, iou_sum = _brute_force(pred, truth, thr)
        s = object_scores(pred, truth, thr)
        assert (s["objects_pred"], s["objects_true"], s["matched"]) == (n_p, n_t, tp)
        assert (s["false_pos"], s["false_neg"]) == (n_p - tp, n_t - tp)
        if n_p + n_t:
            assert s["object_f1"] == pytest.approx(2 * tp / (n_p + n_t))
            assert s["pq"] == pytest.approx(iou_sum / (tp + (n_p - tp) / 2 + (n_t - tp) / 2))
        if tp:
            assert s["matched_iou"] == pytest.approx(iou_sum / tp)


def test_object_matching_below_one_half_is_one_to_one():
    from napari_unet.metrics import object_scores

    # one true object of 4 pixels, two predicted halves of IoU 0.5 each: one match only at 0.5
    truth = np.zeros((4, 4), int)
    truth[0, :4] = 5
    pred = np.zeros((4, 4), int)
    pred[0, :2], pred[0, 2:] = 2, 3
    s = object_scores(pred, truth, 0.5)
    assert (s["matched"], s["false_pos"], s["false_neg"]) == (1, 1, 0)
    # three true, three predicted, where greedy-by-IoU would match only two at 0.3
    truth = np.zeros((1, 12), int)
    truth[0, 0:4], truth[0, 4:8] = 1, 2
    pred = np.zeros((1, 12), int)
    pred[0, 2:6] = 1  # IoU 2/6 with both
    pred[0, 0:2] = 2  # IoU 2/4 with 1
    s = object_scores(np.vstack([pred, pred]), np.vstack([truth, truth]), 0.3)
    assert s["matched"] == 2


def test_object_scores_empty_images():
    from napari_unet.metrics import object_scores

    z = np.zeros((8, 8), int)
    o = z.copy()
    o[2:5, 2:5] = 1
    s = object_scores(z, z)
    assert s["objects_pred"] == s["objects_true"] == 0
    assert s["object_f1"] == s["pq"] == s["object_precision"] == s["object_recall"] == 1.0
    s = object_scores(z, o)
    assert (s["objects_pred"], s["objects_true"], s["false_neg"], s["object_f1"], s["pq"]) == (0, 1, 1, 0.0, 0.0)
    s = object_scores(o, z)
    assert (s["objects_pred"], s["false_pos"], s["object_precision"], s["pq"]) == (1, 1, 0.0, 0.0)


def test_binary_prediction_counts_connected_components_and_rows_have_object_columns():
    from napari_unet.metrics import COLUMNS

    truth = np.zeros((20, 20), int)
    truth[2:8, 2:8], truth[2:8, 8:14], truth[2:8, 14:20] = 1, 2, 3  # three touching objects
    pred = (truth > 0).astype(np.uint8)  # merged: one connected piece, IoU 1/3 with each
    (row,) = evaluate(pred, truth)
    assert set(COLUMNS) <= set(row)
    assert row["dice"] == 1.0
    assert (row["objects_pred"], row["objects_true"], row["matched"]) == (1, 3, 0)
    (row,) = evaluate(pred, truth, iou_threshold=0.3)
    assert row["matched"] == 1 and row["iou_threshold"] == 0.3
    with pytest.raises(InputError, match="iou_threshold"):
        evaluate(pred, truth, iou_threshold=0)
    assert "F1@0.5" in format_table(evaluate([pred, pred], [truth, truth]))


def test_stack_objects_pool_planes_and_per_slice_rows():
    truth = np.zeros((2, 10, 10), int)
    truth[:, 1:4, 1:4] = 1  # the same id in both planes: two objects, one per plane
    pred = truth.copy()
    pred[1] = 0
    (row,) = evaluate(pred, truth)
    assert (row["objects_pred"], row["objects_true"], row["matched"]) == (1, 2, 1)
    rows = evaluate(pred, truth, per_slice=True)
    assert [r["object_f1"] for r in rows] == [1.0, 0.0]
    assert mean_row(rows)["object_f1"] == 0.5


@pytest.mark.parametrize("scale", [1, 3, 1 << 40])  # small ids, sparse ids, ids too large for a lookup table
def test_iou_matrix_agrees_with_a_loop_over_objects(scale):
    from napari_unet.metrics import iou_matrix

    rng = np.random.default_rng(2)
    for _ in range(10):
        truth = _random_instances(rng, n=int(rng.integers(0, 8))) * scale
        pred = _random_instances(rng, n=int(rng.integers(0, 8))) * 7
        t_ids, p_ids = np.unique(truth[truth > 0]), np.unique(pred[pred > 0])
        expected = np.zeros((len(t_ids), len(p_ids)))
        for i, t in enumerate(t_ids):
            for j, p in enumerate(p_ids):
                a, b = truth == t, pred == p
                expected[i, j] = (a & b).sum() / (a | b).sum()
        np.testing.assert_allclose(iou_matrix(pred, truth), expected)
