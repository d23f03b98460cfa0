"""Split summaries: accuracy in reference px and in mm, spreads over the images (hand-computed cases)."""

from __future__ import annotations

import math

import pytest

from raysearch.config import RunConfig, apply_overrides
from raysearch.training.evaluate import SplitEvaluation


def _rows(errors_ref, errors_mm, sides):
    return [{"error_ref_px": e, "error_mm": m, "side": s} for e, m, s in zip(errors_ref, errors_mm, sides)]


def test_accuracy_in_mm_over_the_points_with_spacing():
    cfg = apply_overrides(RunConfig(), {"eval.radius_mm": 20.0})  # thresholds 20, 10, 4, 2 mm
    rows = _rows([5.0, 15.0, 30.0, 80.0, 12.0, 1.0],
                 [1.5, 9.0, float("nan"), 25.0, 3.9, float("nan")],
                 ["right", "left", "right", "left", "right", "left"])
    out = SplitEvaluation(losses={}, landmark_rows=rows).summary("test", cfg)
    # four points have a spacing: 1.5 (right), 9 (left), 25 (left), 3.9 (right)
    assert out["test/acc_mm_r1"] == pytest.approx(3 / 4)   # <= 20 mm
    assert out["test/acc_mm_r2"] == pytest.approx(3 / 4)   # <= 10 mm
    assert out["test/acc_mm_r5"] == pytest.approx(2 / 4)   # <= 4 mm
    assert out["test/acc_mm_r10"] == pytest.approx(1 / 4)  # <= 2 mm
    assert out["test/acc_mm_r5_right"] == pytest.approx(1.0) and out["test/acc_mm_r5_left"] == pytest.approx(0.0)
    assert out["test/err_mm_mean"] == pytest.approx((1.5 + 9.0 + 25.0 + 3.9) / 4)
    # reference-px accuracy still counts every point (R = 100: 100, 50, 20, 10)
    assert out["test/acc_r5"] == pytest.approx(4 / 6) and out["test/acc_r10"] == pytest.approx(2 / 6)
    errs = [5.0, 15.0, 30.0, 80.0, 12.0, 1.0]
    mean = sum(errs) / 6
    assert out["test/err_ref_std"] == pytest.approx(math.sqrt(sum((e - mean) ** 2 for e in errs) / 5))


def test_no_mm_accuracy_unless_asked_or_without_spacing():
    rows = _rows([5.0, 15.0], [1.0, 2.0], ["right", "left"])
    assert not any("acc_mm" in k for k in SplitEvaluation(losses={}, landmark_rows=rows).summary("t", RunConfig()))
    cfg = apply_overrides(RunConfig(), {"eval.radius_mm": 20.0})
    nan_rows = _rows([5.0, 15.0], [float("nan")] * 2, ["right", "left"])
    out = SplitEvaluation(losses={}, landmark_rows=nan_rows).summary("t", cfg)
    assert not any("mm" in k for k in out)


def test_segmentation_mean_and_std_over_images():
    rows = [{"dice": d, "jaccard": float("nan"), "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "auc": 1.0}
            for d in (0.9, 0.8, 0.7)]
    out = SplitEvaluation(losses={}, segmentation_rows=rows).summary("val", RunConfig())
    assert out["val/dice"] == pytest.approx(0.8) and out["val/dice_std"] == pytest.approx(0.1)
    assert "val/jaccard" not in out and "val/jaccard_std" not in out
