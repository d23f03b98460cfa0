"""The command line: DICOM spacing, errors.csv and exit codes, manifests and per_patient.csv, task variants."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from raysearch.data.phantom import generate_phantom
from raysearch.predict.__main__ import main
from raysearch.predict.outputs import PREDICTION_COLUMNS

from dicom_files import write_dicom  # tests/ is on sys.path (pytest rootdir conftest)

from .conftest import save_untrained


def phantom_u8(index: int, size: int = 96) -> np.ndarray:
    sample, _ = generate_phantom(seed=2, size=size, index=index)
    return np.round(sample["image"] * 255).astype(np.uint8)


def test_dicom_monochrome1_with_spacing_gives_mm_and_matches_the_png(tmp_path, untrained_checkpoint):
    img = phantom_u8(0)
    img[0, 0], img[0, 1] = 0, 255  # full 8-bit range: the DICOM's min-max scaling then equals the PNG's /255
    lo, hi = 0, 255
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), img)
    # MONOCHROME1 stores bright as low: invert; after read_image's inversion + min-max it equals the PNG's range
    write_dicom(src / "b.dcm", (hi + lo) - img.astype(np.uint16), "MONOCHROME1", PixelSpacing=[0.7, 0.7])
    out = tmp_path / "out"
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src), "--out", str(out),
                 "--device", "cpu"]) == 0
    df = pd.read_csv(out / "predictions.csv").set_index("id")
    assert list(pd.read_csv(out / "predictions.csv").columns) == list(PREDICTION_COLUMNS)
    b = df.loc["b"]
    assert b.spacing_source == "dicom:PixelSpacing" and b.pixel_spacing_mm == pytest.approx(0.7)
    assert b.right_y_mm == pytest.approx(0.7 * b.right_y) and b.height_diff_mm == pytest.approx(0.7 * b.height_diff_px)
    assert b.right_lung_area_cm2 == pytest.approx(b.right_lung_area_px * 0.49 / 100)
    assert b.flag_basis == "mm"
    a = df.loc["a"]
    assert math.isnan(a.height_diff_mm) and math.isnan(a.pixel_spacing_mm)
    # MONOCHROME1 inverted back: the same pixels as the PNG, so the same points
    cols = ["right_x", "right_y", "left_x", "left_y", "right_lung_area_px"]
    np.testing.assert_allclose(b[cols].astype(float), a[cols].astype(float), atol=1e-6)
    assert (out / "masks" / "b.png").exists() and (out / "overlays" / "b.png").exists()
    assert cv2.imread(str(out / "masks" / "b.png"), cv2.IMREAD_UNCHANGED).shape == img.shape


def test_corrupt_file_is_reported_and_the_rest_are_written(tmp_path, untrained_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"ok{i}.png"), phantom_u8(i, size=80))
    good = (src / "ok0.png").read_bytes()
    (src / "broken.png").write_bytes(good[: len(good) // 3])
    (src / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src), "--out", str(out),
                 "--device", "cpu", "--spacing", "0.5"]) == 1
    pred = pd.read_csv(out / "predictions.csv")
    assert sorted(pred["id"]) == ["ok0", "ok1"]
    assert (pred["spacing_source"] == "cli").all() and (pred["pixel_spacing_mm"] == 0.5).all()
    err = pd.read_csv(out / "errors.csv")
    assert sorted(Path(f).name for f in err["file"]) == ["broken.png", "empty.jpg"]
    assert err["reason"].str.contains("truncated|empty").all()
    # refuses to overwrite, then --force
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src / "ok0.png"), "--out", str(out)]) == 2
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src / "ok0.png"), "--out", str(out),
                 "--force", "--device", "cpu"]) == 0
    assert pd.read_csv(out / "errors.csv").empty


@pytest.mark.parametrize("args, message", [
    (["--input", "{missing}"], "no such file"),
    (["--checkpoint", "{missing}"], "does not exist"),
    (["--batch-size", "0"], "batch-size"),
    (["--normal-range", "30", "0"], "LOW < HIGH"),
])
def test_bad_arguments_exit_2(tmp_path, untrained_checkpoint, capsys, args, message):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), phantom_u8(0, 64))
    base = {"--checkpoint": str(untrained_checkpoint), "--input": str(img), "--out": str(tmp_path / "o")}
    argv = []
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    argv += [a.replace("{missing}", str(tmp_path / "nope")) for a in args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_manifest_dates_give_per_patient_table(tmp_path, untrained_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"img{i}.png"), phantom_u8(i, 80))
    man = tmp_path / "studies.csv"
    man.write_text("file,patient_id,date,pixel_spacing_mm\n"
                   "in/img0.png,P1,2024-03-05,0.5\n"
                   "in/img1.png,P1,20240101,0.5\n"
                   "img2.png,P2,2023-07-01,\n"
                   "in/img3.png,,,\n")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src), "--out", str(out),
                 "--manifest", str(man), "--device", "cpu"]) == 0
    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False).set_index("id")
    assert pred.loc["img0", "spacing_source"] == "manifest" and pred.loc["img1", "date"] == "2024-01-01"
    pp = pd.read_csv(out / "per_patient.csv")
    assert list(pp["id"]) == ["img1", "img0", "img2"]  # P1 by date, then P2; img3 has no patient
    p1 = pp[pp.patient_id == "P1"]
    assert list(p1["study_index"]) == [0, 1] and list(p1["days_since_first"]) == [0, 64]
    d = pred.loc[["img1", "img0"], "height_diff_mm"].astype(float).to_numpy()
    np.testing.assert_allclose(p1["change_mm_since_first"], [0.0, d[1] - d[0]], atol=1e-9)
    assert math.isnan(pp[pp.patient_id == "P2"]["change_mm_since_first"].iloc[0])  # no spacing for img2
    assert pp[pp.patient_id == "P2"]["change_px_since_first"].iloc[0] == 0.0
    bad = tmp_path / "bad.csv"
    bad.write_text("file,date\nin/img0.png,5th of May\n")
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src), "--out", str(tmp_path / "o2"),
                 "--manifest", str(bad)]) == 2


def test_dicom_patient_tags_give_per_patient_table(tmp_path, untrained_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    for i, date in enumerate(["20240210", "20230915"]):
        write_dicom(src / f"s{i}.dcm", phantom_u8(i, 80).astype(np.uint16) * 16, PatientID="PAT-9",
                    StudyDate=date, ImagerPixelSpacing=[0.4, 0.4])
    out = tmp_path / "out"
    assert main(["--checkpoint", str(untrained_checkpoint), "--input", str(src), "--out", str(out),
                 "--device", "cpu"]) == 0
    pp = pd.read_csv(out / "per_patient.csv")
    assert list(pp["id"]) == ["s1", "s0"] and list(pp["date"]) == ["2023-09-15", "2024-02-10"]
    pred = pd.read_csv(out / "predictions.csv").set_index("id")
    assert pred.loc["s0", "spacing_source"] == "dicom:ImagerPixelSpacing"


def test_heatmap_only_and_segmentation_only_models(tmp_path):
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), phantom_u8(0, 80))
    hm = save_untrained(tmp_path / "hm" / "best.pt", task="heatmap", channels="per_landmark")
    seg = save_untrained(tmp_path / "seg" / "best.pt", task="segmentation")
    assert main(["--checkpoint", str(hm), "--input", str(src), "--out", str(tmp_path / "o1"), "--device", "cpu"]) == 0
    r = pd.read_csv(tmp_path / "o1" / "predictions.csv").iloc[0]
    assert np.isfinite([r.right_x, r.left_y, r.height_diff_px, r.right_confidence]).all()
    assert math.isnan(r.right_lung_area_px) and math.isnan(r.height_diff_norm)
    assert not (tmp_path / "o1" / "masks").exists() and (tmp_path / "o1" / "overlays" / "x.png").exists()
    assert main(["--checkpoint", str(seg), "--input", str(src), "--out", str(tmp_path / "o2"), "--device", "cpu"]) == 0
    r = pd.read_csv(tmp_path / "o2" / "predictions.csv").iloc[0]
    assert math.isnan(r.right_x) and math.isnan(r.height_diff_px) and math.isnan(r.left_confidence)
    assert np.isfinite(r.right_lung_area_px) and (tmp_path / "o2" / "masks" / "x.png").exists()
    assert "no height difference" in r.flag_reason
