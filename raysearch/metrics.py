"""Evaluation metrics (pure numpy): landmark errors and accuracy at R/k, lung segmentation metrics.

The same functions feed training-time validation, the tests and the report tables, so the numbers
cannot drift apart.

Landmarks: the paper's accuracy is "the number of points that fall below a threshold divided by
the total number of points" with thresholds R, R/2, R/5, R/10 (R = 100 px in the 512-px reference
frame). We count an error **equal** to the threshold as a hit (``error <= t``), the usual
"successful detection within radius t" convention of landmark benchmarks; with continuous errors
the two readings differ only on a set of measure zero.

Segmentation (paper's eqs. 6-10, plus AUC-ROC), per image, from a probability map binarised at
``prob >= threshold``. Conventions for empty masks (where a ratio is 0/0):

* dice, jaccard: 1.0 when prediction and truth are both empty;
* precision (no predicted positives): 1.0 if the truth is empty too, else 0.0;
* recall (no true positives): 1.0 if the prediction is empty too, else 0.0;
* auc: NaN when the truth holds a single class (ROC undefined); accuracy is always defined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from raysearch.geometry import reference_px_per_stored_px
from raysearch.schema import SIDES

# Keys of one landmark_errors row, in the order of schema.LANDMARK_COLUMNS (the caller adds
# trial_id, split_seed and image_id in front).
LANDMARK_ERROR_KEYS = (
    "side",
    "error_ref_px",
    "error_stored_px",
    "error_orig_px",
    "error_mm",
    "dx_stored_px",
    "dy_stored_px",
    "dy_ref_px",
    "pred_x",
    "pred_y",
    "true_x",
    "true_y",
)


# -- landmarks ------------------------------------------------------------------------------------

def landmark_errors(
    pred_stored: np.ndarray,
    true_stored: np.ndarray,
    stored_width: int,
    pixel_spacing_mm: float | None = None,
    orig_scale: float = 1.0,
) -> list[dict]:
    """Return one row per annotated side with the landmark error in every unit.

    Args:
        pred_stored, true_stored: ``(2, 2)`` xy in **stored** pixels, rows ``[right, left]``; a NaN
            row of ``true_stored`` (not annotated) is skipped. A NaN prediction gives NaN errors.
        stored_width: width of the stored image in pixels (defines the 512-px reference frame).
        pixel_spacing_mm: mm per stored pixel, or None when unknown (``error_mm`` is then NaN).
        orig_scale: ``stored = original * orig_scale`` (1.0 when the stored image is the original).

    Returns:
        list of dicts with keys :data:`LANDMARK_ERROR_KEYS` (``schema.LANDMARK_COLUMNS`` minus
        trial_id, split_seed, image_id): ``error_stored_px`` (Euclidean, stored px),
        ``error_ref_px`` (x 512 / stored_width), ``error_orig_px`` (/ orig_scale), ``error_mm``
        (x spacing), ``dx/dy_stored_px`` = pred - true (y down: positive dy = prediction below the
        truth), ``dy_ref_px``, and the predicted/true xy in stored pixels.
    """
    pred = _as_points(pred_stored, "pred_stored")
    true = _as_points(true_stored, "true_stored")
    if not (math.isfinite(stored_width) and stored_width > 0):
        raise ValueError(f"stored_width must be a positive number of pixels, got {stored_width!r}")
    if not (math.isfinite(orig_scale) and orig_scale > 0):
        raise ValueError(f"orig_scale must be a finite number > 0 (stored = original * orig_scale), got {orig_scale!r}")
    if pixel_spacing_mm is not None and not (math.isfinite(pixel_spacing_mm) and pixel_spacing_mm > 0):
        raise ValueError(f"pixel_spacing_mm must be a finite number > 0 or None, got {pixel_spacing_mm!r}")
    ref_per_stored = reference_px_per_stored_px(stored_width)
    rows = []
    for i, side in enumerate(SIDES):
        if np.isnan(true[i]).any():
            continue
        dx, dy = pred[i] - true[i]
        err = float(math.hypot(dx, dy))
        rows.append(
            {
                "side": side,
                "error_ref_px": err * ref_per_stored,
                "error_stored_px": err,
                "error_orig_px": err / orig_scale,
                "error_mm": err * pixel_spacing_mm if pixel_spacing_mm is not None else math.nan,
                "dx_stored_px": float(dx),
                "dy_stored_px": float(dy),
                "dy_ref_px": float(dy) * ref_per_stored,
                "pred_x": float(pred[i, 0]),
                "pred_y": float(pred[i, 1]),
                "true_x": float(true[i, 0]),
                "true_y": float(true[i, 1]),
            }
        )
    return rows


def threshold_accuracy(errors: Iterable[float], thresholds: Sequence[float]) -> np.ndarray:
    """Return the fraction of errors within each threshold (``error <= t``): ``(len(thresholds),)`` float64.

    Errors and thresholds must be in the same unit (usually 512-px reference pixels). A NaN error
    (no prediction) counts as a miss. With no errors at all every entry is NaN.
    """
    err = np.asarray(list(errors) if not isinstance(errors, np.ndarray) else errors, dtype=np.float64).ravel()
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if err.size == 0:
        return np.full(thr.shape, np.nan)
    with np.errstate(invalid="ignore"):
        hits = err[None, :] <= thr[:, None]  # NaN <= t is False: a miss
    return hits.mean(axis=1)


def accuracy_table(
    errors_right: Iterable[float], errors_left: Iterable[float], thresholds: Sequence[float]
) -> dict[str, np.ndarray]:
    """Return ``dict(right=, left=, both=)`` accuracies per threshold (each ``(len(thresholds),)`` float64).

    ``both`` pools the points of both sides (hits / all points), which equals the mean of right and
    left when every image is annotated on both sides, as in the paper's tables.
    """
    right = np.asarray(list(errors_right), dtype=np.float64).ravel()
    left = np.asarray(list(errors_left), dtype=np.float64).ravel()
    return {
        "right": threshold_accuracy(right, thresholds),
        "left": threshold_accuracy(left, thresholds),
        "both": threshold_accuracy(np.concatenate([right, left]), thresholds),
    }


# -- segmentation ---------------------------------------------------------------------------------

def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney U with tie handling).

    ``AUC = P(score_pos > score_neg) + 0.5 * P(score_pos == score_neg)``, computed by grouping equal
    scores (equal to ``sklearn.metrics.roc_auc_score``). Returns NaN when ``labels`` hold one class.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same number of elements, got {s.size} and {y.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse = np.unique(s, return_inverse=True)
    inverse = inverse.ravel()
    pos_per_value = np.bincount(inverse, weights=y, minlength=inverse.max() + 1)
    neg_per_value = np.bincount(inverse, weights=~y, minlength=inverse.max() + 1)
    neg_below = np.cumsum(neg_per_value) - neg_per_value  # negatives with a strictly smaller score
    u = float(np.sum(pos_per_value * (neg_below + 0.5 * neg_per_value)))
    return u / (float(n_pos) * float(n_neg))


def segmentation_metrics(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Return the paper's lung-segmentation metrics for one image.

    Args:
        prob: ``(H, W)`` float lung probability (sigmoid of the seg logits), in network or stored px.
        truth: ``(H, W)`` bool (or 0/1) ground-truth lung mask, same shape.
        threshold: the prediction is ``prob >= threshold``.

    Returns:
        ``dict(dice, jaccard, auc, accuracy, precision, recall)`` of Python floats (keys as
        ``schema.SEGMENTATION_METRICS``); empty-mask conventions in the module docstring.
    """
    p = np.asarray(prob, dtype=np.float64)
    t = np.asarray(truth)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"prob and truth must be (H, W) arrays of the same shape, got {p.shape} and {t.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("prob holds NaN or infinite values")
    t = t.astype(bool)
    pred = p >= threshold
    tp = int(np.count_nonzero(pred & t))
    fp = int(np.count_nonzero(pred & ~t))
    fn = int(np.count_nonzero(~pred & t))
    tn = int(pred.size - tp - fp - fn)
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0),
        "jaccard": _ratio(tp, tp + fp + fn, empty=1.0),
        "auc": roc_auc(p, t),
        "accuracy": (tp + tn) / pred.size,
        "precision": _ratio(tp, tp + fp, empty=1.0 if tp + fn == 0 else 0.0),
        "recall": _ratio(tp, tp + fn, empty=1.0 if tp + fp == 0 else 0.0),
    }


# -- summaries ------------------------------------------------------------------------------------

def summarise(values: Iterable[float]) -> tuple[float, float]:
    """Return ``(mean, std)`` over runs (e.g. the five random splits), as the paper's "mean +- std".

    The std is the sample standard deviation (``ddof=1``, pandas' and nnU-Net's default): with
    five splits it estimates the spread of a new split rather than describing these five. NaN values
    are dropped (pandas' ``skipna``); with fewer than two values the std is NaN, with none both are.
    """
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    return float(np.mean(v)), std


# -- helpers --------------------------------------------------------------------------------------

def _ratio(num: int, den: int, empty: float) -> float:
    return float(num) / float(den) if den > 0 else float(empty)


def _as_points(a: np.ndarray, name: str) -> np.ndarray:
    pts = np.asarray(a, dtype=np.float64)
    if pts.shape != (2, 2):
        raise ValueError(f"{name} must be (2, 2): rows [right, left], columns [x, y] in stored px; got shape {pts.shape}")
    return pts


__all__ = [
    "LANDMARK_ERROR_KEYS",
    "accuracy_table",
    "landmark_errors",
    "roc_auc",
    "segmentation_metrics",
    "summarise",
    "threshold_accuracy",
]
