"""The two-head U-Net: shapes, task modes, parameter count, initialisation, one learning step."""

from __future__ import annotations

import pytest
import torch

from raysearch.config import ModelConfig
from raysearch.model import TwoHeadUNet, count_parameters, grad_cam_target_layer


def _conv(i: int, o: int, k: int) -> int:
    return i * o * k * k + o  # weights + bias


def _hand_count(w: int, heatmap_channels: int, heads: tuple[bool, bool] = (True, True)) -> int:
    """Parameters of the paper's U-Net, counted block by block (no batch norm)."""
    n = 0
    chans = [1, w, 2 * w, 4 * w, 8 * w]
    for i in range(4):  # blocks 1-4
        n += _conv(chans[i], chans[i + 1], 3) + _conv(chans[i + 1], chans[i + 1], 3)
    n += _conv(8 * w, 16 * w, 3) + _conv(16 * w, 16 * w, 3)  # block 5
    for c in (16 * w, 8 * w, 4 * w, 2 * w):  # blocks 6-9
        half = c // 2
        n += _conv(c, half, 2)  # transposed conv: in*out*2*2 + out
        n += _conv(c, half, 3) + _conv(half, half, 3)
    if heads[0]:
        n += _conv(w, heatmap_channels, 1)
    if heads[1]:
        n += _conv(w, 1, 1)
    return n


@pytest.mark.parametrize("channels, c", [("single", 1), ("per_landmark", 2)])
@pytest.mark.parametrize("task", ["multi", "heatmap", "segmentation"])
def test_output_shapes(channels, c, task):
    torch.manual_seed(0)
    model = TwoHeadUNet(ModelConfig(base_width=4, heatmap_channels=channels), task)
    out = model(torch.rand(2, 1, 32, 48))
    assert set(out) == {"heatmap", "heatmap_logits", "seg_logits"}
    if task == "segmentation":
        assert out["heatmap"] is None and out["heatmap_logits"] is None
    else:
        torch.testing.assert_close(out["heatmap"], torch.sigmoid(out["heatmap_logits"]))
        assert out["heatmap"].shape == (2, c, 32, 48)
        assert out["heatmap"].min() >= 0 and out["heatmap"].max() <= 1
    if task == "heatmap":
        assert out["seg_logits"] is None
    else:
        assert out["seg_logits"].shape == (2, 1, 32, 48)


@pytest.mark.parametrize("shape", [(1, 1, 30, 48), (1, 1, 32, 40), (1, 3, 32, 32), (32, 32)])
def test_bad_input_shape_raises(shape):
    model = TwoHeadUNet(ModelConfig(base_width=2), "multi")
    with pytest.raises(ValueError, match=r"multiples of 16|\(B, 1, H, W\)"):
        model(torch.rand(*shape))


def test_bad_task_raises():
    with pytest.raises(ValueError, match="task"):
        TwoHeadUNet(ModelConfig(base_width=2), "detection")


def test_single_task_models_have_no_other_head():
    cfg = ModelConfig(base_width=4, heatmap_channels="per_landmark")
    hm = TwoHeadUNet(cfg, "heatmap")
    seg = TwoHeadUNet(cfg, "segmentation")
    assert hm.seg_head is None and not any("seg_head" in n for n, _ in hm.named_parameters())
    assert seg.heatmap_head is None and not any("heatmap_head" in n for n, _ in seg.named_parameters())
    assert count_parameters(hm) == _hand_count(4, 2, (True, False))
    assert count_parameters(seg) == _hand_count(4, 2, (False, True))


def test_parameter_count_at_paper_width_matches_hand_count():
    model = TwoHeadUNet(ModelConfig(base_width=64), "multi")
    n = count_parameters(model)
    assert n == _hand_count(64, 1)
    assert 30e6 < n < 32e6  # the classic U-Net's ~31 M
    assert count_parameters(TwoHeadUNet(ModelConfig(base_width=8, heatmap_channels="per_landmark"))) == _hand_count(8, 2)


def test_batch_norm_option_adds_norm_layers():
    model = TwoHeadUNet(ModelConfig(base_width=4, batch_norm=True), "multi")
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n_bn == 18  # two per block, 9 blocks
    out = model(torch.rand(2, 1, 32, 32))
    assert out["heatmap"].shape == (2, 1, 32, 32)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = TwoHeadUNet(ModelConfig(base_width=4), "multi").eval()
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out["heatmap"], ref["heatmap"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["seg_logits"], ref["seg_logits"], atol=1e-5, rtol=1e-4)


def test_kaiming_init_keeps_activations_moderate_and_biases_zero():
    torch.manual_seed(0)
    model = TwoHeadUNet(ModelConfig(base_width=16), "multi")
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0), name
    # He-normal std of one conv: sqrt(2 / fan_in)
    w = model.down2.conv[0].weight
    assert w.std().item() == pytest.approx((2.0 / (16 * 9)) ** 0.5, rel=0.05)
    up = model.up1.upconv.weight  # (in=256, out=128, 2, 2): fan-in of one output pixel = 256
    assert up.std().item() == pytest.approx((2.0 / 256) ** 0.5, rel=0.05)
    with torch.no_grad():
        out = model(torch.rand(2, 1, 128, 128))
    # Neither head saturated at init (the diverged default-init run had both sigmoids stuck at 1).
    assert 0.05 < out["heatmap"].mean().item() < 0.95
    assert out["seg_logits"].abs().mean().item() < 10


def test_grad_cam_layer_is_fourth_encoder_block_output():
    model = TwoHeadUNet(ModelConfig(base_width=4), "multi")
    layer = grad_cam_target_layer(model)
    seen = {}

    def hook(module, inputs, output):  # returns None: must not replace the output
        seen["shape"] = tuple(output.shape)

    layer.register_forward_hook(hook)
    model(torch.rand(1, 1, 64, 64))
    assert seen["shape"] == (1, 32, 8, 8)  # 8w channels at 1/8 of the input, before the 4th pool
    assert isinstance(list(layer.children())[-1], torch.nn.ReLU)


def test_a_gradient_step_reduces_a_tiny_loss():
    torch.manual_seed(0)
    model = TwoHeadUNet(ModelConfig(base_width=4), "multi")
    x = torch.rand(2, 1, 32, 32)
    target = torch.rand(2, 1, 32, 32)
    mask = (torch.rand(2, 1, 32, 32) > 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn() -> torch.Tensor:
        out = model(x)
        return ((out["heatmap"] - target) ** 2).mean() + torch.nn.functional.binary_cross_entropy_with_logits(
            out["seg_logits"], mask
        )

    before = loss_fn().item()
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < before
