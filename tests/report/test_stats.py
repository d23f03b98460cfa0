"""Wilcoxon signed-rank wrapper and Holm's correction against scipy and hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from raysearch.report.stats import holm, wilcoxon_paired


def test_holm_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone max 0.06
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])


def test_holm_clips_at_one_and_keeps_nan_out_of_m():
    np.testing.assert_allclose(holm(np.array([0.5, 0.2])), [0.5, 0.4])
    np.testing.assert_allclose(holm(np.array([0.6, 0.7, 0.9])), [1.0, 1.0, 1.0])
    out = holm(np.array([np.nan, 0.01, 0.02]))  # m = 2: 0.01*2 = 0.02, 0.02*1 -> 0.02
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.02, 0.02])


def test_holm_rejections_match_the_step_down_procedure():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.08, size=15)
    alpha = 0.05
    # Holm's procedure written out: reject p_(k) while p_(k) <= alpha / (m - k), k from 0
    order = np.argsort(p)
    reject = np.zeros(p.size, bool)
    for k, i in enumerate(order):
        if p[i] > alpha / (p.size - k):
            break
        reject[i] = True
    np.testing.assert_array_equal(holm(p) <= alpha, reject)


def test_holm_against_statsmodels():
    from statsmodels.stats.multitest import multipletests  # dev dependency: an independent reference
    p = np.random.default_rng(1).uniform(0, 0.2, size=20)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])


def test_holm_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm(np.array([0.1, 1.5]))


def test_wilcoxon_matches_scipy_and_direction():
    rng = np.random.default_rng(3)
    a = rng.gamma(2.0, 5.0, size=40)
    b = a * rng.lognormal(0.3, 0.3, size=40)  # b clearly larger errors
    r = wilcoxon_paired(a, b)
    ref = wilcoxon(a, b)
    assert r.n_pairs == 40
    assert r.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert r.statistic == pytest.approx(float(ref.statistic))
    assert r.better == "a"
    assert wilcoxon_paired(b, a).better == "b"


def test_wilcoxon_identical_vectors_give_p_one():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    r = wilcoxon_paired(a, a.copy())
    assert r.p_value == 1.0 and r.better == "" and np.isnan(r.statistic)


def test_wilcoxon_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        wilcoxon_paired(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        wilcoxon_paired(np.array([1.0, np.nan]), np.ones(2))
