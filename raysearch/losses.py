"""Training losses: heatmap MSE (paper's eq. 3), soft Dice (eq. 4) and their weighted sum (eq. 5).

All losses are computed in float32 even under autocast (the inputs are cast), and return a 0-dim
tensor that carries the graph.
"""

from __future__ import annotations

import torch

from raysearch.config import LossConfig

DICE_EPS = 1e-6
"""Added to the Dice numerator and denominator. It only matters when both masks are (nearly) empty:
``dice = (2|S^ n S| + eps) / (|S^| + |S| + eps)`` is then ~1 (loss ~0) as long as the predicted mass
``sum(sigmoid)`` is much smaller than eps (confident logits below about -20 on small images). On
chest X-rays the truth always holds lungs, where eps changes the loss by < 1e-6 / |S|."""


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over pixels between predicted and target heatmaps (paper's eq. 3).

    Args:
        pred, target: ``(B, C, H, W)`` heatmaps in [0, 1].
        weights: optional per-channel weights, ``(B, C)`` or ``(C,)``; 0 excludes a channel (an
            unannotated side), 1 includes it. The result is the weighted mean
            ``sum(w * (pred - target)^2) / (sum(w) * H * W)``; with no weights the plain mean.

    Returns:
        0-dim float32 tensor. When every weight is 0 it is 0 (still connected to ``pred``'s graph).
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"heatmap_mse needs pred and target of the same (B, C, H, W) shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    sq = (pred.float() - target.float()) ** 2
    if weights is None:
        return sq.mean()
    b, c, h, w = pred.shape
    wt = weights.to(device=pred.device, dtype=torch.float32)
    if wt.shape == (c,):
        wt = wt.expand(b, c)
    if wt.shape != (b, c):
        raise ValueError(f"heatmap weights must be (B, C) = {(b, c)} or (C,) = {(c,)}, got {tuple(weights.shape)}")
    per_channel = sq.mean(dim=(2, 3))  # (B, C)
    # clamp instead of an `if`: no host sync on GPU; all-zero weights give 0 / tiny = 0.
    return (per_channel * wt).sum() / wt.sum().clamp_min(1e-12)


def dice_loss(seg_logits: torch.Tensor, target_mask: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """Soft Dice loss ``1 - 2|S^ n S| / (|S^| + |S|)`` on sigmoid probabilities (paper's eq. 4).

    Computed per image (sums over C, H, W), then averaged over the batch; ``eps`` (see
    :data:`DICE_EPS`) is added to numerator and denominator.

    Args:
        seg_logits: ``(B, 1, H, W)`` raw logits.
        target_mask: ``(B, 1, H, W)`` float {0, 1} (both lungs = label > 0).

    Returns:
        0-dim float32 tensor in [0, 1].
    """
    if seg_logits.shape != target_mask.shape or seg_logits.ndim != 4:
        raise ValueError(
            f"dice_loss needs logits and mask of the same (B, 1, H, W) shape, got {tuple(seg_logits.shape)} "
            f"and {tuple(target_mask.shape)}"
        )
    p = torch.sigmoid(seg_logits.float())
    t = target_mask.to(device=p.device, dtype=torch.float32)
    inter = (p * t).sum(dim=(1, 2, 3))
    denom = p.sum(dim=(1, 2, 3)) + t.sum(dim=(1, 2, 3))
    dice = (2.0 * inter + eps) / (denom + eps)
    return (1.0 - dice).mean()


def joint_loss(
    out: dict[str, torch.Tensor | None],
    heatmap_target: torch.Tensor | None,
    heatmap_weights: torch.Tensor | None,
    seg_target: torch.Tensor | None,
    loss_cfg: LossConfig,
) -> dict[str, torch.Tensor | None]:
    """Return the training loss of one batch for ``loss_cfg.task``.

    * ``multi``: ``loss_joint = lambda_hem * L_hem + lambda_segm * L_segm`` (paper's eq. 5);
    * ``heatmap``: ``loss_joint = L_hem`` (lambdas ignored; ``loss_segm`` is None);
    * ``segmentation``: ``loss_joint = L_segm`` (``loss_hem`` is None).

    Args:
        out: the model's output dict (``heatmap`` (B,C,H,W), ``seg_logits`` (B,1,H,W)).
        heatmap_target: ``(B, C, H, W)`` targets (None allowed for ``segmentation``).
        heatmap_weights: ``(B, C)`` channel weights or None (see :func:`heatmap_mse`).
        seg_target: ``(B, 1, H, W)`` float {0, 1} lung mask (None allowed for ``heatmap``).
        loss_cfg: :class:`raysearch.config.LossConfig`.

    Returns:
        ``dict(loss_joint=<tensor with graph>, loss_hem=<detached tensor or None>,
        loss_segm=<detached tensor or None>)``.
    """
    task = loss_cfg.task
    loss_hem = loss_segm = None
    if loss_cfg.trains_heatmap:
        if out.get("heatmap") is None or heatmap_target is None:
            raise ValueError(
                f"loss.task={task!r} needs the model's 'heatmap' output and a heatmap target; got "
                f"heatmap={'None' if out.get('heatmap') is None else 'tensor'}, "
                f"target={'None' if heatmap_target is None else 'tensor'} (was the model built for another task?)"
            )
        loss_hem = heatmap_mse(out["heatmap"], heatmap_target, heatmap_weights)
    if loss_cfg.trains_segmentation:
        if out.get("seg_logits") is None or seg_target is None:
            raise ValueError(
                f"loss.task={task!r} needs the model's 'seg_logits' output and a lung mask; got "
                f"seg_logits={'None' if out.get('seg_logits') is None else 'tensor'}, "
                f"mask={'None' if seg_target is None else 'tensor'} (was the model built for another task?)"
            )
        loss_segm = dice_loss(out["seg_logits"], seg_target)
    if task == "multi":
        joint = loss_cfg.lambda_hem * loss_hem + loss_cfg.lambda_segm * loss_segm
    elif task == "heatmap":
        joint = loss_hem
    else:
        joint = loss_segm
    return {
        "loss_joint": joint,
        "loss_hem": loss_hem.detach() if loss_hem is not None else None,
        "loss_segm": loss_segm.detach() if loss_segm is not None else None,
    }


__all__ = ["DICE_EPS", "dice_loss", "heatmap_mse", "joint_loss"]
