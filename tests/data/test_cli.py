"""`python -m raysearch.data synth|check|import-masks`, run as a user would, in a subprocess."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from raysearch.data.dataset import load_dataset

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raysearch.data", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.jsrt
def test_check_passes_on_jsrt(jsrt_dir):
    res = cli("check", jsrt_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "rows: 247" in out and "image sizes (HxW px): 512x512 (247)" in out
    assert "pixel spacing: 0.7 mm (247)" in out
    assert "landmarks annotated: right 246/247, left 246/247" in out
    assert "right lung area (n=247): px mean" in out and "cm^2" in out
    assert out.strip().endswith("OK: usable")


def _tiny_dataset(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img = np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 4:27] = 1
    mask[5:35, 33:56] = 2
    with open(root / "manifest.csv", "w") as f:
        f.write("id,image,mask,right_x,right_y,left_x,left_y\n")
        for i in range(1, 4):
            cv2.imwrite(str(root / f"images/P{i}.png"), img)
            cv2.imwrite(str(root / f"masks/P{i}.png"), mask)
            f.write(f"P{i},images/P{i}.png,masks/P{i}.png,15,30,44,30\n")


def test_check_broken_folder_lists_every_problem(tmp_path):
    _tiny_dataset(tmp_path)
    assert cli("check", tmp_path).returncode == 0
    (tmp_path / "images/P1.png").unlink()
    text = (tmp_path / "manifest.csv").read_text().replace("P2,images/P2.png,masks/P2.png,15,", "P2,images/P2.png,masks/P2.png,abc,")
    (tmp_path / "manifest.csv").write_text(text)
    cv2.imwrite(str(tmp_path / "masks/P3.png"), np.zeros((40, 60), np.uint8))
    res = cli("check", tmp_path)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert "NOT USABLE: 3 problems" in lines
    assert any(l.startswith("images/P1.png: file not found") and "id=P1" in l for l in lines)
    assert any(l.startswith("manifest.csv row 3 (id=P2): right_x is not a number: 'abc'") for l in lines)
    assert any(l.startswith("masks/P3.png: mask has no lung") for l in lines)


def test_check_missing_folder(tmp_path):
    res = cli("check", tmp_path / "nope")
    assert res.returncode == 1 and "dataset folder not found" in res.stdout


def test_synth_then_check(tmp_path):
    out = tmp_path / "ph"
    res = cli("synth", "--out", out, "--n", 10, "--size", 64, "--seed", 3)
    assert res.returncode == 0, res.stderr
    ds = load_dataset(out)
    assert len(ds) == 10
    res = cli("synth", "--out", out, "--n", 10, "--size", 64)
    assert res.returncode == 1 and "not empty" in res.stderr and "--force" in res.stderr
    res = cli("synth", "--out", out, "--n", 12, "--size", 64, "--force")
    assert res.returncode == 0, res.stderr
    assert len(load_dataset(out)) == 12
    assert cli("check", out).returncode == 0


def test_synth_rejects_bad_numbers(tmp_path):
    res = cli("synth", "--out", tmp_path / "x", "--n", 0)
    assert res.returncode == 2 and "expected a positive integer" in res.stderr


def _parabola_mask(h: int, w: int, apex_r: tuple[int, int], apex_l: tuple[int, int], binary: bool) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for lo, hi, (ax, ay), lab in ((5, 45, apex_r, 1), (55, 95, apex_l, 2)):
        for x in range(lo, hi + 1):
            m[5 : int(round(ay + 0.04 * (x - ax) ** 2)) + 1, x] = 255 if binary else lab
    return m


def test_import_masks_end_to_end(tmp_path):
    images, masks, out = tmp_path / "img", tmp_path / "msk", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    h, w = 90, 100
    apexes = {"a": ((25, 50), (75, 50)), "b": ((24, 55), (76, 48)), "c": ((26, 45), (74, 52))}
    img8 = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    for stem, (ar, al) in apexes.items():
        if stem == "b":
            cv2.imwrite(str(images / f"{stem}.tif"), img8.astype(np.uint16) * 257)
        else:
            cv2.imwrite(str(images / f"{stem}.png"), img8)
        # "a" as a label image, the others binary 0/255 split by position
        cv2.imwrite(str(masks / f"{stem}.png"), _parabola_mask(h, w, ar, al, binary=stem != "a"))

    res = cli("import-masks", "--images", images, "--masks", masks, "--out", out, "--spacing", 0.4)
    assert res.returncode == 0, res.stderr
    assert "wrote 3 images" in res.stdout and "'chord': 6" in res.stdout

    ds = load_dataset(out)
    assert ds.ids == ["a", "b", "c"]
    for rec in ds.records:
        ar, al = apexes[rec.id]
        np.testing.assert_allclose(rec.landmarks, [ar, al], atol=1.0)
        assert rec.pixel_spacing_mm == 0.4 and rec.orig_scale == 1.0
        labels = cv2.imread(str(out / f"masks_lr/{rec.id}.png"), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(labels)) == {0, 1, 2}
        assert labels[:, :50].max() == 1 and labels[:, 50:].max() == 2
    assert (out / "images/b.tif").read_bytes() == (images / "b.tif").read_bytes()  # copied unchanged
    with open(out / "dome_rules.csv", newline="") as f:
        rules = list(csv.DictReader(f))
    assert [(r["id"], r["side"], r["rule"]) for r in rules] == [
        (s, side, "chord") for s in ("a", "b", "c") for side in ("right", "left")
    ]

    res = cli("import-masks", "--images", images, "--masks", masks, "--out", out)
    assert res.returncode == 1 and "not empty" in res.stderr and "--force" in res.stderr
    res = cli("import-masks", "--images", images, "--masks", masks, "--out", out, "--force")
    assert res.returncode == 0, res.stderr


def test_import_masks_reports_unmatched_and_bad_files(tmp_path):
    images, masks = tmp_path / "img", tmp_path / "msk"
    images.mkdir()
    masks.mkdir()
    img = np.tile(np.arange(50, dtype=np.uint8), (40, 1))
    cv2.imwrite(str(images / "a.png"), img)
    cv2.imwrite(str(images / "lonely.png"), img)
    cv2.imwrite(str(images / "b.png"), img)
    good = np.zeros((40, 50), np.uint8)
    good[5:30, 3:20], good[5:30, 28:46] = 1, 2
    cv2.imwrite(str(masks / "a.png"), good)
    cv2.imwrite(str(masks / "b.png"), np.zeros((40, 50), np.uint8))
    cv2.imwrite(str(masks / "orphan.png"), np.zeros((40, 50), np.uint8))
    res = cli("import-masks", "--images", images, "--masks", masks, "--out", tmp_path / "out")
    assert res.returncode == 1
    err = res.stderr
    assert "lonely.png: no mask with stem 'lonely'" in err
    assert "orphan.png: no image with stem 'orphan'" in err
    assert "b.png: mask has no lung" in err
    assert not (tmp_path / "out").exists()  # nothing written when anything is wrong
