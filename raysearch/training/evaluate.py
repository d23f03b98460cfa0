"""Evaluation of a model on a prepared split: losses, decoded landmarks and per-image metrics.

Landmarks are decoded in network pixels, mapped exactly back to stored-image pixels and compared
with the manifest's stored-pixel truth, so errors do not depend on the network resolution; they
are reported in 512-px reference pixels, stored pixels, original pixels and mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from raysearch import schema
from raysearch.config import RunConfig
from raysearch.data.dataset import load_sample
from raysearch.geometry import resize_points
from raysearch.heatmaps import decode_landmarks
from raysearch.losses import joint_loss
from raysearch.metrics import landmark_errors, segmentation_metrics, threshold_accuracy
from raysearch.training.batches import to_tensors
from raysearch.training.prepare import PreparedSplit


@dataclass
class SplitPredictions:
    """Model outputs for a split at network resolution.

    ``heatmaps`` (N,C,S,S) float32 in [0,1] or None; ``seg_prob`` (N,S,S) float32 or None;
    ``max_abs_logit``: the largest |pre-activation| seen (divergence check); ``min_abs_logit``: per head
    (``heatmap_logits``/``seg_logits``), the smallest |pre-activation| over every pixel of the split --
    above ~17 the head's sigmoid is saturated everywhere (1 or 0 in float32, zero gradient): collapsed.
    """

    heatmaps: np.ndarray | None
    seg_prob: np.ndarray | None
    losses: dict[str, float]
    max_abs_logit: float = 0.0
    min_abs_logit: dict[str, float] = field(default_factory=dict)


@dataclass
class SplitEvaluation:
    losses: dict[str, float]
    landmark_rows: list[dict] = field(default_factory=list)
    segmentation_rows: list[dict] = field(default_factory=list)
    predictions: SplitPredictions | None = None

    def summary(self, prefix: str, cfg: RunConfig) -> dict[str, float]:
        """Return ``{prefix/loss_*, prefix/err_ref_mean, prefix/acc_r*, prefix/dice, ...}`` as floats."""
        out = {f"{prefix}/{k}": v for k, v in self.losses.items()}
        if self.landmark_rows:
            errs = np.array([r["error_ref_px"] for r in self.landmark_rows])
            sides = np.array([r["side"] for r in self.landmark_rows])
            out[f"{prefix}/err_ref_mean"] = float(errs.mean())
            thresholds = cfg.eval.thresholds_ref_px()
            for side in ("both",) + schema.SIDES:
                sel = errs if side == "both" else errs[sides == side]
                if len(sel) == 0:
                    continue
                acc = threshold_accuracy(sel, thresholds)
                for div, a in zip(cfg.eval.threshold_divisors, acc):
                    out[schema.acc_key(prefix, div, side)] = float(a)
            if len(errs) > 1:
                out[f"{prefix}/err_ref_std"] = float(errs.std(ddof=1))
            mm = np.array([r["error_mm"] for r in self.landmark_rows], dtype=float)
            known = np.isfinite(mm)
            if known.any():
                out[f"{prefix}/err_mm_mean"] = float(mm[known].mean())
                if cfg.eval.radius_mm > 0:  # accuracy in mm, over the points of images with a known spacing
                    for side in ("both",) + schema.SIDES:
                        sel = mm[known] if side == "both" else mm[known & (sides == side)]
                        if len(sel) == 0:
                            continue
                        acc = threshold_accuracy(sel, [cfg.eval.radius_mm / d for d in cfg.eval.threshold_divisors])
                        for div, a in zip(cfg.eval.threshold_divisors, acc):
                            out[schema.acc_mm_key(prefix, div, side)] = float(a)
        if self.segmentation_rows:
            for m in schema.SEGMENTATION_METRICS:
                vals = np.array([r[m] for r in self.segmentation_rows], dtype=float)
                vals = vals[np.isfinite(vals)]
                if len(vals):
                    out[f"{prefix}/{m}"] = float(vals.mean())
                if len(vals) > 1:  # spread over the images of the split (ddof = 1)
                    out[f"{prefix}/{m}_std"] = float(vals.std(ddof=1))
        return out


@torch.no_grad()
def predict_split(model: torch.nn.Module, split: PreparedSplit, cfg: RunConfig, device: torch.device,
                  batch_size: int = 8) -> SplitPredictions:
    """Run the model over a split (no augmentation); return outputs and the mean losses."""
    model.eval()
    n, size = len(split), split.images.shape[-1]
    heatmaps = seg = None
    sums: dict[str, float] = {}
    max_abs = 0.0
    min_abs: dict[str, float] = {}
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        batch = to_tensors(split.images[sl], split.masks[sl], split.landmarks[sl], cfg, device)
        with _autocast(cfg, device):
            out = model(_input(batch["image"], cfg))
            losses = joint_loss(out, batch["heatmap"], batch["heatmap_weight"], batch["seg"], cfg.loss)
        b = batch["image"].shape[0]
        for k, v in losses.items():
            if v is not None:
                sums[k] = sums.get(k, 0.0) + float(v) * b
        for key in ("heatmap_logits", "seg_logits"):
            if out.get(key) is not None:
                a = out[key].detach().abs()
                max_abs = max(max_abs, float(a.max()))
                min_abs[key] = min(min_abs.get(key, math.inf), float(a.min()))
        if out.get("heatmap") is not None:
            if heatmaps is None:
                heatmaps = np.empty((n, out["heatmap"].shape[1], size, size), np.float32)
            heatmaps[sl] = out["heatmap"].float().cpu().numpy()
        if out.get("seg_logits") is not None:
            if seg is None:
                seg = np.empty((n, size, size), np.float32)
            seg[sl] = torch.sigmoid(out["seg_logits"].float())[:, 0].cpu().numpy()
    losses = {k: v / max(n, 1) for k, v in sums.items()}
    return SplitPredictions(heatmaps=heatmaps, seg_prob=seg, losses=losses, max_abs_logit=max_abs,
                            min_abs_logit=min_abs)


def evaluate_split(model: torch.nn.Module, split: PreparedSplit, cfg: RunConfig, device: torch.device,
                   stored_resolution: bool = False) -> SplitEvaluation:
    """Evaluate on a split: losses, one landmark row per (image, annotated side), one segmentation row per image.

    Segmentation metrics are computed at network resolution during training (``stored_resolution``
    False, fast) and on the stored image for the final test (probabilities resized bilinearly to the
    stored size and compared with the stored mask).
    """
    preds = predict_split(model, split, cfg, device)
    ev = SplitEvaluation(losses=preds.losses, predictions=preds)
    size = split.images.shape[-1]
    for i, rec in enumerate(split.records):
        stored_hw = tuple(int(v) for v in split.stored_hw[i])
        if preds.heatmaps is not None and np.isfinite(rec.landmarks).any():
            lung = preds.seg_prob[i] if preds.seg_prob is not None else None
            pred_net = decode_landmarks(preds.heatmaps[i], cfg.model.heatmap_channels, lung)
            pred_stored = resize_points(pred_net, (size, size), stored_hw)
            for row in landmark_errors(pred_stored, rec.landmarks, stored_width=stored_hw[1],
                                       pixel_spacing_mm=rec.pixel_spacing_mm, orig_scale=rec.orig_scale):
                ev.landmark_rows.append({"image_id": rec.id, **row})
        if preds.seg_prob is not None:
            if stored_resolution:
                truth = load_sample(rec)["mask"] > 0
                prob = cv2.resize(preds.seg_prob[i], (stored_hw[1], stored_hw[0]), interpolation=cv2.INTER_LINEAR)
            else:
                truth, prob = split.masks[i] > 0, preds.seg_prob[i]
            ev.segmentation_rows.append({"image_id": rec.id, **segmentation_metrics(prob, truth)})
    return ev


def _input(x: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if cfg.model.channels_last else x


def _autocast(cfg: RunConfig, device: torch.device):
    if device.type == "cuda" and cfg.train.precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)
