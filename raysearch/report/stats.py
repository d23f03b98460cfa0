"""Paired statistics for the report: Wilcoxon signed-rank tests and Holm's step-down correction.

Pure numpy/scipy: no files, no pandas I/O. The paper (Table 4) compares every pair of
configurations with a Wilcoxon signed-rank test on paired per-image distance errors; a pair is the
same test image, side and split seed evaluated by two configurations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    """Result of one two-sided Wilcoxon signed-rank test of errors ``a`` vs ``b`` (same units).

    ``statistic``: scipy's statistic (the smaller rank sum; NaN when every difference is zero);
    ``p_value`` in [0, 1]; ``better``: ``"a"`` when ``a`` has the lower errors (the rank sum of
    ``a - b`` is dominated by negative differences), ``"b"`` for the opposite, ``""`` when tied.
    """

    n_pairs: int
    statistic: float
    p_value: float
    better: str


def wilcoxon_paired(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on paired errors (``scipy.stats.wilcoxon`` defaults).

    ``a``, ``b``: 1-D float arrays of equal length (e.g. errors in reference pixels). When every
    difference is zero the test is undefined; this returns ``p_value = 1`` (no evidence of a
    difference) instead of scipy's warning. Fewer than one non-zero difference likewise gives 1.
    """
    from scipy.stats import rankdata, wilcoxon

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired samples must be finite (drop or fix NaN errors before testing)")
    d = a - b
    nz = d[d != 0]
    if nz.size == 0:
        return PairedTest(int(a.size), float("nan"), 1.0, "")
    ranks = rankdata(np.abs(nz))
    r_plus, r_minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    better = "a" if r_minus > r_plus else "b" if r_plus > r_minus else ""
    with warnings.catch_warnings():
        # scipy warns for small samples (normal approximation with ties); the p-value is still its answer
        warnings.simplefilter("ignore", category=UserWarning)
        res = wilcoxon(a, b)
    p = float(res.pvalue)
    if not np.isfinite(p):
        p = 1.0
    return PairedTest(int(a.size), float(res.statistic), min(max(p, 0.0), 1.0), better)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), same order as the input.

    With the m finite p-values sorted ascending, ``p_adj_(i) = max_{j<=i} min(1, (m - j + 1) * p_(j))``
    (i, j counted from 1). NaN inputs stay NaN and do not count in m. Returns float64 of the input
    shape. Rejecting ``p_adj <= alpha`` is the same as Holm's procedure at level alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    idx = np.flatnonzero(np.isfinite(flat))
    if idx.size == 0:
        return out
    if np.any((flat[idx] < 0) | (flat[idx] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {flat[idx][(flat[idx] < 0) | (flat[idx] > 1)][:5]}")
    m = idx.size
    order = idx[np.argsort(flat[idx], kind="mergesort")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    adj = np.maximum.accumulate(scaled)
    res = out.ravel()
    res[order] = adj
    return res.reshape(p.shape)


__all__ = ["PairedTest", "holm", "wilcoxon_paired"]
