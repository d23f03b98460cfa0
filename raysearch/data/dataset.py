"""The dataset folder format, its loader and its validator.

Dataset folder format
---------------------
A dataset is a folder holding ``manifest.csv`` and the files it names. ``manifest.csv`` is a
comma-separated UTF-8 file with a header row; row numbers in messages are the file's line
numbers, as a spreadsheet shows them (the header is row 1, the first image row 2). Blank lines
are skipped; columns not listed below are ignored.

Required columns:

* ``id`` -- unique, non-empty name of the image;
* ``image`` -- path of the radiograph, relative to the folder (absolute paths are rejected so the
  folder stays self-contained);
* ``mask`` -- path of the lung mask, relative to the folder, same size as the image;
* ``right_x, right_y, left_x, left_y`` -- one hemidiaphragm landmark per side in pixels of the
  stored image (pixel centres at integers, x right, y down; see :mod:`raysearch.geometry`).
  Both values of a side empty = that side is not annotated (NaN). "right"/"left" are the
  **patient's** sides; radiological convention: the patient's right appears on the image's left.

Optional columns:

* ``patient_id`` -- groups images of one patient for splitting (empty/absent: the ``id``);
* ``pixel_spacing_mm`` -- mm per stored pixel (empty/absent: DICOM PixelSpacing/ImagerPixelSpacing
  when the image is DICOM, else unknown; a manifest value wins over the DICOM one);
* ``orig_scale`` -- stored px per original px, > 0 (empty/absent: 1);
* ``view`` -- free text such as ``PA`` or ``AP`` (empty/absent: ``""``).

Images: 8- or 16-bit grayscale PNG, JPEG or TIFF, or DICOM; gray images saved as RGB are accepted.
They are normalised to float32 ``[0, 1]`` as described in :mod:`raysearch.data.imageio` (raster:
divided by the type's maximum; DICOM: modality LUT, MONOCHROME1 inverted, then min-max).

Masks: a label image (0 background, 1 patient's right lung, 2 patient's left lung) or a binary mask
(0/255 or 0/1) whose two largest connected regions are assigned by position (centroid with the
smaller x = image left = patient's right = label 1).

Validation (:func:`load_dataset`, :func:`check_dataset`) reads and decodes every image and mask
once and collects *all* problems before raising one :class:`DatasetError`. It rejects: a missing
manifest or required column; duplicate ids; empty, non-numeric, non-finite or half-filled
landmark pairs, spacing or scale; missing, empty, truncated, colour, constant or unsupported
image files; DICOM without pixel data; a mask of another size than its image, with values other
than allowed, or with no lung; a landmark outside the image; a label image whose label 1 lies to
the image right of label 2, and a right landmark to the image right of the left one (both mean
the sides are swapped).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raysearch.data.errors import DatasetError, ImageError
from raysearch.data.imageio import decode_mask, read_image, read_mask

MANIFEST = "manifest.csv"
REQUIRED_COLUMNS = ("id", "image", "mask", "right_x", "right_y", "left_x", "left_y")
OPTIONAL_COLUMNS = ("patient_id", "pixel_spacing_mm", "orig_scale", "view")
MANIFEST_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SIDE_COLUMNS = (("right", "right_x", "right_y"), ("left", "left_x", "left_y"))


@dataclass(frozen=True)
class Record:
    """One manifest row, validated.

    ``landmarks``: float64 ``(2, 2)``, rows ``[right, left]``, columns ``[x, y]`` in stored-image
    pixels; a row of NaN = that side not annotated (read-only array).
    ``pixel_spacing_mm``: mm per stored pixel or ``None``; ``orig_scale``: stored px per original px.
    ``row``: line number in ``manifest.csv`` (header = 1).
    """

    id: str
    image_path: Path
    mask_path: Path
    landmarks: np.ndarray
    patient_id: str
    pixel_spacing_mm: float | None
    orig_scale: float
    view: str
    row: int

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (
            (self.id, self.image_path, self.mask_path, self.patient_id, self.pixel_spacing_mm)
            == (other.id, other.image_path, other.mask_path, other.patient_id, other.pixel_spacing_mm)
            and (self.orig_scale, self.view, self.row) == (other.orig_scale, other.view, other.row)
            and np.array_equal(self.landmarks, other.landmarks, equal_nan=True)
        )

    def __hash__(self) -> int:
        return hash((self.id, self.image_path, self.mask_path, self.row))


@dataclass
class Dataset:
    """A validated dataset folder: records in manifest order and a content checksum.

    ``checksum``: sha256 (hex) over the manifest bytes followed by each row's image and mask bytes.
    """

    root: Path
    name: str
    records: list[Record]
    checksum: str

    @property
    def ids(self) -> list[str]:
        """Image ids in manifest order."""
        return [r.id for r in self.records]

    @property
    def groups(self) -> list[str]:
        """Patient id of each record, aligned with :attr:`ids` (for patient-grouped splits)."""
        return [r.patient_id for r in self.records]

    @property
    def by_id(self) -> dict[str, Record]:
        """Records keyed by id."""
        return {r.id: r for r in self.records}

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class CheckReport:
    """Outcome of :func:`check_dataset`.

    ``dataset``: the loaded dataset, or ``None`` when there are problems; ``problems``: one line per
    problem naming the row/file; ``summary``: counts, image sizes, spacing, landmark counts per side
    and per-side lung areas (px, and cm^2 where the spacing is known) over the readable rows.
    """

    dataset: Dataset | None
    problems: list[str]
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the folder is usable (no problems)."""
        return not self.problems

    def format(self) -> str:
        """Human-readable summary followed by every problem, one per line."""
        s = self.summary
        lines = [f"dataset {s.get('root', '?')}"]
        if "rows" in s:
            lines.append(
                f"  rows: {s['rows']}  readable image+mask pairs: {s['readable']}  patients: {s['patients']}"
            )
            sizes = ", ".join(f"{k} ({v})" for k, v in s["image_sizes"].items()) or "-"
            lines.append(f"  image sizes (HxW px): {sizes}")
            spacing = ", ".join(f"{k} mm ({v})" for k, v in s["pixel_spacing_mm"].items()) or "-"
            lines.append(f"  pixel spacing: {spacing}")
            lm = s["landmarks"]
            lines.append(f"  landmarks annotated: right {lm['right']}/{s['rows']}, left {lm['left']}/{s['rows']}")
            for side in ("right", "left"):
                area = s["lung_area"][side]
                if area["n"] == 0:
                    lines.append(f"  {side} lung area: -")
                    continue
                text = f"  {side} lung area (n={area['n']}): px mean {area['px_mean']:.0f} min {area['px_min']:.0f} max {area['px_max']:.0f}"
                if area.get("cm2_n"):
                    text += (
                        f"; cm^2 (n={area['cm2_n']}) mean {area['cm2_mean']:.1f} "
                        f"min {area['cm2_min']:.1f} max {area['cm2_max']:.1f}"
                    )
                lines.append(text)
            if s.get("ignored_columns"):
                lines.append(f"  ignored columns: {', '.join(s['ignored_columns'])}")
        if self.dataset is not None:
            lines.append(f"  checksum: {self.dataset.checksum}")
        if self.problems:
            n = len(self.problems)
            lines.append(f"NOT USABLE: {n} problem{'s' if n != 1 else ''}")
            lines.extend(self.problems)
        else:
            lines.append("OK: usable")
        return "\n".join(lines)


def _one_line(exc: Exception) -> str:
    """An error message on one line (pydicom's messages can span several)."""
    return " ".join(str(exc).splitlines())


def _parse_float(text: str) -> float | None | str:
    """Return the float, ``None`` for empty, or an error string."""
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return f"is not a number: {text!r}"
    if not math.isfinite(value):
        return f"is not a finite number: {text!r}"
    return value


def _summarise(root: Path, rows: int, stats: list[dict], ignored: list[str]) -> dict:
    sizes: dict[str, int] = {}
    spacing: dict[str, int] = {}
    for st in stats:
        key = f"{st['hw'][0]}x{st['hw'][1]}"
        sizes[key] = sizes.get(key, 0) + 1
        sp = "unknown" if st["spacing"] is None else f"{st['spacing']:g}"
        spacing[sp] = spacing.get(sp, 0) + 1
    lung_area = {}
    for side, label in (("right", 1), ("left", 2)):
        px = np.array([st["areas"][label] for st in stats if st["areas"][label] > 0], dtype=np.float64)
        cm2 = np.array(
            [st["areas"][label] * st["spacing"] ** 2 / 100.0 for st in stats
             if st["areas"][label] > 0 and st["spacing"] is not None],
            dtype=np.float64,
        )
        entry: dict = {"n": int(px.size)}
        if px.size:
            entry.update(px_mean=float(px.mean()), px_min=float(px.min()), px_max=float(px.max()))
        entry["cm2_n"] = int(cm2.size)
        if cm2.size:
            entry.update(cm2_mean=float(cm2.mean()), cm2_min=float(cm2.min()), cm2_max=float(cm2.max()))
        lung_area[side] = entry
    return {
        "root": str(root),
        "rows": rows,
        "readable": len(stats),
        "patients": len({st["patient_id"] for st in stats}),
        "image_sizes": sizes,
        "pixel_spacing_mm": spacing,
        "landmarks": {side: sum(1 for st in stats if st["annotated"][i]) for i, side in enumerate(("right", "left"))},
        "lung_area": lung_area,
        "ignored_columns": ignored,
    }


def _scan(root: Path) -> tuple[list[Record], list[str], dict, str]:
    """Read and validate everything; return (records, problems, summary, checksum)."""
    problems: list[str] = []
    summary: dict = {"root": str(root)}
    if not root.is_dir():
        return [], [f"{root}: dataset folder not found (expected a folder holding {MANIFEST})"], summary, ""
    manifest_path = root / MANIFEST
    try:
        manifest_bytes = manifest_path.read_bytes()
    except FileNotFoundError:
        return [], [f"{MANIFEST}: file not found in {root} (every dataset folder needs one)"], summary, ""
    digest = hashlib.sha256(manifest_bytes)
    try:
        text = manifest_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"{MANIFEST}: not UTF-8 text ({exc})"], summary, ""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        found = ", ".join(header) if header else "nothing (empty file)"
        return [], [f"{MANIFEST}: missing required column(s) {', '.join(missing)} (found: {found})"], summary, ""
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        return [], [f"{MANIFEST}: column(s) {', '.join(dupes)} appear more than once in the header"], summary, ""
    ignored = [h for h in header if h not in MANIFEST_COLUMNS]

    records: list[Record] = []
    stats: list[dict] = []
    seen_ids: dict[str, int] = {}
    n_rows = 0
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        n_rows += 1
        if len(fields) != len(header):
            problems.append(f"{MANIFEST} row {line}: has {len(fields)} fields, the header has {len(header)}")
            continue
        row = {h: v.strip() for h, v in zip(header, fields)}
        rid = row["id"]
        where = f"{MANIFEST} row {line} (id={rid})"
        row_problems: list[str] = []
        if not rid:
            row_problems.append(f"{MANIFEST} row {line}: id is empty")
        elif rid in seen_ids:
            row_problems.append(f"{where}: duplicate id, also on row {seen_ids[rid]}")
        else:
            seen_ids[rid] = line

        landmarks = np.full((2, 2), np.nan)
        for i, (side, cx, cy) in enumerate(SIDE_COLUMNS):
            vx, vy = _parse_float(row[cx]), _parse_float(row[cy])
            bad = [(c, v) for c, v in ((cx, vx), (cy, vy)) if isinstance(v, str)]
            for c, msg in bad:
                row_problems.append(f"{where}: {c} {msg}")
            if bad:
                continue
            if (vx is None) != (vy is None):
                given, empty = (cx, cy) if vy is None else (cy, cx)
                row_problems.append(
                    f"{where}: half-filled {side} landmark ({given} = {row[given]!r}, {empty} empty); "
                    "give both coordinates or leave both empty"
                )
            elif vx is not None:
                landmarks[i] = (vx, vy)

        spacing = None
        if row.get("pixel_spacing_mm", ""):
            v = _parse_float(row["pixel_spacing_mm"])
            if isinstance(v, str):
                row_problems.append(f"{where}: pixel_spacing_mm {v}")
            elif v is not None and v <= 0:
                row_problems.append(f"{where}: pixel_spacing_mm must be > 0, got {v}")
            else:
                spacing = v
        orig_scale = 1.0
        if row.get("orig_scale", ""):
            v = _parse_float(row["orig_scale"])
            if isinstance(v, str):
                row_problems.append(f"{where}: orig_scale {v}")
            elif v is not None and v <= 0:
                row_problems.append(f"{where}: orig_scale must be > 0, got {v}")
            else:
                orig_scale = float(v)

        paths: dict[str, Path | None] = {}
        for col in ("image", "mask"):
            rel = row[col]
            if not rel:
                row_problems.append(f"{where}: {col} path is empty")
                paths[col] = None
            elif Path(rel).is_absolute():
                row_problems.append(f"{where}: {col} path {rel!r} is absolute; give it relative to the dataset folder")
                paths[col] = None
            else:
                paths[col] = root / rel

        image = mask = None
        kind = ""
        blobs = {}
        for col in ("image", "mask"):
            p = paths[col]
            if p is None:
                continue
            try:
                blobs[col] = p.read_bytes()
            except FileNotFoundError:
                row_problems.append(f"{row[col]}: file not found ({where})")
            except OSError as exc:
                row_problems.append(f"{row[col]}: cannot be opened, {exc.strerror or exc} ({where})")
        if "image" in blobs:
            try:
                image = read_image(paths["image"], data=blobs["image"], name=row["image"])
            except ImageError as exc:
                row_problems.append(f"{_one_line(exc)} ({where})")
        if "mask" in blobs:
            try:
                expected = image.pixels.shape if image is not None else None
                mask, kind = decode_mask(paths["mask"], expected, data=blobs["mask"], name=row["mask"])
            except ImageError as exc:
                row_problems.append(f"{_one_line(exc)} ({where})")
        for col in ("image", "mask"):
            if col in blobs:
                digest.update(blobs[col])

        if image is not None:
            h, w = image.pixels.shape
            if spacing is None:
                spacing = image.pixel_spacing_mm
            for i, (side, cx, cy) in enumerate(SIDE_COLUMNS):
                x, y = landmarks[i]
                if not np.isnan(x) and not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
                    row_problems.append(
                        f"{where}: {side} landmark ({x:g}, {y:g}) is outside the image "
                        f"({w}x{h} px, x in [-0.5, {w - 0.5}], y in [-0.5, {h - 0.5}])"
                    )
            if not np.isnan(landmarks).any() and landmarks[0, 0] > landmarks[1, 0]:
                row_problems.append(
                    f"{where}: right landmark x = {landmarks[0, 0]:g} lies to the image right of the left landmark "
                    f"x = {landmarks[1, 0]:g}; the patient's right appears on the image's left, are the sides swapped?"
                )
        if mask is not None:
            flat = mask.ravel()
            areas = np.bincount(flat, minlength=3)
            if kind == "labels" and areas[1] and areas[2]:
                column = np.broadcast_to(np.arange(mask.shape[1], dtype=np.float64), mask.shape).ravel()
                centroid_x = np.bincount(flat, weights=column, minlength=3)[1:3] / areas[1:3]
                if centroid_x[0] > centroid_x[1]:
                    row_problems.append(
                        f"{row['mask']}: label 1 (patient's right lung) lies to the image right of label 2; "
                        f"the patient's right appears on the image's left, are the labels swapped? ({where})"
                    )
            if image is not None:
                stats.append({
                    "hw": image.pixels.shape,
                    "spacing": spacing,
                    "areas": areas,
                    "annotated": (not np.isnan(landmarks[0, 0]), not np.isnan(landmarks[1, 0])),
                    "patient_id": row.get("patient_id") or rid,
                })

        problems.extend(row_problems)
        if not row_problems:
            landmarks.setflags(write=False)
            records.append(Record(
                id=rid,
                image_path=paths["image"],
                mask_path=paths["mask"],
                landmarks=landmarks,
                patient_id=row.get("patient_id") or rid,
                pixel_spacing_mm=spacing,
                orig_scale=orig_scale,
                view=row.get("view", ""),
                row=line,
            ))
    if n_rows == 0:
        problems.append(f"{MANIFEST}: has a header but no image rows")
    summary = _summarise(root, n_rows, stats, ignored)
    return records, problems, summary, digest.hexdigest()


def check_dataset(root: str | Path) -> CheckReport:
    """Validate a dataset folder without raising; return a :class:`CheckReport` with every problem."""
    root = Path(root)
    records, problems, summary, checksum = _scan(root)
    dataset = None if problems else Dataset(root, root.resolve().name, records, checksum)
    return CheckReport(dataset, problems, summary)


def load_dataset(root: str | Path) -> Dataset:
    """Load and validate a dataset folder (format in this module's docstring).

    Returns a :class:`Dataset` with records in manifest order. Reads and decodes every image and
    mask once; raises one :class:`DatasetError` listing *all* problems found over all rows.
    """
    report = check_dataset(root)
    if report.dataset is None:
        raise DatasetError(report.problems, root=Path(root))
    return report.dataset


def load_sample(record: Record) -> dict:
    """Read one record into the sample contract (docs/interfaces.md).

    Returns ``{"id": str, "image": float32 (H, W) in [0, 1], "mask": uint8 (H, W) labels
    {0, 1 right, 2 left}, "landmarks": float64 (2, 2) [right, left] x [x, y] stored px, NaN = absent}``.
    """
    image = read_image(record.image_path).pixels
    mask = read_mask(record.mask_path, expected_hw=image.shape)
    return {
        "id": record.id,
        "image": image,
        "mask": mask,
        "landmarks": np.array(record.landmarks, dtype=np.float64),
    }
