"""Grad-CAM activation maps of the two heads (paper Figure 9), with the ``grad-cam`` package.

The maps are taken at the output of the fourth encoder block
(:func:`raysearch.model.grad_cam_target_layer`). Each head gets its own target:

* heatmap head: the landmark's *minimum region*. The heatmap is ``tanh(pi * d / beta)``, near 0 at a
  landmark, so the target is ``-mean(heatmap)`` over a small disc around each predicted minimum:
  its gradient shows what makes the minimum deep;
* segmentation head: the sum of the lung logits inside the predicted mask (``logit > 0``), like
  pytorch_grad_cam's ``SemanticSegmentationTarget``. An empty predicted mask (an untrained model)
  falls back to the whole image.

``TwoHeadUNet`` returns a dict; :class:`HeadOutput` wraps it to return one head's tensor, which is
what pytorch_grad_cam expects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HEADS = ("heatmap", "segmentation")


class HeadOutput(nn.Module):
    """Wrap a :class:`~raysearch.model.TwoHeadUNet` so ``forward`` returns one head as a tensor.

    ``head``: ``heatmap`` -> ``(B, C, H, W)`` in [0, 1]; ``segmentation`` -> ``(B, 1, H, W)`` logits.
    """

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.model = model
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        key = "heatmap" if self.head == "heatmap" else "seg_logits"
        if out.get(key) is None:
            raise ValueError(f"the model has no {self.head} head (task {getattr(self.model, 'task', '?')!r})")
        return out[key]


class MinimumRegionTarget:
    """Grad-CAM target for the heatmap head: minus the mean heatmap in a disc around each landmark.

    ``landmarks``: (2, 2) network px xy (rows right/left; NaN rows ignored); ``hw``: heatmap size;
    ``radius``: disc radius in network px; ``channels``: ``single`` (both discs on channel 0) or
    ``per_landmark`` (disc k on channel k). Called with one sample's output ``(C, H, W)``.
    """

    def __init__(self, landmarks: np.ndarray, hw: tuple[int, int], radius: float, channels: str) -> None:
        h, w = hw
        yy, xx = np.mgrid[0:h, 0:w]
        n_ch = 1 if channels == "single" else 2
        mask = np.zeros((n_ch, h, w), dtype=np.float32)
        for k, (x, y) in enumerate(np.asarray(landmarks, dtype=np.float64)):
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            c = 0 if n_ch == 1 else k
            mask[c] = np.maximum(mask[c], ((xx - x) ** 2 + (yy - y) ** 2 <= radius**2).astype(np.float32))
        if mask.sum() == 0:
            raise ValueError(f"no finite landmark to build a Grad-CAM target from: {landmarks!r}")
        self.mask = torch.from_numpy(mask)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        m = self.mask.to(output.device, output.dtype)
        return -(output * m).sum() / m.sum()


class MaskedLogitTarget:
    """Grad-CAM target for the segmentation head: the sum of logits inside ``mask`` ((H, W) bool)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = torch.from_numpy(np.asarray(mask, dtype=np.float32))

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[0] * self.mask.to(output.device, output.dtype)).sum()


def grad_cam_maps(model: nn.Module, image: np.ndarray, channels: str = "single",
                  heads: tuple[str, ...] | None = None, disc_radius: float | None = None) -> dict[str, np.ndarray]:
    """Grad-CAM maps at the fourth encoder block for each available head.

    Args:
        model: a :class:`~raysearch.model.TwoHeadUNet` (eval mode, CPU or GPU).
        image: ``(S, S)`` float32 network input in [0, 1].
        channels: the model's heatmap channels (``single``/``per_landmark``).
        heads: which heads (default: every head the model has).
        disc_radius: disc of the heatmap target in network px (default ``max(2, S / 32)``).

    Returns ``{head: (S, S) float32 in [0, 1]}`` (pytorch_grad_cam's min-max scaled CAM at the
    input's size), plus ``"landmarks"``: the (2, 2) predicted network px used by the heatmap target.
    """
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError("Grad-CAM needs the grad-cam package: pip install grad-cam") from exc
    from raysearch.heatmaps import decode_landmarks
    from raysearch.model import grad_cam_target_layer

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be (S, S) float32, got shape {img.shape}")
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(img))[None, None].to(device)
    with torch.no_grad():
        out = model(x)
    available = tuple(h for h in HEADS if out.get("heatmap" if h == "heatmap" else "seg_logits") is not None)
    heads = available if heads is None else tuple(heads)
    for h in heads:
        if h not in available:
            raise ValueError(f"the model has no {h} head; it has {list(available)}")
    layer = grad_cam_target_layer(model)
    s = img.shape
    maps: dict[str, np.ndarray] = {}
    seg_prob = torch.sigmoid(out["seg_logits"])[0, 0].cpu().numpy() if out.get("seg_logits") is not None else None
    if "heatmap" in heads:
        hm = out["heatmap"][0].cpu().numpy()
        pts = decode_landmarks(hm, channels, seg_prob)
        radius = disc_radius if disc_radius is not None else max(2.0, s[1] / 32.0)
        target = MinimumRegionTarget(pts, s, radius, channels)
        with GradCAM(model=HeadOutput(model, "heatmap"), target_layers=[layer]) as cam:
            maps["heatmap"] = cam(input_tensor=x, targets=[target])[0].astype(np.float32)
        maps["landmarks"] = pts
    if "segmentation" in heads:
        mask = out["seg_logits"][0, 0].cpu().numpy() > 0
        if not mask.any():
            mask = np.ones(s, dtype=bool)
        with GradCAM(model=HeadOutput(model, "segmentation"), target_layers=[layer]) as cam:
            maps["segmentation"] = cam(input_tensor=x, targets=[MaskedLogitTarget(mask)])[0].astype(np.float32)
    return maps


def gradcam_panel(checkpoint_path: str | Path, dataset_root: str | Path, image_ids: list[str],
                  out_png: str | Path) -> Path:
    """Paper Figure 9: per image (column), the input and the Grad-CAM map of each head overlaid (jet).

    Red = high activation, dark blue = low. Returns the PNG path.
    """
    from raysearch.data.dataset import load_dataset, load_sample
    from raysearch.data.transforms import resize_sample
    from raysearch.report.figures import _figure, save_png
    from raysearch.training.checkpoint import load_checkpoint

    if not image_ids:
        raise ValueError("gradcam_panel needs at least one image id")
    ck = load_checkpoint(checkpoint_path)
    records = load_dataset(dataset_root).by_id
    missing = [i for i in image_ids if i not in records]
    if missing:
        raise ValueError(f"{dataset_root}: image id(s) {missing} not in the dataset")
    size = ck.config.data.input_size
    results = []
    for image_id in image_ids:
        img = resize_sample(load_sample(records[image_id]), size)["image"].astype(np.float32)
        results.append((image_id, img, grad_cam_maps(ck.model, img, ck.config.model.heatmap_channels)))
    heads = [h for h in HEADS if h in results[0][2]]
    n = len(results)
    fig = _figure(2.6 * n + 0.8, 2.7 * (1 + len(heads)) + 0.3)
    axes = fig.subplots(1 + len(heads), n, squeeze=False)
    for j, (image_id, img, maps) in enumerate(results):
        axes[0][j].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[0][j].set_title(image_id, fontsize=8)
        for i, h in enumerate(heads, start=1):
            axes[i][j].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[i][j].imshow(maps[h], cmap="jet", vmin=0, vmax=1, alpha=0.45)
            if h == "heatmap":
                pts = maps["landmarks"]
                axes[i][j].scatter(pts[:, 0], pts[:, 1], s=14, c="white", marker="x", lw=1)
    titles = ["input"] + [f"Grad-CAM, {h} head" for h in heads]
    for i in range(1 + len(heads)):
        for j in range(n):
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
        axes[i][0].set_ylabel(titles[i], fontsize=8)
    fig.suptitle("Grad-CAM at the fourth encoder block (red: high, blue: low; x: predicted landmarks)", fontsize=9)
    return save_png(fig, out_png)


__all__ = ["HeadOutput", "MaskedLogitTarget", "MinimumRegionTarget", "grad_cam_maps", "gradcam_panel"]
