"""Training batches: augmentation of prepared arrays and conversion to tensors.

:func:`augment_arrays` is pure numpy and is what both the plain loop and the Ray Data pipeline
(``map_batches``) run, so the two paths see the same augmentation stream for the same seed.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from raysearch.config import RunConfig
from raysearch.data.transforms import augment, epoch_order, sample_rng
from raysearch.geometry import reference_to_network_px
from raysearch.heatmaps import heatmap_weights, render_heatmap_torch


def augment_arrays(images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, indices: np.ndarray,
                   epoch: int, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment a batch; returns new ``(images, masks, landmarks)`` arrays (network px).

    Sample ``indices[i]`` of epoch ``epoch`` always gets the same random draw
    (``sample_rng(train.seed, epoch, index)``), whatever the batch it lands in.
    """
    if not cfg.augment.enabled:
        return images, masks, landmarks
    out_i = np.empty_like(images)
    out_m = np.empty_like(masks)
    out_l = np.empty_like(landmarks)
    for j in range(len(images)):
        sample = {"id": "", "image": images[j], "mask": masks[j], "landmarks": landmarks[j]}
        aug = augment(sample, sample_rng(cfg.train.seed, int(epoch), int(indices[j])), cfg.augment)
        out_i[j], out_m[j], out_l[j] = aug["image"], aug["mask"], aug["landmarks"]
    return out_i, out_m, out_l


def to_tensors(images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, cfg: RunConfig,
               device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Return the model input and targets of a batch.

    ``image`` (B,1,S,S) float32; ``seg`` (B,1,S,S) float32 {0,1} (both lungs);
    ``heatmap`` (B,C,S,S) float32 target ``tanh(pi d / beta_net)``; ``heatmap_weight`` (B,C)
    (0 for an unannotated landmark channel); ``landmarks`` (B,2,2) network px.
    """
    size = images.shape[-1]
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    seg = torch.from_numpy((masks > 0).astype(np.float32)).unsqueeze(1)
    lm = torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float64))
    beta_net = reference_to_network_px(cfg.loss.beta, size)
    channels = cfg.model.heatmap_channels
    hm = render_heatmap_torch(lm, (size, size), beta_net, channels)
    w = torch.from_numpy(np.stack([heatmap_weights(l, channels) for l in landmarks]).astype(np.float32))
    batch = {"image": x, "seg": seg, "heatmap": hm.float(), "heatmap_weight": w, "landmarks": lm}
    return {k: v.to(device) for k, v in batch.items()}


def iterate_train_batches(images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, epoch: int,
                          cfg: RunConfig) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield augmented numpy batches of one epoch in the plain (non-Ray) loop."""
    order = epoch_order(len(images), cfg.train.seed, epoch)
    bs = cfg.optim.batch_size
    for start in range(0, len(order), bs):
        idx = order[start:start + bs]
        yield augment_arrays(images[idx], masks[idx], landmarks[idx], idx, epoch, cfg)
