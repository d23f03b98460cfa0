"""measure.py against hand-computed cases; the sign convention is the point of most of them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raysearch.predict import measure as M


def _labels():
    # 20 x 30 image: right lung (label 1, image left) rows 4..15, cols 2..9 -> 12 x 8 = 96 px;
    # left lung (label 2) rows 6..17, cols 18..26 -> 12 x 9 = 108 px.
    lab = np.zeros((20, 30), np.uint8)
    lab[4:16, 2:10] = 1
    lab[6:18, 18:27] = 2
    return lab


def test_height_difference_positive_when_right_dome_higher():
    # right dome at y = 100, left dome at y = 112: the right is higher (smaller y) by 12 px
    pts = np.array([[50.0, 100.0], [150.0, 112.0]])
    assert M.height_difference_px(pts) == 12.0
    # mirrored heights: the left is higher -> negative
    assert M.height_difference_px(np.array([[50.0, 112.0], [150.0, 100.0]])) == -12.0
    assert math.isnan(M.height_difference_px(np.array([[np.nan, np.nan], [1.0, 2.0]])))


def test_areas_apex_and_heights_by_hand():
    lab = _labels()
    np.testing.assert_array_equal(M.lung_areas_px(lab), [96.0, 108.0])
    np.testing.assert_array_equal(M.lung_apex_y(lab), [4.0, 6.0])
    pts = np.array([[5.0, 15.5], [22.0, 17.0]])
    np.testing.assert_allclose(M.lung_heights_px(lab, pts), [11.5, 11.0])
    assert math.isnan(M.lung_apex_y(np.zeros((5, 5), np.uint8))[0])


def test_unit_conversions():
    assert M.to_mm(12.0, 0.5) == 6.0
    assert M.to_cm2(400.0, 0.5) == 1.0  # 400 px * 0.25 mm^2 = 100 mm^2 = 1 cm^2
    assert math.isnan(M.to_mm(3.0, None)) and math.isnan(M.to_cm2(3.0, None))


def test_normalised_difference():
    assert M.normalised_difference(10.0, np.array([90.0, 110.0])) == pytest.approx(0.1)
    assert math.isnan(M.normalised_difference(10.0, np.array([np.nan, 100.0])))
    assert math.isnan(M.normalised_difference(10.0, np.array([0.0, 0.0])))


@pytest.mark.parametrize("diff_mm, flag, word", [
    (15.0, False, ""),                 # normal: right 1.5 cm higher
    (30.0, False, ""),                 # the bound itself is normal
    (30.5, True, "elevated right"),    # right > 3 cm above left
    (0.0, True, "level with or above"),  # level domes
    (-8.0, True, "elevated left"),     # left above right
])
def test_classify_mm(diff_mm, flag, word):
    got, reason, basis = M.classify_difference(diff_mm, math.nan)
    assert got is flag and basis == "mm"
    assert word in reason


def test_classify_normalised_when_no_mm_and_custom_range():
    assert M.DEFAULT_NORMAL_RANGE_NORM == (0.0, 0.15)
    assert M.classify_difference(math.nan, 0.10)[:1] == (False,)
    got, reason, basis = M.classify_difference(math.nan, 0.20)
    assert got is True and basis == "normalised" and "0.15" in reason
    assert M.classify_difference(math.nan, -0.01)[0] is True
    assert M.classify_difference(math.nan, math.nan) [0] is None
    # mm wins over the normalised value; a custom range moves the bounds
    assert M.classify_difference(20.0, 0.9, normal_range_mm=(5.0, 25.0))[0] is False
    assert M.classify_difference(4.0, 0.1, normal_range_mm=(5.0, 25.0))[0] is True


def test_measure_full_row_by_hand():
    lab = _labels()
    pts = np.array([[5.0, 15.0], [22.0, 17.0]])  # right higher by 2 px
    row = M.measure(pts, lab, spacing_mm=0.5)
    assert row["right_lung_area_px"] == 96.0 and row["left_lung_area_cm2"] == pytest.approx(108 * 0.25 / 100)
    assert row["right_lung_height_px"] == 11.0 and row["left_lung_height_px"] == 11.0
    assert row["right_lung_height_mm"] == 5.5
    assert row["height_diff_px"] == 2.0 and row["height_diff_mm"] == 1.0
    assert row["height_diff_norm"] == pytest.approx(2.0 / 11.0)
    assert row["flag"] is False and row["flag_basis"] == "mm"
    no_seg = M.measure(pts, None, spacing_mm=None)
    assert math.isnan(no_seg["right_lung_area_px"]) and math.isnan(no_seg["height_diff_norm"])
    assert no_seg["height_diff_px"] == 2.0 and no_seg["flag"] is None
