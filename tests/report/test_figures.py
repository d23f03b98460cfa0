"""Figures are written, non-empty and not blank; Grad-CAM maps have the input's size and vary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from raysearch import schema
from raysearch.config import ModelConfig
from raysearch.report.experiments import load_experiments
from raysearch.report.figures import accuracy_curves, loss_curves, pick_example_images, qualitative_panel


def assert_real_png(path, min_bytes=5000, min_std=5.0):
    """The file exists, is a PNG of some size and is not a blank (near-constant) image."""
    import matplotlib.image as mpimg

    assert path is not None and path.is_file()
    assert path.stat().st_size > min_bytes
    img = mpimg.imread(str(path))
    grey = img[..., :3].mean(axis=-1) * 255.0
    assert grey.std() > min_std, f"{path} looks blank (pixel std {grey.std():.2f})"
    return img


def test_loss_and_accuracy_figures(tasks_exps, tmp_path):
    es = load_experiments(tasks_exps)
    p = loss_curves(es.history, es.ok_trials, tmp_path / "losses.png")
    img = assert_real_png(p)
    assert img.shape[0] > 900  # three loss terms -> three rows of panels
    q = accuracy_curves(es.landmarks, es.ok_trials, 100.0, tmp_path / "acc.png")
    assert_real_png(q)


def test_loss_curves_skip_terms_of_untrained_heads(tasks_exps, tmp_path):
    es = load_experiments(tasks_exps)
    hm_only = es.ok_trials[es.ok_trials["config/loss.task"] == "heatmap"]
    one = loss_curves(es.history, hm_only, tmp_path / "hm.png")
    both = loss_curves(es.history, es.ok_trials, tmp_path / "all.png")
    import matplotlib.image as mpimg

    # joint + heatmap rows only: a shorter figure than joint + heatmap + segmentation
    assert mpimg.imread(str(one)).shape[0] < mpimg.imread(str(both)).shape[0]
    h = es.history.copy()
    for c in ("train/loss_joint", "val/loss_joint", "train/loss_hem", "val/loss_hem", "train/loss_segm",
              "val/loss_segm"):
        h[c] = np.nan
    assert loss_curves(h, es.ok_trials, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_pick_example_images_includes_worst():
    rows = pd.DataFrame({"image_id": [f"I{i}" for i in range(10) for _ in range(2)],
                         "error_ref_px": [float(i) for i in range(10) for _ in range(2)]})
    ids = pick_example_images(rows, 4)
    assert len(ids) == 4 and ids[-1] == "I9" and ids[-2] == "I8"
    assert pick_example_images(rows.iloc[:4], 4) == ["I0", "I1"]


def test_qualitative_panel_from_checkpoint(checkpoint_exp, phantom_dataset, tmp_path):
    t = pd.read_parquet(checkpoint_exp / schema.TRIALS_FILE)
    ids = sorted(pd.read_parquet(checkpoint_exp / schema.LANDMARK_FILE)["image_id"].unique())[:3]
    p = qualitative_panel(checkpoint_exp / t["checkpoint"].iloc[0], phantom_dataset, ids, tmp_path / "q.png")
    assert_real_png(p)
    with pytest.raises(ValueError, match="NOPE"):
        qualitative_panel(checkpoint_exp / t["checkpoint"].iloc[0], phantom_dataset, ["NOPE"], tmp_path / "x.png")


@pytest.mark.parametrize("channels", ["single", "per_landmark"])
def test_grad_cam_maps_on_two_head_unet(channels):
    from raysearch.model import TwoHeadUNet
    from raysearch.report.gradcam import grad_cam_maps

    torch.manual_seed(0)
    model = TwoHeadUNet(ModelConfig(base_width=4, heatmap_channels=channels), "multi").eval()
    yy, xx = np.mgrid[0:64, 0:64]
    image = (0.5 + 0.4 * np.sin(xx / 6.0) * np.cos(yy / 9.0)).astype(np.float32)  # structured input
    maps = grad_cam_maps(model, image, channels)
    for head in ("heatmap", "segmentation"):
        m = maps[head]
        assert m.shape == image.shape and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
        assert m.std() > 1e-3, f"{head} Grad-CAM map is constant"
    assert maps["landmarks"].shape == (2, 2)


def test_grad_cam_single_head_models():
    from raysearch.model import TwoHeadUNet
    from raysearch.report.gradcam import grad_cam_maps

    torch.manual_seed(1)
    image = np.random.default_rng(0).uniform(0, 1, (32, 32)).astype(np.float32)
    seg_only = TwoHeadUNet(ModelConfig(base_width=4), "segmentation").eval()
    assert set(grad_cam_maps(seg_only, image)) == {"segmentation"}
    with pytest.raises(ValueError, match="no heatmap head"):
        grad_cam_maps(seg_only, image, heads=("heatmap",))


def test_gradcam_panel_from_checkpoint(checkpoint_exp, phantom_dataset, tmp_path):
    from raysearch.report.gradcam import gradcam_panel

    t = pd.read_parquet(checkpoint_exp / schema.TRIALS_FILE)
    ids = sorted(pd.read_parquet(checkpoint_exp / schema.LANDMARK_FILE)["image_id"].unique())[:2]
    p = gradcam_panel(checkpoint_exp / t["checkpoint"].iloc[0], phantom_dataset, ids, tmp_path / "g.png")
    assert_real_png(p)
