"""Fixtures for the predict tests: phantom images, a short-trained and an untrained checkpoint.

Ray: the session-scoped ``ray_session`` of ``tests/conftest.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raysearch.config import apply_overrides, scale_preset
from raysearch.data.phantom import generate_phantom, write_phantom_dataset
from raysearch.model import TwoHeadUNet
from raysearch.training.checkpoint import save_checkpoint

# A config that learns on 128-px phantoms in well under a minute on 2 cores (measured: the dome
# error falls to ~10 reference px in 25 epochs, ~50 s; see docs/predict.md).
QUICK_OVERRIDES = {
    "model.batch_norm": True, "model.base_width": 8, "data.input_size": 64,
    "data.phantom_n": 60, "data.phantom_size": 128, "augment.enabled": False,
    "optim.lr": 5e-3, "optim.warmup_steps": 10, "loss.lambda_hem": 0.5, "loss.lambda_segm": 0.5,
    "train.epochs": 25, "train.threads": 1, "train.device": "cpu",
}


def quick_config(**extra):
    """The quick phantom config (scale cpu + QUICK_OVERRIDES + ``extra`` dotted keys)."""
    return apply_overrides(scale_preset("cpu"), {**QUICK_OVERRIDES, **extra})


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """Path of a run folder (best.pt + experiment tables) trained on 60 phantoms of 128 px (seed 0)."""
    from raysearch.train import run

    root = tmp_path_factory.mktemp("phantoms")
    data = write_phantom_dataset(root / "ph", n=60, size=128, seed=0)
    cfg = quick_config(**{"data.root": str(data)})
    out = tmp_path_factory.mktemp("run") / "quick"
    run(cfg, out, log=lambda *a, **k: None)
    return out


def save_untrained(path, task: str = "multi", channels: str = "single", seed: int = 0, **extra):
    """Write a randomly initialised checkpoint of the quick config; return the best.pt path."""
    cfg = quick_config(**{"loss.task": task, "model.heatmap_channels": channels, **extra})
    torch.manual_seed(seed)
    model = TwoHeadUNet(cfg.model, cfg.loss.task)
    return save_checkpoint(path, model, cfg, epoch=0, metrics={})


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory):
    """best.pt of the quick config with random (He) weights: the model a test must beat."""
    return save_untrained(tmp_path_factory.mktemp("untrained") / "best.pt")


@pytest.fixture(scope="session")
def test_phantoms(tmp_path_factory):
    """Eight unseen phantoms (seed 1) of 128 px as PNG files; returns (folder, {id: landmarks (2,2)})."""
    import cv2

    folder = tmp_path_factory.mktemp("unseen")
    truth = {}
    for i in range(8):
        sample, _ = generate_phantom(seed=1, size=128, index=i)
        cv2.imwrite(str(folder / f"{sample['id']}.png"), np.round(sample["image"] * 255).astype(np.uint8))
        truth[sample["id"]] = sample["landmarks"]
    return folder, truth
