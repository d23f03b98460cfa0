"""Inference mechanics: exact mapping to original pixels, planted outputs end to end, TTA un-flipping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from raysearch.heatmaps import render_heatmap
from raysearch.predict.inference import (
    InputItem, PredictInputError, Predictor, PredictOptions, network_to_original, predict_items, resolve_checkpoint,
    seg_to_labels,
)
from raysearch.training.checkpoint import LoadedCheckpoint

from .conftest import quick_config


def test_network_to_original_matches_hand_formula_for_odd_non_square():
    h, w, s = 101, 77, 64
    pts_net = np.array([[0.0, 0.0], [63.0, 63.0], [-0.5, -0.5], [12.25, 40.75]])
    got = network_to_original(pts_net, s, (h, w))
    want = np.stack([(pts_net[:, 0] + 0.5) * w / s - 0.5, (pts_net[:, 1] + 0.5) * h / s - 0.5], axis=1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the image's outer edge maps to the outer edge: pixel-centre convention
    np.testing.assert_allclose(got[2], [-0.5, -0.5], atol=1e-12)
    # round trip original -> network -> original is the identity
    orig = np.array([[3.3, 97.1], [70.9, 1.2]])
    net = (orig + 0.5) * np.array([s / w, s / h]) - 0.5
    np.testing.assert_allclose(network_to_original(net, s, (h, w)), orig, atol=1e-12)


class PlantedModel(nn.Module):
    """Outputs a fixed heatmap (rendered at known network points) and fixed lung logits, whatever the input."""

    def __init__(self, heatmap: np.ndarray, lung: np.ndarray | None):
        super().__init__()
        self.register_buffer("hm", torch.from_numpy(heatmap))
        self.register_buffer("lung", None if lung is None else torch.from_numpy(lung.astype(np.float32)))
        self.heatmap_head = nn.Identity()
        self.seg_head = None if lung is None else nn.Identity()

    def forward(self, x):
        b = x.shape[0]
        seg = None if self.lung is None else (20.0 * (self.lung - 0.5))[None, None].expand(b, 1, -1, -1)
        return {"heatmap": self.hm[None].expand(b, -1, -1, -1), "heatmap_logits": None, "seg_logits": seg}


def _predictor(model: nn.Module, tta: bool = False, channels: str = "single") -> Predictor:
    cfg = quick_config(**{"model.heatmap_channels": channels})
    return Predictor(LoadedCheckpoint(model=model, config=cfg, epoch=0, metrics={}, path=Path("planted.pt")),
                     device="cpu", tta=tta)


def test_planted_points_come_back_exactly_in_original_pixels(tmp_path):
    h, w, s = 101, 77, 64  # odd, non-square original; the quick config's 64-px input
    truth = np.array([[20.3, 60.7], [55.9, 66.1]])  # original px, rows [right, left]
    truth_net = (truth + 0.5) * np.array([s / w, s / h]) - 0.5
    heatmap = render_heatmap(truth_net, (s, s), beta_px=15.0, channels="single")
    lung = np.zeros((s, s), np.float32)
    lung[10:45, 5:28] = 1  # image-left lung (patient's right)
    lung[12:50, 36:60] = 1
    img = (np.random.default_rng(0).random((h, w)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "odd.png"), img)
    pred = _predictor(PlantedModel(heatmap, lung))
    [res] = predict_items(pred, [InputItem(0, "odd", str(tmp_path / "odd.png"), default_spacing_mm=0.5)],
                          PredictOptions(), batch_size=4)
    assert res.ok, res.error
    got = np.array([[res.row["right_x"], res.row["right_y"]], [res.row["left_x"], res.row["left_y"]]])
    np.testing.assert_allclose(got, truth, atol=2e-3)
    assert (res.row["width"], res.row["height"]) == (w, h)
    assert res.row["height_diff_px"] == pytest.approx(truth[1, 1] - truth[0, 1], abs=2e-3)
    assert res.row["height_diff_mm"] == pytest.approx(0.5 * (truth[1, 1] - truth[0, 1]), abs=1e-3)
    assert res.row["right_confidence"] == pytest.approx(1.0, abs=1e-3)
    labels = cv2.imdecode(np.frombuffer(res.mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (h, w) and set(np.unique(labels)) == {0, 1, 2}
    # the planted boxes, mapped to the original size: right lung x in [5, 28) net px -> [6.0, 33.7) orig px
    xs1, xs2 = np.nonzero(labels == 1)[1], np.nonzero(labels == 2)[1]
    assert xs1.max() < xs2.min()
    assert abs(xs1.min() - 5 * w / s) <= 1 and abs(xs1.max() + 1 - 28 * w / s) <= 1
    area_net = 35 * 23
    assert res.row["right_lung_area_px"] == pytest.approx(area_net * h * w / s**2, rel=0.05)


def test_seg_to_labels_splits_at_the_mapped_column_and_drops_specks():
    s = 32
    prob = np.zeros((s, s), np.float32)
    prob[4:20, 2:12] = 0.9
    prob[4:20, 20:30] = 0.9
    prob[28, 5] = 0.9  # a speck below the right lung: not the largest region of its side
    labels = seg_to_labels(prob, (64, 96), split_net=15.5)
    assert labels.shape == (64, 96)
    split_orig = (15.5 + 0.5) * 96 / 32 - 0.5
    assert np.all(np.nonzero(labels == 1)[1] < split_orig) and np.all(np.nonzero(labels == 2)[1] > split_orig)
    assert not labels[55:60].any()


def _blob_image(points: np.ndarray, s: int) -> np.ndarray:
    return render_heatmap(points, (s, s), beta_px=12.0, channels="single")[0]


class EquivariantModel(nn.Module):
    """heatmap = the image (single) or the image restricted to the image-left / image-right half
    (per_landmark: [right, left]); lung logits from the image. Commutes with a mirror (channels swapped)."""

    def __init__(self, channels: str):
        super().__init__()
        self.channels = channels
        self.heatmap_head = nn.Identity()
        self.seg_head = nn.Identity()

    def forward(self, x):
        w = x.shape[-1]
        cols = torch.arange(w, dtype=x.dtype)
        if self.channels == "single":
            hm = x
        else:
            mid = (w - 1) / 2
            hm = torch.cat([torch.where(cols < mid, x, torch.ones_like(x)),
                            torch.where(cols > mid, x, torch.ones_like(x))], dim=1)
        return {"heatmap": hm, "heatmap_logits": None, "seg_logits": 10.0 * (0.8 - x)}


@pytest.mark.parametrize("channels", ["single", "per_landmark"])
def test_tta_unflips_and_swaps_so_an_equivariant_model_is_unchanged(channels):
    s = 64
    pts = np.array([[17.3, 40.2], [47.8, 45.6]])  # asymmetric: mirroring without un-flipping would move them
    img = _blob_image(pts, s)[None]
    plain = _predictor(EquivariantModel(channels), tta=False, channels=channels)
    tta = _predictor(EquivariantModel(channels), tta=True, channels=channels)
    hm_p, seg_p = plain.forward(img)
    hm_t, seg_t = tta.forward(img)
    np.testing.assert_allclose(hm_t, hm_p, atol=1e-6)
    np.testing.assert_allclose(seg_t, seg_p, atol=1e-6)
    dec = tta.decode(hm_t[0], seg_t[0], (s, s))
    np.testing.assert_allclose(dec.points, pts, atol=1e-2)


def test_tta_averages_with_the_mirrored_prediction():
    # A model that is NOT equivariant (a fixed heatmap): TTA must give the mean of it and its mirror.
    s = 64
    hm = render_heatmap(np.array([[10.0, 30.0], [50.0, 35.0]]), (s, s), 12.0, "single")
    out, _ = _predictor(PlantedModel(hm, None), tta=True).forward(np.zeros((2, s, s), np.float32))
    np.testing.assert_allclose(out[1], 0.5 * (hm + hm[:, :, ::-1]), atol=1e-6)


def test_resolve_checkpoint_forms(tmp_path, untrained_checkpoint):
    import json

    import pandas as pd

    assert resolve_checkpoint(untrained_checkpoint)[0] == untrained_checkpoint
    assert resolve_checkpoint(untrained_checkpoint.parent)[0] == untrained_checkpoint
    exp = tmp_path / "exp"
    for tid in ("t0", "t1", "t2"):
        (exp / "runs" / tid).mkdir(parents=True)
        (exp / "runs" / tid / "best.pt").write_bytes(b"x")
    pd.DataFrame({"trial_id": ["t0", "t1", "t2"], "val/dice": [0.8, 0.95, 0.9],
                  "checkpoint": ["runs/t0/best.pt", "runs/t1/best.pt", "runs/t2/best.pt"]}).to_parquet(
        exp / "trials.parquet")
    (exp / "experiment.json").write_text(json.dumps({"metric": "val/dice", "mode": "max"}))
    path, said = resolve_checkpoint(exp)
    assert path == exp / "runs" / "t1" / "best.pt" and "trial t1" in said
    (exp / "experiment.json").write_text(json.dumps({"metric": "val/dice", "mode": "min"}))
    assert resolve_checkpoint(exp)[0] == exp / "runs" / "t0" / "best.pt"
    # a finished trial's Tune folder holds only a completion marker: follow it to runs/<trial>/best.pt
    ckpt = exp / "run_trial_t2" / "checkpoint_000002"
    ckpt.mkdir(parents=True)
    (ckpt / "complete.json").write_text(json.dumps({"trial_id": "t2", "best_checkpoint": "runs/t2/best.pt"}))
    assert resolve_checkpoint(ckpt)[0] == exp / "runs" / "t2" / "best.pt"
    assert resolve_checkpoint(ckpt.parent)[0] == exp / "runs" / "t2" / "best.pt"
    (ckpt / "complete.json").write_text(json.dumps({"trial_id": "t9", "best_checkpoint": "runs/t9/best.pt"}))
    with pytest.raises(PredictInputError, match=r"complete\.json: names runs/t9/best\.pt"):
        resolve_checkpoint(ckpt)
