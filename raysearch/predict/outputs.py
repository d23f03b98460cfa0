"""What ``python -m raysearch.predict`` writes: CSV tables, label masks and overlays.

Folder layout (``--out DIR``)::

    predictions.csv   one row per image read (PREDICTION_COLUMNS), in input order
    errors.csv        file, reason: one row per input that could not be read (header only when none)
    per_patient.csv   only when some rows carry a patient id and a date (PER_PATIENT_COLUMNS)
    masks/<id>.png    uint8 labels in the original size: 0 background, 1 right lung, 2 left lung
                      (only for a model with a segmentation head)
    overlays/<id>.png the image with lung contours, the two dome points and the height difference
    predict.json      checkpoint used (and the trial chosen), options, counts

Both the local and the Ray path hand their :class:`~raysearch.predict.inference.ImageResult` list
to :func:`write_outputs`, so the files do not depend on where the work ran.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from raysearch.atomic import write_bytes_atomic

PREDICTION_COLUMNS = (
    "id", "file", "width", "height",
    "right_x", "right_y", "left_x", "left_y",              # original-file px, pixel centres at integers
    "right_x_mm", "right_y_mm", "left_x_mm", "left_y_mm",  # px * spacing (from the top-left pixel centre)
    "right_confidence", "left_confidence",                 # 1 - heatmap minimum, in [0, 1]
    "pixel_spacing_mm", "spacing_source",                  # manifest | dicom:<tag> | cli | ""
    "right_lung_area_px", "right_lung_area_cm2", "left_lung_area_px", "left_lung_area_cm2",
    "right_lung_height_px", "right_lung_height_mm", "left_lung_height_px", "left_lung_height_mm",
    "height_diff_px", "height_diff_mm", "height_diff_norm",  # left_y - right_y: > 0 = right dome higher
    "flag", "flag_reason", "flag_basis",
    "patient_id", "date",
)
ERROR_COLUMNS = ("file", "reason")
PER_PATIENT_COLUMNS = (
    "patient_id", "date", "id", "file", "study_index", "days_since_first",
    "height_diff_px", "height_diff_mm", "height_diff_norm",
    "change_px_since_first", "change_mm_since_first", "change_norm_since_first",
    "flag", "flag_reason",
)

# Overlay colours (RGB).
_RIGHT_RGB = (0, 200, 255)
_LEFT_RGB = (255, 90, 200)
_BAR_RGB = (255, 220, 0)
_FLAG_RGB = (255, 60, 60)


def encode_png(array: np.ndarray, rgb: bool = False) -> bytes:
    """Encode a uint8 ``(H, W)`` or RGB ``(H, W, 3)`` array (``rgb=True``) as PNG bytes."""
    arr = np.ascontiguousarray(array)
    if rgb:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - OpenCV fails only on unsupported dtypes
        raise ValueError(f"cannot encode an array of shape {arr.shape} and dtype {arr.dtype} as PNG")
    return buf.tobytes()


def render_overlay(pixels: np.ndarray, labels: np.ndarray | None, points: np.ndarray, meas: dict,
                   spacing_mm: float | None) -> np.ndarray:
    """Draw the prediction on the image; return uint8 RGB ``(H, W, 3)`` in the original size.

    Lung contours (right lung cyan, left magenta), the two dome points (crosses in the same
    colours), dashed horizontal lines at each dome's height, and a vertical yellow bar between
    the two heights (at the middle between the points) labelled with the height difference in mm
    (or px and the fraction of lung height when the spacing is unknown; positive = right dome higher). A flagged image gets its
    label in red with "FLAG".
    """
    img = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape
    t = max(1, int(round(min(h, w) / 256)))
    if labels is not None:
        for value, colour in ((1, _RIGHT_RGB), (2, _LEFT_RGB)):
            contours, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(rgb, contours, -1, colour, t, cv2.LINE_AA)
    pts = np.asarray(points, dtype=np.float64)
    if np.isfinite(pts).all():
        arm = 4 * t + 2
        for (x, y), colour in zip(pts, (_RIGHT_RGB, _LEFT_RGB)):
            xi, yi = int(round(x)), int(round(y))
            for x0 in range(0, w, 6 * t):  # dashed level line
                cv2.line(rgb, (x0, yi), (min(x0 + 3 * t, w - 1), yi), colour, max(1, t // 2))
            cv2.line(rgb, (xi - arm, yi), (xi + arm, yi), colour, t + 1, cv2.LINE_AA)
            cv2.line(rgb, (xi, yi - arm), (xi, yi + arm), colour, t + 1, cv2.LINE_AA)
        xm = int(round(pts[:, 0].mean()))
        y_r, y_l = int(round(pts[0, 1])), int(round(pts[1, 1]))
        cv2.line(rgb, (xm, y_r), (xm, y_l), _BAR_RGB, 2 * t, cv2.LINE_AA)
        for yy in (y_r, y_l):
            cv2.line(rgb, (xm - 2 * t - 2, yy), (xm + 2 * t + 2, yy), _BAR_RGB, t, cv2.LINE_AA)
        diff_mm, diff_px = meas.get("height_diff_mm", math.nan), meas.get("height_diff_px", math.nan)
        diff_norm = meas.get("height_diff_norm", math.nan)
        if math.isfinite(diff_mm):
            text = f"R-L {diff_mm:+.1f} mm"
        elif math.isfinite(diff_norm):
            text = f"R-L {diff_px:+.1f} px ({diff_norm:+.2f} lung h)"
        else:
            text = f"R-L {diff_px:+.1f} px"
        flagged = meas.get("flag") is True
        if flagged:
            text += " FLAG"
        scale = 0.4 * t
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
        tx = int(min(max(xm - tw // 2, 1), w - tw - 1))
        ty = int(min(max(min(y_r, y_l) - 3 * t - 4, th + 2), h - base - 1))
        cv2.rectangle(rgb, (tx - 1, ty - th - 2), (tx + tw + 1, ty + base), (0, 0, 0), -1)
        cv2.putText(rgb, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    _FLAG_RGB if flagged else _BAR_RGB, t, cv2.LINE_AA)
    return rgb


def predictions_frame(results: list) -> pd.DataFrame:
    """Return the predictions table (one row per successful result, input order, PREDICTION_COLUMNS)."""
    rows = [r.row for r in sorted(results, key=lambda r: r.index) if r.ok]
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def errors_frame(results: list) -> pd.DataFrame:
    """Return the errors table: ``file, reason`` per failed input, input order."""
    rows = [{"file": r.file, "reason": r.error} for r in sorted(results, key=lambda r: r.index) if not r.ok]
    return pd.DataFrame(rows, columns=list(ERROR_COLUMNS))


def per_patient_frame(pred: pd.DataFrame) -> pd.DataFrame:
    """Return the longitudinal table: the rows with both a patient id and a date, per patient
    sorted by date (then id), with ``study_index`` (0 = first), ``days_since_first`` and the change
    of the height difference since the patient's first study (px, mm, normalised; NaN where the
    first or the current value is NaN). Empty (with columns) when no row qualifies."""
    pid = pred["patient_id"].fillna("").astype(str)
    date = pred["date"].fillna("").astype(str)
    sel = pred[(pid != "") & (date != "")].copy()
    if sel.empty:
        return pd.DataFrame(columns=list(PER_PATIENT_COLUMNS))
    sel["patient_id"] = sel["patient_id"].astype(str)
    sel["_date"] = pd.to_datetime(sel["date"], format="%Y-%m-%d")
    sel = sel.sort_values(["patient_id", "_date", "id"], kind="stable")
    parts = []
    for _, g in sel.groupby("patient_id", sort=True):
        g = g.copy()
        g["study_index"] = np.arange(len(g))
        g["days_since_first"] = (g["_date"] - g["_date"].iloc[0]).dt.days
        for unit in ("px", "mm", "norm"):
            col = f"height_diff_{unit}"
            g[f"change_{unit}_since_first"] = g[col].astype(float) - float(g[col].iloc[0])
        parts.append(g)
    return pd.concat(parts)[list(PER_PATIENT_COLUMNS)].reset_index(drop=True)


def write_outputs(out_dir: str | Path, results: list, info: dict | None = None) -> dict:
    """Write every output file for ``results`` (a list of ImageResult) into ``out_dir``.

    Returns counts: ``{"n_images", "n_ok", "n_errors", "n_flagged", "per_patient"}``.
    Tables are written atomically (temporary file + rename).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred = predictions_frame(results)
    errors = errors_frame(results)
    _write_csv(pred, out / "predictions.csv")
    _write_csv(errors, out / "errors.csv")
    for r in results:
        if not r.ok:
            continue
        if r.mask_png:
            (out / "masks").mkdir(exist_ok=True)
            (out / "masks" / f"{r.id}.png").write_bytes(r.mask_png)
        if r.overlay_png:
            (out / "overlays").mkdir(exist_ok=True)
            (out / "overlays" / f"{r.id}.png").write_bytes(r.overlay_png)
    pp = per_patient_frame(pred)
    if not pp.empty:
        _write_csv(pp, out / "per_patient.csv")
    counts = {"n_images": len(results), "n_ok": int(len(pred)), "n_errors": int(len(errors)),
              "n_flagged": int((pred["flag"] == True).sum()),  # noqa: E712 (object column of True/False/None)
              "per_patient": not pp.empty}
    if info is not None:
        text = json.dumps({**info, **counts}, indent=2, default=str)
        _write_text(text, out / "predict.json")
    return counts


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    _write_text(df.to_csv(index=False, float_format="%.12g"), path)


def _write_text(text: str, path: Path) -> None:
    write_bytes_atomic(path, text.encode())


__all__ = [
    "ERROR_COLUMNS",
    "PER_PATIENT_COLUMNS",
    "PREDICTION_COLUMNS",
    "encode_png",
    "errors_frame",
    "per_patient_frame",
    "predictions_frame",
    "render_overlay",
    "write_outputs",
]
