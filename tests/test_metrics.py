"""Landmark errors and accuracy, segmentation metrics against scikit-learn, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from raysearch.metrics import (
    LANDMARK_ERROR_KEYS,
    accuracy_table,
    landmark_errors,
    roc_auc,
    segmentation_metrics,
    summarise,
    threshold_accuracy,
)
from raysearch.schema import LANDMARK_COLUMNS, SEGMENTATION_METRICS

NAN = float("nan")


# -- landmarks ------------------------------------------------------------------------------------

def test_landmark_error_keys_match_the_schema():
    assert LANDMARK_ERROR_KEYS == tuple(c for c in LANDMARK_COLUMNS if c not in ("trial_id", "split_seed", "image_id"))


def test_landmark_errors_in_every_unit():
    true = np.array([[100.0, 200.0], [300.0, 210.0]])
    pred = np.array([[103.0, 204.0], [300.0, 200.0]])  # right: (3, 4) -> 5 px; left: (0, -10) -> 10 px
    rows = landmark_errors(pred, true, stored_width=1024, pixel_spacing_mm=0.35, orig_scale=0.5)
    assert [r["side"] for r in rows] == ["right", "left"]
    r, l = rows
    assert tuple(r) == LANDMARK_ERROR_KEYS
    assert r["error_stored_px"] == pytest.approx(5.0)
    assert r["error_ref_px"] == pytest.approx(2.5)  # 1024-px image: 1 stored px = 0.5 reference px
    assert r["error_orig_px"] == pytest.approx(10.0)  # stored = original * 0.5
    assert r["error_mm"] == pytest.approx(1.75)
    assert (r["dx_stored_px"], r["dy_stored_px"], r["dy_ref_px"]) == pytest.approx((3.0, 4.0, 2.0))
    assert (r["pred_x"], r["pred_y"], r["true_x"], r["true_y"]) == (103.0, 204.0, 100.0, 200.0)
    assert l["error_stored_px"] == pytest.approx(10.0)
    assert l["dy_stored_px"] == pytest.approx(-10.0)  # prediction above the truth


def test_landmark_errors_skip_unannotated_and_unknown_spacing():
    true = np.array([[NAN, NAN], [50.0, 60.0]])
    pred = np.array([[1.0, 1.0], [50.0, 66.0]])
    rows = landmark_errors(pred, true, stored_width=512)
    assert [r["side"] for r in rows] == ["left"]
    assert rows[0]["error_ref_px"] == pytest.approx(6.0)
    assert math.isnan(rows[0]["error_mm"])


def test_landmark_errors_reject_bad_input():
    with pytest.raises(ValueError, match="pred_stored"):
        landmark_errors(np.zeros(4), np.zeros((2, 2)), 512)
    with pytest.raises(ValueError, match="stored_width"):
        landmark_errors(np.zeros((2, 2)), np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="orig_scale"):
        landmark_errors(np.zeros((2, 2)), np.zeros((2, 2)), 512, orig_scale=0.0)


def test_threshold_accuracy_counts_errors_at_the_threshold_as_hits():
    errors = [0.0, 5.0, 10.0, 10.0001, 20.0, 50.0, 100.0, 150.0, NAN, 9.9]
    acc = threshold_accuracy(errors, [100, 50, 20, 10])
    # <= 100: 0,5,10,10.0001,20,50,100,9.9 -> 8 of 10; <= 50: 7; <= 20: 6; <= 10: 0,5,10,9.9 -> 4
    np.testing.assert_allclose(acc, [0.8, 0.7, 0.6, 0.4])
    assert np.all(np.isnan(threshold_accuracy([], [10, 5])))


def test_accuracy_table_pools_both_sides():
    table = accuracy_table([1.0, 30.0, 60.0], [5.0, 120.0], [50, 10])
    np.testing.assert_allclose(table["right"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(table["left"], [1 / 2, 1 / 2])
    np.testing.assert_allclose(table["both"], [3 / 5, 2 / 5])


# -- segmentation ---------------------------------------------------------------------------------

def _sklearn_metrics(prob, truth, threshold=0.5):
    y, p = truth.ravel().astype(int), (prob.ravel() >= threshold).astype(int)
    return {
        "dice": f1_score(y, p),
        "jaccard": jaccard_score(y, p),
        "auc": roc_auc_score(y, prob.ravel()),
        "accuracy": accuracy_score(y, p),
        "precision": precision_score(y, p),
        "recall": recall_score(y, p),
    }


@pytest.mark.parametrize("seed", range(4))
def test_segmentation_metrics_match_sklearn_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((24, 32)) < 0.4
    # informative probabilities, rounded to create ties in the AUC
    prob = np.clip(0.35 * truth + rng.random((24, 32)) * 0.65, 0, 1)
    if seed % 2:
        prob = np.round(prob, 1)
    got = segmentation_metrics(prob, truth)
    assert tuple(got) == SEGMENTATION_METRICS
    expected = _sklearn_metrics(prob, truth)
    for k in SEGMENTATION_METRICS:
        assert got[k] == pytest.approx(expected[k], abs=1e-12), k


def test_auc_matches_sklearn_with_heavy_ties():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, 500).astype(float)
    labels = rng.random(500) < (scores + 1) / 6
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(np.ones(10), np.arange(10) < 5) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.random.default_rng(0).random(10), np.zeros(10)))


def test_empty_prediction_with_lungs_in_truth():
    truth = np.zeros((8, 8), bool)
    truth[2:5, 2:5] = True
    prob = np.full((8, 8), 0.1)
    got = segmentation_metrics(prob, truth)
    y, p = truth.ravel(), np.zeros(64, int)
    assert got["dice"] == f1_score(y, p, zero_division=0.0) == 0.0
    assert got["jaccard"] == jaccard_score(y, p, zero_division=0.0) == 0.0
    assert got["precision"] == precision_score(y, p, zero_division=0.0) == 0.0
    assert got["recall"] == recall_score(y, p) == 0.0
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert got["auc"] == pytest.approx(0.5)  # constant scores


def test_empty_truth_conventions():
    truth = np.zeros((8, 8), bool)
    # both empty: a perfect answer
    both_empty = segmentation_metrics(np.zeros((8, 8)), truth)
    for k in ("dice", "jaccard", "accuracy", "precision", "recall"):
        assert both_empty[k] == 1.0, k
    assert math.isnan(both_empty["auc"])  # one class only: ROC undefined
    # empty truth, some false positives
    prob = np.zeros((8, 8))
    prob[0, :4] = 0.9
    got = segmentation_metrics(prob, truth)
    y, p = truth.ravel(), (prob.ravel() >= 0.5).astype(int)
    assert got["dice"] == f1_score(y, p, zero_division=0.0) == 0.0
    assert got["precision"] == precision_score(y, p) == 0.0
    assert got["recall"] == 0.0  # 0/0 with positives predicted: defined as 0
    assert got["accuracy"] == pytest.approx(60 / 64)


def test_threshold_is_inclusive_and_shapes_are_checked():
    truth = np.array([[True, False]])
    assert segmentation_metrics(np.array([[0.5, 0.49]]), truth)["dice"] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 5), bool))


# -- summaries ------------------------------------------------------------------------------------

def test_summarise_uses_sample_std():
    vals = [99.55, 99.10, 98.90, 99.85, 100.0]
    mean, std = summarise(vals)
    assert mean == pytest.approx(np.mean(vals))
    assert std == pytest.approx(np.std(vals, ddof=1))
    assert summarise([1.0, NAN, 3.0]) == pytest.approx((2.0, math.sqrt(2.0)))
    m, s = summarise([4.0])
    assert m == 4.0 and math.isnan(s)
    assert all(math.isnan(v) for v in summarise([]))
