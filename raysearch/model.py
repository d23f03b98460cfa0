"""The paper's two-head U-Net (Figure 4): one encoder-decoder, a heatmap head and a lung head.

Blocks, numbered as in the paper:

* 1-4 ``down1..down4``: two 3x3 convolutions (padding 1) each followed by ReLU, then a 2x2 max-pool
  of stride 2. Widths ``w, 2w, 4w, 8w`` with ``w = ModelConfig.base_width`` (64 = the paper).
* 5 ``bottleneck``: two 3x3 convolutions + ReLU, width ``16w``.
* 6-9 ``up1..up4``: a 2x2 transposed convolution of stride 2 (halving the channels), concatenation
  with the skip of the matching down block, two 3x3 convolutions + ReLU.
* 10: two 1x1 heads on the last decoder features: ``heatmap_head`` (1 or 2 channels, sigmoid
  applied in :meth:`TwoHeadUNet.forward`) and ``seg_head`` (1 channel: both lungs, raw logits).

A single-task model (``task`` ``heatmap`` or ``segmentation``) does not build the other head at
all, so it neither computes nor stores it; ``forward`` returns None in its place.

Initialisation (training stability). The plain U-Net, without normalisation, is fragile: on JSRT
at 256 px and width 16, PyTorch's default init with Adam at 1e-3 diverged within one epoch
(activations ~1e7, both sigmoid outputs stuck at 1), and a heatmap-head bias of 3 (the logit of
the mean target ~0.95) collapsed at lr 5e-4. He (Kaiming) normal initialisation with zero biases,
a warm-up and lr 2e-4 were stable. So every convolution here gets He-normal weights for ReLU with
the *effective* fan-in (for a 2x2 stride-2 transposed convolution each output pixel sees exactly
``in_channels`` inputs, which neither of PyTorch's transposed fan conventions gives), and every
bias starts at 0, the heads included: the initial heatmap is ~0.5 everywhere and the lung logits
~0. Do not start the heatmap head at the target's mean logit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raysearch.config import ModelConfig

TASKS = ("multi", "heatmap", "segmentation")
DEPTH = 4
"""Number of 2x poolings: inputs must have H and W divisible by 2**DEPTH = 16."""


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1), each followed by (optional batch norm and) ReLU."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = []
        for i, o in ((in_ch, out_ch), (out_ch, out_ch)):
            layers.append(nn.Conv2d(i, o, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(o))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DownBlock(nn.Module):
    """Encoder block: ``conv`` (two conv+ReLU) then a 2x2 max-pool; returns ``(skip, pooled)``."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv = DoubleConv(in_ch, out_ch, batch_norm)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv(x)
        return skip, self.pool(skip)


class UpBlock(nn.Module):
    """Decoder block: 2x2 stride-2 transposed conv (``in_ch -> in_ch/2``), concat skip, two conv+ReLU."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.upconv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.upconv(x)], dim=1))


class TwoHeadUNet(nn.Module):
    """The paper's U-Net with a heatmap head and a lung-segmentation head.

    Args:
        cfg: :class:`raysearch.config.ModelConfig` (``base_width``, ``heatmap_channels``, ``batch_norm``;
            ``channels_last`` is applied by the caller with ``model.to(memory_format=...)``).
        task: ``multi`` (both heads), ``heatmap`` or ``segmentation`` (one head only).

    ``forward(x)`` takes ``(B, 1, H, W)`` with H and W multiples of 16 and returns
    ``dict(heatmap=(B, C, H, W) sigmoid in [0, 1] or None, seg_logits=(B, 1, H, W) raw logits or None)``,
    with C = 1 (``single``) or 2 (``per_landmark``: [right, left]).
    """

    def __init__(self, cfg: ModelConfig, task: str = "multi") -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a raysearch.config.ModelConfig, got {type(cfg).__name__}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.cfg = cfg
        self.task = task
        w = cfg.base_width
        bn = cfg.batch_norm
        widths = [w * 2**i for i in range(DEPTH + 1)]  # w, 2w, 4w, 8w, 16w
        self.down1 = DownBlock(1, widths[0], bn)
        self.down2 = DownBlock(widths[0], widths[1], bn)
        self.down3 = DownBlock(widths[1], widths[2], bn)
        self.down4 = DownBlock(widths[2], widths[3], bn)
        self.bottleneck = DoubleConv(widths[3], widths[4], bn)
        self.up1 = UpBlock(widths[4], widths[3], bn)
        self.up2 = UpBlock(widths[3], widths[2], bn)
        self.up3 = UpBlock(widths[2], widths[1], bn)
        self.up4 = UpBlock(widths[1], widths[0], bn)
        self.heatmap_channels = 1 if cfg.heatmap_channels == "single" else 2
        self.heatmap_head = nn.Conv2d(w, self.heatmap_channels, kernel_size=1) if task != "segmentation" else None
        self.seg_head = nn.Conv2d(w, 1, kernel_size=1) if task != "heatmap" else None
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Return ``dict(heatmap=(B,C,H,W) in [0,1] | None, heatmap_logits=(B,C,H,W) | None,
        seg_logits=(B,1,H,W) | None)`` for ``x`` (B,1,H,W)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"TwoHeadUNet expects a (B, 1, H, W) grey-level batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 2**DEPTH or w % 2**DEPTH:
            raise ValueError(
                f"TwoHeadUNet needs H and W that are multiples of {2**DEPTH} (four 2x2 poolings), "
                f"got input shape {tuple(x.shape)}; resize or pad the input (data.input_size)"
            )
        s1, x = self.down1(x)
        s2, x = self.down2(x)
        s3, x = self.down3(x)
        s4, x = self.down4(x)
        x = self.bottleneck(x)
        x = self.up1(x, s4)
        x = self.up2(x, s3)
        x = self.up3(x, s2)
        x = self.up4(x, s1)
        heatmap_logits = self.heatmap_head(x) if self.heatmap_head is not None else None
        heatmap = torch.sigmoid(heatmap_logits) if heatmap_logits is not None else None
        seg_logits = self.seg_head(x) if self.seg_head is not None else None
        # heatmap_logits are exposed for the divergence check (exploding pre-activations)
        return {"heatmap": heatmap, "heatmap_logits": heatmap_logits, "seg_logits": seg_logits}


def init_weights(model: nn.Module) -> None:
    """He-normal weights for ReLU with the effective fan-in, zero biases, BN at (1, 0); in place.

    Conv2d: ``std = sqrt(2 / (in_channels * kh * kw))`` (``kaiming_normal_``, fan_in, relu).
    ConvTranspose2d: ``std = sqrt(2 / (in_channels * kh * kw / (sh * sw)))``: the number of inputs
    one output pixel actually sums (``in_channels`` for 2x2 stride 2).
    """
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            sh, sw = m.stride
            fan_in = m.in_channels * max(1.0, (kh * kw) / (sh * sw))
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def grad_cam_target_layer(model: TwoHeadUNet) -> nn.Module:
    """Return the layer the paper reports Grad-CAM at: the output of the fourth encoder block.

    That is ``model.down4.conv``: block 4's two conv+ReLU, whose output (8w channels at 1/8 of the
    input size) is the block's output feature map *before* its max-pool. The pool only subsamples
    it, and the skip connection to the decoder leaves from this same tensor, so it is the most
    informative reading of "output of the fourth encoder block".
    """
    if not isinstance(model, TwoHeadUNet):
        raise TypeError(f"grad_cam_target_layer expects a TwoHeadUNet, got {type(model).__name__}")
    return model.down4.conv


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Return the number of (trainable, by default) parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


__all__ = [
    "DEPTH",
    "TASKS",
    "DoubleConv",
    "DownBlock",
    "TwoHeadUNet",
    "UpBlock",
    "count_parameters",
    "grad_cam_target_layer",
    "init_weights",
]
