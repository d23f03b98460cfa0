"""Heatmap MSE, Dice loss and the joint loss (paper's eqs. 3-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from raysearch.config import LossConfig, ModelConfig
from raysearch.losses import dice_loss, heatmap_mse, joint_loss
from raysearch.model import TwoHeadUNet


def test_heatmap_mse_hand_values():
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    assert heatmap_mse(pred, target).item() == pytest.approx((1 + 0.25) / 4)


def test_heatmap_mse_excludes_zero_weight_channels():
    pred = torch.zeros(2, 2, 3, 3)
    target = torch.zeros(2, 2, 3, 3)
    target[0, 0] = 1.0  # error 1 everywhere in (image 0, right)
    target[0, 1] = 0.5  # error 0.25 (image 0, left) -- masked below
    target[1, 0] = 0.2  # error 0.04 (image 1, right)
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # mean over the three included channels
    assert heatmap_mse(pred, target, w).item() == pytest.approx((1 + 0.04 + 0.0) / 3)
    assert heatmap_mse(pred, target).item() == pytest.approx((1 + 0.25 + 0.04 + 0.0) / 4)
    # (C,) weights broadcast over the batch
    assert heatmap_mse(pred, target, torch.tensor([0.0, 1.0])).item() == pytest.approx((0.25 + 0.0) / 2)
    # all masked: 0, and still differentiable
    p = pred.clone().requires_grad_(True)
    loss = heatmap_mse(p, target, torch.zeros(2, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(p.grad == 0)


def test_heatmap_mse_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same"):
        heatmap_mse(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        heatmap_mse(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(3))


def test_dice_loss_hand_value():
    # probabilities via logits: p = [0.5, 0.5, 0, 0] (logit 0 and -inf-ish), truth = [1, 0, 1, 0]
    logits = torch.tensor([0.0, 0.0, -40.0, -40.0]).view(1, 1, 2, 2)
    truth = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    # dice = 2 * 0.5 / (1.0 + 2) = 1/3
    assert dice_loss(logits, truth).item() == pytest.approx(1 - 1 / 3, abs=1e-5)


def test_dice_loss_equals_one_minus_f1_for_confident_predictions():
    rng = np.random.default_rng(0)
    pred = rng.random((3, 1, 16, 16)) > 0.6
    truth = rng.random((3, 1, 16, 16)) > 0.4
    logits = torch.tensor(np.where(pred, 30.0, -30.0), dtype=torch.float32)
    expected = np.mean([1 - f1_score(truth[i].ravel(), pred[i].ravel()) for i in range(3)])
    assert dice_loss(logits, torch.tensor(truth, dtype=torch.float32)).item() == pytest.approx(expected, abs=1e-5)


def test_dice_loss_empty_truth_and_empty_prediction_is_about_zero():
    logits = torch.full((1, 1, 16, 16), -30.0)
    assert dice_loss(logits, torch.zeros(1, 1, 16, 16)).item() == pytest.approx(0.0, abs=1e-3)
    # empty truth but a full prediction: loss ~1
    assert dice_loss(-logits, torch.zeros(1, 1, 16, 16)).item() == pytest.approx(1.0, abs=1e-3)


def _batch(channels: int = 1):
    torch.manual_seed(0)
    hm_pred = torch.rand(2, channels, 8, 8, requires_grad=True)
    seg_logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    hm_t = torch.rand(2, channels, 8, 8)
    seg_t = (torch.rand(2, 1, 8, 8) > 0.5).float()
    return {"heatmap": hm_pred, "seg_logits": seg_logits}, hm_t, seg_t


def test_joint_loss_weights_terms_exactly():
    out, hm_t, seg_t = _batch()
    l_hem = heatmap_mse(out["heatmap"], hm_t).item()
    l_segm = dice_loss(out["seg_logits"], seg_t).item()
    for lh, ls in ((0.95, 0.05), (0.5, 0.5), (1.0, 0.0), (0.0, 2.0)):
        res = joint_loss(out, hm_t, None, seg_t, LossConfig(task="multi", lambda_hem=lh, lambda_segm=ls))
        assert res["loss_joint"].item() == pytest.approx(lh * l_hem + ls * l_segm, rel=1e-6)
        assert res["loss_hem"].item() == pytest.approx(l_hem)
        assert res["loss_segm"].item() == pytest.approx(l_segm)
        assert res["loss_joint"].requires_grad
        assert not res["loss_hem"].requires_grad and not res["loss_segm"].requires_grad


def test_single_task_losses_ignore_lambdas_and_the_other_head():
    out, hm_t, seg_t = _batch()
    res = joint_loss({"heatmap": out["heatmap"], "seg_logits": None}, hm_t, None, None,
                     LossConfig(task="heatmap", lambda_hem=0.3))
    assert res["loss_segm"] is None
    assert res["loss_joint"].item() == pytest.approx(heatmap_mse(out["heatmap"], hm_t).item())
    res = joint_loss({"heatmap": None, "seg_logits": out["seg_logits"]}, None, None, seg_t,
                     LossConfig(task="segmentation", lambda_segm=0.3))
    assert res["loss_hem"] is None
    assert res["loss_joint"].item() == pytest.approx(dice_loss(out["seg_logits"], seg_t).item())


def test_joint_loss_says_which_output_is_missing():
    out, hm_t, seg_t = _batch()
    with pytest.raises(ValueError, match="seg_logits"):
        joint_loss({"heatmap": out["heatmap"], "seg_logits": None}, hm_t, None, seg_t, LossConfig(task="multi"))


def test_joint_loss_uses_heatmap_weights():
    out, hm_t, seg_t = _batch(channels=2)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    res = joint_loss(out, hm_t, w, seg_t, LossConfig(task="heatmap"))
    assert res["loss_joint"].item() == pytest.approx(heatmap_mse(out["heatmap"], hm_t, w).item())
    assert res["loss_joint"].item() != pytest.approx(heatmap_mse(out["heatmap"], hm_t).item())


@pytest.mark.parametrize("task", ["heatmap", "segmentation"])
def test_gradients_reach_only_the_trained_head(task):
    torch.manual_seed(0)
    model = TwoHeadUNet(ModelConfig(base_width=2), "multi")
    out = model(torch.rand(2, 1, 32, 32))
    hm_t = torch.rand(2, 1, 32, 32)
    seg_t = (torch.rand(2, 1, 32, 32) > 0.5).float()
    joint_loss(out, hm_t, None, seg_t, LossConfig(task=task))["loss_joint"].backward()
    trained, untrained = (model.heatmap_head, model.seg_head) if task == "heatmap" else (model.seg_head, model.heatmap_head)
    assert all(p.grad is None for p in untrained.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    assert model.down1.conv[0].weight.grad.abs().sum() > 0  # the shared encoder learns too
