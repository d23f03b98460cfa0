"""Hemidiaphragm points derived from lung masks, and building a dataset folder from images + masks.

The rule (:func:`derive_dome_points`), applied to each lung label separately (1 = patient's right
lung on the image left, 2 = patient's left lung on the image right), on its largest 8-connected
region:

1. *Lower border*: for every image column the lung occupies, the lowest lung pixel, taken at its
   pixel centre ``(x, y)`` (stored px; the true boundary lies half a pixel lower).
2. The lung's columns are split at the middle of its x-range into a *lateral* half (towards the
   chest wall: smaller x for the right lung, larger x for the left lung) and a *medial* half.
   *Costophrenic end*: the lowest border point of the lateral half (ties: the most lateral).
3. *Medial end*: walking medially from the costophrenic end along the vertices of the border's
   lower convex hull (the hull on the side of larger y), the first hull vertex such that some
   border point between it and the previous vertex lies at least ``MIN_DOME_DEPTH`` = 1 px above
   the straight line (chord) joining the two. Shallower pockets are pixel steps and are skipped
   (the previous vertex then becomes the lateral end of the chord). For the patient's right lung
   this vertex is the cardiophrenic angle; for the left lung it is the notch where the
   hemidiaphragm meets the heart border, which in SCR-style masks often lies *lateral* of the
   lung's x-middle -- that is why "the lowest point of the medial half" is not used.
4. The landmark is the border point between the two ends farthest above their chord (perpendicular
   distance) -- the apex of the dome; on a pixelated flat top, the middle of the run of border
   points within ``PLATEAU_TOLERANCE`` = 0.5 px of that greatest height. Rule name ``"chord"``.
5. Fallback, rule ``"highest"``: the lung spans fewer than 3 columns (then the highest border
   point), or no dome at least 1 px deep exists medially of the costophrenic end (then the
   highest border point between the costophrenic end and the lowest point of the medial half;
   ties: the middle of the tied run -- e.g. the centre of a flat lower border).
6. A label absent from the mask gives NaN and rule ``"absent"``.

This is the chord rule the JSRT/SCR developer set used on its contour landmarks (costophrenic
angle to medial end), with both ends found geometrically on the pixel border. On the 246 annotated
JSRT/SCR masks the derived points lie a median of 5.5 px (right) and 4.9 px (left) from the manifest
points, 94 % / 93 % within 15 px (512-px images; the contour landmarks themselves are about 10 px
apart, and the manifest points sit on them).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from raysearch.data.dataset import MANIFEST, MANIFEST_COLUMNS, Dataset, load_dataset
from raysearch.data.errors import DatasetError, ImageError
from raysearch.data.imageio import IMAGE_SUFFIXES, MASK_SUFFIXES, decode_mask, read_image

RULES_FILE = "dome_rules.csv"
MIN_COLUMNS = 3
PLATEAU_TOLERANCE = 0.5
MIN_DOME_DEPTH = 1.0
"""A dome must rise at least this far (stored px) above its chord; shallower pockets are pixel steps."""


def _largest_region(lung: np.ndarray) -> np.ndarray:
    n, comp, stats, _ = cv2.connectedComponentsWithStats(lung.astype(np.uint8), connectivity=8)
    if n <= 2:
        return lung
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return comp == biggest


def lower_border(lung: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the lower border of a boolean ``(H, W)`` lung: ``(xs, ys)`` int arrays, one point per
    occupied column (ascending x), y = row of the lowest lung pixel (stored px, pixel centres)."""
    cols = np.flatnonzero(lung.any(axis=0))
    h = lung.shape[0]
    ys = h - 1 - np.argmax(lung[::-1, cols], axis=0)
    return cols, ys


def _highest(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    top = np.flatnonzero(ys == ys.min())
    return float(np.median(xs[top])), float(ys.min())


def _lower_hull(xs: np.ndarray, ys: np.ndarray) -> list[int]:
    """Indices of the lower convex hull (the side of larger y) of points sorted by x (monotone chain)."""
    hull: list[int] = []
    for i in range(len(xs)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a])
            if cross < 0:  # b lies below the line a-i (y down): b stays on the hull
                break
            hull.pop()
        hull.append(i)
    return hull


def _pocket(xs: np.ndarray, ys: np.ndarray, a: int, b: int) -> tuple[int, float]:
    """Border index strictly between a < b farthest above the chord a-b, and that distance (px)."""
    if b - a < 2:
        return -1, 0.0
    x1, y1, x2, y2 = float(xs[a]), float(ys[a]), float(xs[b]), float(ys[b])
    ix, iy = xs[a + 1 : b].astype(np.float64), ys[a + 1 : b].astype(np.float64)
    chord_y = y1 + (y2 - y1) * (ix - x1) / (x2 - x1)
    above = (chord_y - iy) * (x2 - x1) / np.hypot(x2 - x1, y2 - y1)  # perpendicular; y down
    k = int(np.argmax(above))
    # A pixelated dome has a flat top: take the middle of the run of points within half a pixel
    # of the greatest height that contains the farthest one.
    near = above >= above[k] - PLATEAU_TOLERANCE
    lo = k
    while lo > 0 and near[lo - 1]:
        lo -= 1
    hi = k
    while hi + 1 < near.size and near[hi + 1]:
        hi += 1
    mid = (lo + hi) // 2
    return a + 1 + mid, float(above[k])


def dome_point(lung: np.ndarray, side: str) -> tuple[tuple[float, float], str]:
    """Apply the module's rule to one boolean ``(H, W)`` lung of ``side`` ``"right"`` or ``"left"``
    (patient's side). Returns ``((x, y) stored px, rule)`` with rule ``"chord"`` or ``"highest"``."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left' (the patient's side), got {side!r}")
    xs, ys = lower_border(_largest_region(lung))
    if xs.size < MIN_COLUMNS:
        return _highest(xs, ys), "highest"
    mid = (xs[0] + xs[-1]) / 2.0
    # The patient's right lung lies on the image left: its chest wall (lateral side) has the smaller x.
    lateral = xs < mid if side == "right" else xs > mid
    lat = np.flatnonzero(lateral)
    med = np.flatnonzero(~lateral)
    lat = lat[ys[lat] == ys[lat].max()]
    med = med[ys[med] == ys[med].max()]
    # Ties: the outermost point (most lateral costophrenic end, most medial medial end).
    cp, md = (int(lat[0]), int(med[-1])) if side == "right" else (int(lat[-1]), int(med[0]))

    hull = sorted(set(_lower_hull(xs, ys)) | {cp})
    at = hull.index(cp)
    walk = hull[at:] if side == "right" else hull[: at + 1][::-1]  # from the costophrenic end medially
    for u, v in zip(walk[:-1], walk[1:]):
        k, depth = _pocket(xs, ys, min(u, v), max(u, v))
        if depth >= MIN_DOME_DEPTH:
            return (float(xs[k]), float(ys[k])), "chord"
    a, b = sorted((cp, md))
    return _highest(xs[a : b + 1], ys[a : b + 1]), "highest"


def derive_dome_points(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Derive one hemidiaphragm point per side from a uint8 ``(H, W)`` label mask (1 right, 2 left).

    Returns ``(landmarks, rules)``: float64 ``(2, 2)`` rows ``[right, left]``, columns ``[x, y]`` in
    stored px (NaN where the label is absent) and the rule that made each point
    (``"chord"``, ``"highest"`` or ``"absent"``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) label mask, got shape {labels.shape}")
    landmarks = np.full((2, 2), np.nan)
    rules = []
    for i, (side, label) in enumerate((("right", 1), ("left", 2))):
        lung = labels == label
        if not lung.any():
            rules.append("absent")
            continue
        landmarks[i], rule = dome_point(lung, side)
        rules.append(rule)
    return landmarks, rules


def _list_files(folder: Path, suffixes: tuple[str, ...], what: str, problems: list[str]) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in suffixes:
            continue
        if p.stem in by_stem:
            problems.append(f"{p}: two {what} files share the stem {p.stem!r} (also {by_stem[p.stem].name})")
            continue
        by_stem[p.stem] = p
    return by_stem


def _fmt(v: float) -> str:
    return "" if np.isnan(v) else f"{v:g}"


def import_masks(
    images_dir: str | Path,
    masks_dir: str | Path,
    out: str | Path,
    spacing_mm: float | None = None,
    force: bool = False,
) -> Dataset:
    """Build a dataset folder at ``out`` from images plus lung masks (matched by file stem) without landmarks.

    Writes ``images/<file>`` (copied unchanged), ``masks_lr/<id>.png`` (label mask),
    ``manifest.csv`` (landmarks from :func:`derive_dome_points`; ``pixel_spacing_mm`` from
    ``spacing_mm``, else from DICOM, else empty) and ``dome_rules.csv`` (id, side, rule).
    Every pair is read and checked before anything is written; all problems raise one
    :class:`DatasetError`. A non-empty ``out`` is refused unless ``force`` (files are overwritten).
    Returns the written folder, loaded and validated.
    """
    images_dir, masks_dir, out = Path(images_dir), Path(masks_dir), Path(out)
    for d, flag in ((images_dir, "--images"), (masks_dir, "--masks")):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: {flag} folder not found")
    if spacing_mm is not None and not (spacing_mm > 0 and np.isfinite(spacing_mm)):
        raise ValueError(f"spacing must be a positive number of mm per pixel, got {spacing_mm}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(
            f"{out}: exists and is not empty; choose another --out, empty it, or pass --force to overwrite its files"
        )

    problems: list[str] = []
    images = _list_files(images_dir, IMAGE_SUFFIXES, "image", problems)
    masks = _list_files(masks_dir, MASK_SUFFIXES, "mask", problems)
    for stem in sorted(images.keys() - masks.keys()):
        problems.append(f"{images[stem]}: no mask with stem {stem!r} in {masks_dir}")
    for stem in sorted(masks.keys() - images.keys()):
        problems.append(f"{masks[stem]}: no image with stem {stem!r} in {images_dir}")
    if not images and not masks:
        problems.append(f"{images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")

    rows = []
    for stem in sorted(images.keys() & masks.keys()):
        try:
            image = read_image(images[stem])
            labels, _ = decode_mask(masks[stem], expected_hw=image.pixels.shape)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        landmarks, rules = derive_dome_points(labels)
        spacing = spacing_mm if spacing_mm is not None else image.pixel_spacing_mm
        rows.append((stem, landmarks, rules, spacing))
    if problems:
        raise DatasetError(problems, root=images_dir)

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks_lr").mkdir(parents=True, exist_ok=True)
    manifest_rows, rule_rows = [], []
    for stem, landmarks, rules, spacing in rows:
        image_rel = f"images/{images[stem].name}"
        mask_rel = f"masks_lr/{stem}.png"
        shutil.copyfile(images[stem], out / image_rel)
        labels, _ = decode_mask(masks[stem])
        if not cv2.imwrite(str(out / mask_rel), labels):
            raise OSError(f"{out / mask_rel}: could not be written")
        (rx, ry), (lx, ly) = landmarks
        manifest_rows.append({
            "id": stem, "image": image_rel, "mask": mask_rel,
            "right_x": _fmt(rx), "right_y": _fmt(ry), "left_x": _fmt(lx), "left_y": _fmt(ly),
            "patient_id": stem, "pixel_spacing_mm": "" if spacing is None else f"{spacing:g}",
            "orig_scale": "1", "view": "",
        })
        rule_rows += [{"id": stem, "side": side, "rule": rule} for side, rule in zip(("right", "left"), rules)]
    _write_csv(out / RULES_FILE, ["id", "side", "rule"], rule_rows)
    _write_csv(out / MANIFEST, list(MANIFEST_COLUMNS), manifest_rows)  # last: its presence marks completion
    return load_dataset(out)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
