"""Diaphragm measurements from predicted dome points and lung labels: pure numpy, no torch.

All inputs are in pixels of the ORIGINAL image file (the file as read, before any resizing for
the network); ``spacing_mm`` is mm per pixel of that file. Sides are the patient's: row 0 of a
landmark array is the RIGHT hemidiaphragm (image left), row 1 the LEFT one; label 1 is the right
lung, label 2 the left lung.

Sign convention of the **hemidiaphragm height difference** (the quantity this module exists for):

    height_diff = left_y - right_y        (image y grows downwards)

so it is **positive when the right dome is higher** than the left, as in > 90 % of normal people
(right typically 10-25 mm higher). Normal range and flags (``docs/predict.md``, from
``shared/docs/diaphragm-facts.md``: "a right dome more than ~3 cm above the left, or a left dome
level with or above the right, is the usual trigger to consider an elevated hemidiaphragm"):

* with a pixel spacing: normal when ``0 mm < height_diff_mm <= 30 mm``;
* without one, the difference normalised by lung height (mean of the two lungs' apex-to-dome
  heights) is used: normal when ``0 < height_diff_norm <= 0.15``. The upper bound 0.15 is the
  30 mm threshold divided by an assumed typical apex-to-dome lung height of 200 mm on an adult
  frontal film; it is a convention of this tool, not a published cut-off. The lower bound 0 is
  exact in any unit (level domes are level whatever the scale).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_NORMAL_RANGE_MM = (0.0, 30.0)
"""(low, high) in mm: flag when ``height_diff_mm <= low`` or ``> high``."""
ASSUMED_LUNG_HEIGHT_MM = 200.0
"""Typical adult apex-to-dome lung height used to convert the mm range into a normalised one."""
DEFAULT_NORMAL_RANGE_NORM = (0.0, DEFAULT_NORMAL_RANGE_MM[1] / ASSUMED_LUNG_HEIGHT_MM)
"""(low, high) as a fraction of lung height: (0, 0.15)."""


def _points(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (2, 2):
        raise ValueError(f"landmarks must be (2, 2): rows [right, left], columns [x, y]; got shape {pts.shape}")
    return pts


def _labels(labels: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be an (H, W) label image (0, 1 right lung, 2 left lung), got shape {lab.shape}")
    return lab


def height_difference_px(landmarks: np.ndarray) -> float:
    """Return the hemidiaphragm height difference ``left_y - right_y`` in original pixels (float).

    Positive when the RIGHT dome is higher (smaller image y). NaN when either point is NaN.
    """
    pts = _points(landmarks)
    return float(pts[1, 1] - pts[0, 1])


def to_mm(value_px: float, spacing_mm: float | None) -> float:
    """Return a length in mm (``value_px * spacing_mm``); NaN when the spacing is unknown."""
    if spacing_mm is None or not math.isfinite(float(spacing_mm)):
        return math.nan
    return float(value_px) * float(spacing_mm)


def to_cm2(area_px: float, spacing_mm: float | None) -> float:
    """Return an area in cm^2 (``area_px * spacing_mm^2 / 100``); NaN when the spacing is unknown."""
    if spacing_mm is None or not math.isfinite(float(spacing_mm)):
        return math.nan
    return float(area_px) * float(spacing_mm) ** 2 / 100.0


def lung_areas_px(labels: np.ndarray) -> np.ndarray:
    """Return ``(2,)`` float64 ``[right, left]`` lung areas in original px^2 (pixel counts of labels 1, 2)."""
    lab = _labels(labels)
    return np.array([float(np.count_nonzero(lab == 1)), float(np.count_nonzero(lab == 2))])


def lung_apex_y(labels: np.ndarray) -> np.ndarray:
    """Return ``(2,)`` float64 ``[right, left]``: the y (original px) of each lung's topmost pixel row.

    NaN for a side with no lung pixels.
    """
    lab = _labels(labels)
    out = np.full(2, np.nan)
    for side, value in enumerate((1, 2)):
        rows = np.flatnonzero((lab == value).any(axis=1))
        if rows.size:
            out[side] = float(rows[0])
    return out


def lung_heights_px(labels: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Return ``(2,)`` float64 ``[right, left]`` lung heights in original px: dome y minus apex y.

    The apex is the lung's topmost pixel row (:func:`lung_apex_y`), the dome the predicted
    hemidiaphragm point of the same side. NaN when either is missing.
    """
    pts = _points(landmarks)
    return pts[:, 1] - lung_apex_y(labels)


def normalised_difference(height_diff_px: float, lung_heights: np.ndarray) -> float:
    """Return the height difference divided by the mean lung height (both in the same units).

    Dimensionless; NaN when the difference or a height is NaN, or the mean height is <= 0.
    """
    h = np.asarray(lung_heights, dtype=np.float64)
    mean_h = float(np.mean(h)) if h.size else math.nan
    if not math.isfinite(mean_h) or mean_h <= 0 or not math.isfinite(float(height_diff_px)):
        return math.nan
    return float(height_diff_px) / mean_h


def classify_difference(
    height_diff_mm: float,
    height_diff_norm: float,
    normal_range_mm: tuple[float, float] = DEFAULT_NORMAL_RANGE_MM,
    normal_range_norm: tuple[float, float] = DEFAULT_NORMAL_RANGE_NORM,
) -> tuple[bool | None, str, str]:
    """Flag a height difference outside the normal range.

    Uses mm when ``height_diff_mm`` is finite, else the normalised difference. Normal means
    ``low < diff <= high``; ``diff <= low`` (default 0: left dome level with or above the right)
    and ``diff > high`` (default 30 mm / 0.15: right dome far above the left) are flagged.

    Returns ``(flag, reason, basis)``: ``flag`` True (outside), False (inside) or None (nothing to
    judge: both differences NaN); ``reason`` a short sentence ("" when normal); ``basis`` ``"mm"``,
    ``"normalised"`` or ``""``.
    """
    if math.isfinite(float(height_diff_mm)):
        value, (low, high), unit, basis = float(height_diff_mm), normal_range_mm, " mm", "mm"
    elif math.isfinite(float(height_diff_norm)):
        value, (low, high), unit, basis = float(height_diff_norm), normal_range_norm, " x lung height", "normalised"
    else:
        return None, "no height difference (a dome point or, without spacing, the lung heights are missing)", ""
    if value > high:
        return True, (f"right dome {value:.3g}{unit} above the left (> {high:g}{unit}): "
                      "consider an elevated right hemidiaphragm"), basis
    if value <= low:
        where = "level with or above" if value <= 0 else "barely below"
        return True, (f"left dome {where} the right (difference {value:.3g}{unit} <= {low:g}{unit}): "
                      "consider an elevated left hemidiaphragm"), basis
    return False, "", basis


def measure(
    landmarks: np.ndarray,
    labels: np.ndarray | None,
    spacing_mm: float | None,
    normal_range_mm: tuple[float, float] = DEFAULT_NORMAL_RANGE_MM,
    normal_range_norm: tuple[float, float] = DEFAULT_NORMAL_RANGE_NORM,
) -> dict:
    """Return every measurement of one image as a flat dict of CSV columns.

    Args:
        landmarks: ``(2, 2)`` xy original px, rows [right, left] (NaN rows when the model has no
            heatmap head).
        labels: ``(H, W)`` uint8 lung labels in original px, or None (no segmentation head).
        spacing_mm: mm per original pixel, or None.

    Keys: ``right_lung_area_px, left_lung_area_px`` (px^2), ``*_lung_area_cm2``,
    ``right_lung_height_px, left_lung_height_px``, ``*_lung_height_mm``, ``height_diff_px``,
    ``height_diff_mm``, ``height_diff_norm``, ``flag`` (True/False/None), ``flag_reason``,
    ``flag_basis``. Unknown values are NaN.
    """
    pts = _points(landmarks)
    if labels is not None:
        areas = lung_areas_px(labels)
        heights = lung_heights_px(labels, pts)
    else:
        areas = np.full(2, np.nan)
        heights = np.full(2, np.nan)
    diff_px = height_difference_px(pts)
    diff_mm = to_mm(diff_px, spacing_mm)
    diff_norm = normalised_difference(diff_px, heights)
    flag, reason, basis = classify_difference(diff_mm, diff_norm, normal_range_mm, normal_range_norm)
    out: dict = {}
    for side, name in enumerate(("right", "left")):
        out[f"{name}_lung_area_px"] = float(areas[side])
        out[f"{name}_lung_area_cm2"] = to_cm2(areas[side], spacing_mm)
    for side, name in enumerate(("right", "left")):
        out[f"{name}_lung_height_px"] = float(heights[side])
        out[f"{name}_lung_height_mm"] = to_mm(heights[side], spacing_mm)
    out.update(height_diff_px=diff_px, height_diff_mm=diff_mm, height_diff_norm=diff_norm,
               flag=flag, flag_reason=reason, flag_basis=basis)
    return out


__all__ = [
    "ASSUMED_LUNG_HEIGHT_MM",
    "DEFAULT_NORMAL_RANGE_MM",
    "DEFAULT_NORMAL_RANGE_NORM",
    "classify_difference",
    "height_difference_px",
    "lung_apex_y",
    "lung_areas_px",
    "lung_heights_px",
    "measure",
    "normalised_difference",
    "to_cm2",
    "to_mm",
]
