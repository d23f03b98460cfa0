"""The dataset folder format: round trip, checksum, and every problem the validator promises to report."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from raysearch.data.dataset import MANIFEST_COLUMNS, check_dataset, load_dataset, load_sample
from raysearch.data.errors import DatasetError
from tests.data.test_imageio import gradient, write_dicom

H, W = 40, 60
RIGHT, LEFT = (15.0, 30.0), (44.0, 30.0)


def label_mask(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[5:35, 4:27] = 1   # image left = patient's right
    m[5:35, 33:56] = 2  # image right = patient's left
    return m


def write_manifest(root: Path, rows: list[dict], columns: tuple[str, ...] = MANIFEST_COLUMNS) -> None:
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def base_row(i: int, image: str | None = None) -> dict:
    rid = f"P{i:03d}"
    return {
        "id": rid, "image": image or f"images/{rid}.png", "mask": f"masks/{rid}.png",
        "right_x": RIGHT[0], "right_y": RIGHT[1], "left_x": LEFT[0], "left_y": LEFT[1],
        "patient_id": rid, "pixel_spacing_mm": 0.5, "orig_scale": 0.25, "view": "PA",
    }


def make_dataset(root: Path, n: int = 3) -> list[dict]:
    """A valid folder of n 8-bit PNG rows P001..; returns the manifest rows."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(1, n + 1):
        row = base_row(i)
        cv2.imwrite(str(root / row["image"]), gradient(H, W))
        cv2.imwrite(str(root / row["mask"]), label_mask())
        rows.append(row)
    write_manifest(root, rows)
    return rows


def test_round_trip_all_formats(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    g8, g16 = gradient(H, W), gradient(H, W, 60000, np.uint16)
    dcm_raw = gradient(H, W, 4000, np.uint16)
    cv2.imwrite(str(root / "images/a.png"), g8)
    cv2.imwrite(str(root / "images/b.png"), g16)
    cv2.imwrite(str(root / "images/c.tif"), g16)
    cv2.imwrite(str(root / "images/d.jpg"), g8, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(root / "images/e.png"), cv2.merge([g8, g8, g8]))
    write_dicom(root / "images/f.dcm", dcm_raw, "MONOCHROME1", PixelSpacing=[0.3, 0.3])
    write_dicom(root / "images/g.dcm", dcm_raw, "MONOCHROME2", PixelSpacing=[0.3, 0.3])
    labels = label_mask()
    cv2.imwrite(str(root / "masks/labels.png"), labels)
    cv2.imwrite(str(root / "masks/binary.png"), np.where(labels > 0, 255, 0).astype(np.uint8))

    rows = []
    for i, name in enumerate(["a.png", "b.png", "c.tif", "d.jpg", "e.png", "f.dcm", "g.dcm"], start=1):
        row = base_row(i, image=f"images/{name}")
        row["mask"] = "masks/binary.png" if name == "b.png" else "masks/labels.png"
        rows.append(row)
    rows[0]["patient_id"] = rows[1]["patient_id"] = "A"
    rows[1]["orig_scale"] = ""                  # default 1
    rows[2].update(right_x="", right_y="", left_x="", left_y="", view="", patient_id="")  # not annotated
    rows[5]["pixel_spacing_mm"] = ""           # taken from DICOM
    write_manifest(root, rows)

    ds = load_dataset(root)
    assert ds.name == "ds" and len(ds) == 7
    assert ds.ids == ["P001", "P002", "P003", "P004", "P005", "P006", "P007"]
    assert ds.groups == ["A", "A", "P003", "P004", "P005", "P006", "P007"]
    recs = ds.by_id
    assert [r.row for r in ds.records] == [2, 3, 4, 5, 6, 7, 8]  # spreadsheet rows, header = 1
    np.testing.assert_array_equal(recs["P001"].landmarks, [RIGHT, LEFT])
    assert np.isnan(recs["P003"].landmarks).all() and recs["P003"].view == ""
    assert recs["P001"].orig_scale == 0.25 and recs["P002"].orig_scale == 1.0
    assert recs["P001"].pixel_spacing_mm == 0.5
    assert recs["P006"].pixel_spacing_mm == pytest.approx(0.3)  # from DICOM
    assert recs["P007"].pixel_spacing_mm == 0.5  # manifest wins over DICOM
    assert recs["P001"].image_path == root / "images/a.png" and recs["P001"].view == "PA"

    expected_images = {
        "P001": g8 / 255.0, "P002": g16 / 65535.0, "P003": g16 / 65535.0, "P005": g8 / 255.0,
        "P006": 1.0 - dcm_raw / 4000.0, "P007": dcm_raw / 4000.0,
    }
    for rec in ds.records:
        s = load_sample(rec)
        assert set(s) == {"id", "image", "mask", "landmarks"} and s["id"] == rec.id
        assert s["image"].dtype == np.float32 and s["image"].shape == (H, W)
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["mask"].dtype == np.uint8
        np.testing.assert_array_equal(s["mask"], labels)  # binary b.png split into the same labels
        assert s["landmarks"].dtype == np.float64 and s["landmarks"].shape == (2, 2)
        np.testing.assert_array_equal(s["landmarks"], rec.landmarks)
        if rec.id in expected_images:
            np.testing.assert_allclose(s["image"], expected_images[rec.id], atol=1e-6)
    jpeg = load_sample(recs["P004"])["image"]
    assert np.abs(jpeg - g8 / 255.0).max() < 0.03


def test_checksum_is_sha256_of_manifest_and_files(tmp_path):
    rows = make_dataset(tmp_path)
    ds = load_dataset(tmp_path)
    h = hashlib.sha256((tmp_path / "manifest.csv").read_bytes())
    for row in rows:
        h.update((tmp_path / row["image"]).read_bytes())
        h.update((tmp_path / row["mask"]).read_bytes())
    assert ds.checksum == h.hexdigest()
    changed = label_mask()
    changed[6, 6] = 0
    cv2.imwrite(str(tmp_path / "masks/P003.png"), changed)
    assert load_dataset(tmp_path).checksum != ds.checksum


def _set(root: Path, row_id: str, **values) -> None:
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["id"] == row_id:
            row.update(values)
    write_manifest(root, rows)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _swap_labels(root: Path) -> None:
    m = label_mask()
    cv2.imwrite(str(root / "masks/P002.png"), np.choose(m, [0, 2, 1]).astype(np.uint8))


def _drop_column(root: Path, column: str) -> None:
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    write_manifest(root, rows, tuple(c for c in MANIFEST_COLUMNS if c != column))


def _dicom_without_pixels(root: Path) -> None:
    write_dicom(root / "images/P002.dcm", gradient(H, W, 100, np.uint16), with_pixels=False)
    _set(root, "P002", image="images/P002.dcm")


def _bad_mask_values(root: Path) -> None:
    m = label_mask()
    m[0, 0] = 5
    cv2.imwrite(str(root / "masks/P002.png"), m)


def _short_row(root: Path) -> None:
    with open(root / "manifest.csv", "a") as f:
        f.write("P009,images/P001.png\n")


BAD_CASES = {
    "missing file": (lambda r: (r / "images/P002.png").unlink(), ["images/P002.png: file not found", "row 3", "id=P002"]),
    "truncated image": (lambda r: _truncate(r / "images/P002.png"), ["images/P002.png: cannot be read (truncated", "row 3"]),
    "zero-byte image": (lambda r: (r / "images/P002.png").write_bytes(b""), ["images/P002.png: empty file (0 bytes)"]),
    "constant image": (
        lambda r: cv2.imwrite(str(r / "images/P002.png"), np.zeros((H, W), np.uint8)),
        ["images/P002.png: image is constant (every pixel = 0)"],
    ),
    "size mismatch": (
        lambda r: cv2.imwrite(str(r / "masks/P002.png"), label_mask(H, W + 1)),
        ["masks/P002.png: mask is 40x61 (HxW) but its image is 40x60", "same size", "id=P002"],
    ),
    "mask labels": (_bad_mask_values, ["masks/P002.png: mask has values other than allowed: found [0, 1, 2, 5]"]),
    "mask no lung": (
        lambda r: cv2.imwrite(str(r / "masks/P002.png"), np.zeros((H, W), np.uint8)),
        ["masks/P002.png: mask has no lung"],
    ),
    "landmark outside": (
        lambda r: _set(r, "P002", left_x="60.2"),
        ["manifest.csv row 3 (id=P002): left landmark (60.2, 30) is outside the image (60x40 px"],
    ),
    "non-numeric landmark": (lambda r: _set(r, "P002", right_x="abc"), ["manifest.csv row 3 (id=P002): right_x is not a number: 'abc'"]),
    "non-finite landmark": (lambda r: _set(r, "P002", left_y="nan"), ["row 3 (id=P002): left_y is not a finite number: 'nan'"]),
    "half-filled pair": (
        lambda r: _set(r, "P002", right_y=""),
        ["manifest.csv row 3 (id=P002): half-filled right landmark (right_x = '15.0', right_y empty)"],
    ),
    "duplicate id": (lambda r: _set(r, "P003", id="P001"), ["manifest.csv row 4 (id=P001): duplicate id, also on row 2"]),
    "missing column": (lambda r: _drop_column(r, "left_y"), ["manifest.csv: missing required column(s) left_y (found: id, image"]),
    "colour image": (
        lambda r: cv2.imwrite(str(r / "images/P002.png"), cv2.merge([gradient(H, W), gradient(H, W)[::-1], gradient(H, W)])),
        ["images/P002.png: is a colour image", "row 3"],
    ),
    "dicom without pixels": (_dicom_without_pixels, ["images/P002.dcm: DICOM file has no pixel data", "row 3"]),
    "swapped labels": (_swap_labels, ["masks/P002.png: label 1 (patient's right lung) lies to the image right of label 2", "swapped"]),
    "swapped landmarks": (
        lambda r: _set(r, "P002", right_x=str(LEFT[0]), left_x=str(RIGHT[0])),
        ["row 3 (id=P002): right landmark x = 44 lies to the image right of the left landmark", "swapped"],
    ),
    "bad spacing": (lambda r: _set(r, "P002", pixel_spacing_mm="-0.1"), ["row 3 (id=P002): pixel_spacing_mm must be > 0, got -0.1"]),
    "bad orig_scale": (lambda r: _set(r, "P002", orig_scale="x"), ["row 3 (id=P002): orig_scale is not a number: 'x'"]),
    "absolute path": (
        lambda r: _set(r, "P002", image=str(r / "images/P002.png")),
        ["row 3 (id=P002): image path", "is absolute; give it relative to the dataset folder"],
    ),
    "empty id": (lambda r: _set(r, "P002", id=""), ["manifest.csv row 3: id is empty"]),
    "short row": (_short_row, ["manifest.csv row 5: has 2 fields, the header has 11"]),
    "no manifest": (lambda r: (r / "manifest.csv").unlink(), ["manifest.csv: file not found"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_reported(tmp_path, case):
    mutate, expected = BAD_CASES[case]
    make_dataset(tmp_path)
    load_dataset(tmp_path)  # valid before the mutation
    mutate(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    problems = info.value.problems
    assert len(problems) == 1, problems
    for text in expected:
        assert text in problems[0], (text, problems[0])
    assert problems[0] in str(info.value)


def test_three_problems_all_reported(tmp_path):
    make_dataset(tmp_path, n=4)
    (tmp_path / "images/P001.png").unlink()
    _set(tmp_path, "P002", right_x="abc")
    cv2.imwrite(str(tmp_path / "masks/P004.png"), np.zeros((H, W), np.uint8))
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    problems = info.value.problems
    assert len(problems) == 3
    assert "images/P001.png: file not found" in problems[0] and "id=P001" in problems[0]
    assert "row 3 (id=P002): right_x is not a number" in problems[1]
    assert "masks/P004.png: mask has no lung" in problems[2] and "id=P004" in problems[2]
    message = str(info.value)
    assert message.splitlines()[0].startswith("3 problems in")
    assert all(p in message for p in problems)

    report = check_dataset(tmp_path)
    assert not report.ok and report.dataset is None and report.problems == problems
    assert report.summary["rows"] == 4 and report.summary["readable"] == 2  # P003 and P004's image


def test_check_summary_counts(tmp_path):
    make_dataset(tmp_path, n=3)
    _set(tmp_path, "P002", right_x="", right_y="", pixel_spacing_mm="")
    report = check_dataset(tmp_path)
    assert report.ok and report.dataset is not None
    s = report.summary
    assert s["image_sizes"] == {"40x60": 3}
    assert s["pixel_spacing_mm"] == {"0.5": 2, "unknown": 1}
    assert s["landmarks"] == {"right": 2, "left": 3}
    area_px = 30 * 23  # each lung rectangle
    assert s["lung_area"]["right"]["px_mean"] == area_px
    assert s["lung_area"]["left"]["cm2_n"] == 2
    assert s["lung_area"]["left"]["cm2_mean"] == pytest.approx(area_px * 0.25 / 100)
    text = report.format()
    assert "OK: usable" in text and "landmarks annotated: right 2/3, left 3/3" in text


@pytest.mark.jsrt
def test_jsrt_loads_fast(jsrt_dir):
    t0 = time.perf_counter()
    ds = load_dataset(jsrt_dir)
    elapsed = time.perf_counter() - t0
    assert len(ds) == 247 and len(set(ds.ids)) == 247
    assert np.isnan(ds.by_id["JPCLN016"].landmarks).all()
    assert sum(not np.isnan(r.landmarks).any() for r in ds.records) == 246
    assert {r.pixel_spacing_mm for r in ds.records} == {0.7} and {r.orig_scale for r in ds.records} == {0.25}
    sample = load_sample(ds.records[0])
    assert sample["image"].shape == (512, 512) and set(np.unique(sample["mask"])) == {0, 1, 2}
    assert elapsed < 15, f"validating 247 images took {elapsed:.1f} s"
