"""Built-in phantoms: determinism, exact truth (dome points on the lung labels' lower borders),
anatomy statistics, the dataset folder, the cache, and a speed measurement."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from raysearch.data.phantom import (
    FIELD_MM,
    GENERATOR_VERSION,
    default_phantom_dataset,
    dome_apex,
    generate_phantom,
    phantom_gallery_png,
    write_phantom_dataset,
)


def test_same_seed_and_index_give_identical_bytes():
    a, info_a = generate_phantom(7, 128, index=3)
    b, info_b = generate_phantom(7, 128, index=3)
    assert a["image"].tobytes() == b["image"].tobytes()
    assert a["mask"].tobytes() == b["mask"].tobytes()
    assert a["landmarks"].tobytes() == b["landmarks"].tobytes()
    assert info_a == info_b
    c, _ = generate_phantom(7, 128, index=4)
    d, _ = generate_phantom(8, 128, index=3)
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["image"], d["image"])


@pytest.mark.parametrize("size", [64, 200, 256])
def test_shapes_dtypes_and_value_ranges(size):
    sample, info = generate_phantom(0, size, index=1)
    assert sample["id"] == "PH0001"
    img, mask, lm = sample["image"], sample["mask"], sample["landmarks"]
    assert img.shape == (size, size) and img.dtype == np.float32
    assert mask.shape == (size, size) and mask.dtype == np.uint8
    assert lm.shape == (2, 2) and lm.dtype == np.float64
    assert 0.0 <= img.min() and img.max() <= 1.0
    # 8-bit levels, so a PNG round trip is exact
    np.testing.assert_array_equal(np.round(img * 255).astype(np.float32) / 255, img)
    assert set(np.unique(mask)) == {0, 1, 2}
    assert info["size"] == size and info["generator_version"] == GENERATOR_VERSION


def test_too_small_size_is_rejected():
    with pytest.raises(ValueError, match="at least 64"):
        generate_phantom(0, 32)


def test_landmarks_lie_on_the_lower_border_of_their_own_lung():
    """The dome point is the lowest lung pixel of its column (within rasterisation), the pixel just
    above it belongs to the same side's lung and the pixel just below does not."""
    for i in range(25):
        sample, _ = generate_phantom(1, 256, index=i)
        mask = sample["mask"]
        for row, label in ((0, 1), (1, 2)):
            x, y = sample["landmarks"][row]
            assert 0 <= x <= 255 and 0 <= y <= 255
            xi = int(round(x))
            column = np.flatnonzero(mask[:, xi] == label)
            assert column.size > 0
            assert abs(column.max() - y) <= 1.0, (i, row, column.max(), y)
            assert mask[int(round(y - 1.5)), xi] == label
            assert mask[int(round(y + 1.5)), xi] != label
        # right lung (label 1) on the image left
        xs1 = np.nonzero(mask == 1)[1].mean()
        xs2 = np.nonzero(mask == 2)[1].mean()
        assert xs1 < xs2
        assert sample["landmarks"][0, 0] < sample["landmarks"][1, 0]


def test_each_lung_label_is_one_region():
    for i in range(15):
        mask = generate_phantom(2, 192, index=i)[0]["mask"]
        for label in (1, 2):
            n, _ = cv2.connectedComponents((mask == label).astype(np.uint8), connectivity=8)
            assert n == 2, (i, label, n - 1)


def test_dome_apex_on_hand_made_border():
    # a tilted polyline: chord from (0, 10) to (10, 5); the point (4, 2) is farthest above it
    border = np.array([[0, 10], [2, 5], [4, 2], [6, 3], [8, 4.5], [10, 5]], float)
    heights = []
    a, b = border[0], border[-1]
    for p in border:
        # signed distance above the chord, by the cross product (independent of dome_apex's normal)
        heights.append(-((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])) / np.hypot(*(b - a)))
    np.testing.assert_array_equal(dome_apex(border), border[int(np.argmax(heights))])
    np.testing.assert_array_equal(dome_apex(border), [4, 2])


def test_right_dome_usually_higher_than_left():
    dy = np.array([generate_phantom(3, 128, index=i)[1]["dome_dy_px"] for i in range(100)])
    frac = float(np.mean(dy > 0))
    print(f"right dome higher in {frac:.0%} of 100 phantoms; median left-right {np.median(dy):.1f} px at 128 px")
    assert frac > 0.7
    assert frac < 1.0  # level or inverted domes occur too
    assert np.median(dy) > 0


def test_write_dataset_folder(tmp_path):
    out = write_phantom_dataset(tmp_path / "ph", n=6, size=96, seed=5)
    with open(out / "manifest.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "image", "mask", "right_x", "right_y", "left_x", "left_y",
                                     "patient_id", "pixel_spacing_mm", "orig_scale", "view"]
        rows = list(reader)
    assert [r["id"] for r in rows] == [f"PH{i:04d}" for i in range(6)]
    for i, r in enumerate(rows):
        sample, _ = generate_phantom(5, 96, index=i)
        img = cv2.imread(str(out / r["image"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / r["mask"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (96, 96)
        np.testing.assert_array_equal(img.astype(np.float32) / 255.0, sample["image"])
        np.testing.assert_array_equal(mask, sample["mask"])
        got = np.array([[float(r["right_x"]), float(r["right_y"])], [float(r["left_x"]), float(r["left_y"])]])
        np.testing.assert_allclose(got, sample["landmarks"], atol=1e-4)
        assert r["patient_id"] == r["id"] and r["view"] == "AP" and float(r["orig_scale"]) == 1.0
        assert float(r["pixel_spacing_mm"]) == pytest.approx(FIELD_MM / 96, rel=1e-5)
    readme = (out / "README.md").read_text()
    assert "seed 5" in readme and f"version {GENERATOR_VERSION}" in readme
    with pytest.raises(FileExistsError, match="not empty"):
        write_phantom_dataset(out, n=2, size=96)
    write_phantom_dataset(out, n=2, size=96, overwrite=True)
    assert len(list((out / "images").iterdir())) == 2


def test_written_folder_loads_with_the_dataset_reader(tmp_path):
    from raysearch.data import dataset as dataset_mod
    out = write_phantom_dataset(tmp_path / "ph", n=4, size=80, seed=1)
    ds = dataset_mod.load_dataset(out)
    assert len(ds.records) == 4
    s = dataset_mod.load_sample(ds.records[2])
    ref, _ = generate_phantom(1, 80, index=2)
    np.testing.assert_allclose(s["image"], ref["image"], atol=1e-6)
    np.testing.assert_array_equal(s["mask"], ref["mask"])
    np.testing.assert_allclose(s["landmarks"], ref["landmarks"], atol=1e-4)


def test_default_dataset_is_cached_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYSEARCH_CACHE", str(tmp_path))
    path = default_phantom_dataset(n=10, size=64, seed=2)
    assert path == tmp_path / f"phantoms_n10_s64_seed2_v{GENERATOR_VERSION}"
    assert (path / "manifest.csv").exists()
    stamp = (path / "manifest.csv").stat().st_mtime_ns
    assert default_phantom_dataset(n=10, size=64, seed=2) == path
    assert (path / "manifest.csv").stat().st_mtime_ns == stamp  # not regenerated
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary folder left behind


def test_gallery_png(tmp_path):
    out = phantom_gallery_png(tmp_path / "g.png", n=3, size=96, seed=0)
    img = cv2.imread(str(out))
    assert img.shape == (96, 3 * 96 + 2 * 4, 3)
