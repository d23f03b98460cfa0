"""The plain training loop (`raysearch.training.loop.fit`) on small built-in phantoms, on CPU.

Checks that training actually learns (against baselines computed here, and an untrained model
that must fail the same thresholds), that each task trains exactly its heads with the lambda
weights as written, that flips keep heatmap targets on the right side, that divergence stops the
run, and that runs are deterministic and resumable.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from raysearch import schema
from raysearch.config import scale_preset
from raysearch.data.phantom import write_phantom_dataset
from raysearch.data.transforms import flip_horizontal
from raysearch.heatmaps import decode_landmarks
from raysearch.metrics import segmentation_metrics
from raysearch.training.batches import to_tensors
from raysearch.training.evaluate import evaluate_split
from raysearch.training.loop import DivergenceError, MemoryReporter, build_model, fit
from raysearch.training.prepare import prepare_data

TIMING_KEYS = {schema.IMAGES_PER_S}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> Path:
    """40 phantoms at 128 px stored (24 train / 8 val / 8 test with split seed 0)."""
    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms") / "ph40", n=40, size=128, seed=3)


def tiny_cfg(root: Path, **overrides):
    """The smoke preset on ``root`` (64-px input, width 4), one thread, plus ``overrides``."""
    base = {"data.root": str(root), "train.threads": 1, "train.device": "cpu"}
    return scale_preset("smoke").with_overrides({**base, **overrides})


@pytest.fixture(scope="module")
def data64(phantom_root):
    return prepare_data(tiny_cfg(phantom_root))


def _without_timing(history):
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


# -- learning ---------------------------------------------------------------------------------------

LEARN = {
    "data.input_size": 64, "model.base_width": 8, "model.batch_norm": True, "optim.lr": 5e-3,
    "optim.batch_size": 2, "optim.warmup_steps": 10, "train.epochs": 10, "augment.enabled": False,
}
"""About 240 training images at 64 px: val error ~8-13 reference px (mean-landmark baseline ~21), Dice ~0.95."""


def _mean_landmark_baseline(data) -> float:
    """Mean error (reference px) on val of predicting the train split's mean landmark position."""
    mean_net = np.nanmean(data.train.landmarks, axis=0)  # (2, 2) network px
    err_net = np.linalg.norm(data.val.landmarks - mean_net, axis=2)
    return float(np.nanmean(err_net) * 512.0 / data.input_size)


@pytest.mark.slow
def test_fit_learns_landmarks_and_lungs(phantom_root, data64):
    cfg = tiny_cfg(phantom_root, **LEARN)
    baseline_err = _mean_landmark_baseline(data64)
    truths = [m > 0 for m in data64.val.masks]
    all_lung = np.mean([segmentation_metrics(np.ones(t.shape), t)["dice"] for t in truths])
    no_lung = np.mean([segmentation_metrics(np.zeros(t.shape), t)["dice"] for t in truths])
    dice_bar = max(all_lung, no_lung) + 0.35
    err_bar = 0.7 * baseline_err
    assert 15 < baseline_err < 60 and 0.2 < all_lung < 0.6 and no_lung == 0.0  # sanity of the references

    untrained = evaluate_split(build_model(cfg, torch.device("cpu")), data64.val, cfg, torch.device("cpu"))
    u = untrained.summary("val", cfg)
    assert not (u[schema.VAL_ERR] < err_bar) and not (u[schema.VAL_DICE] > dice_bar)

    result = fit(cfg, data64, MemoryReporter())
    best = result.val_metrics
    assert best[schema.VAL_ERR] < err_bar, (best[schema.VAL_ERR], baseline_err)
    assert best[schema.VAL_DICE] > dice_bar, (best[schema.VAL_DICE], all_lung)
    assert result.history[-1][schema.TRAIN_LOSS] < 0.5 * result.history[0][schema.TRAIN_LOSS]
    # the test split was evaluated with the best model, one landmark row per side and image
    assert len(result.landmark_rows) == 2 * len(data64.test)
    assert len(result.segmentation_rows) == len(data64.test)
    assert result.test_metrics[schema.TEST_DICE] > dice_bar
    assert result.test_metrics[schema.TEST_ERR] < err_bar


# -- heads, tasks and loss weights ------------------------------------------------------------------------

def _head_params(model):
    out = {}
    for name in ("heatmap_head", "seg_head"):
        head = getattr(model, name)
        out[name] = None if head is None else torch.cat([p.detach().flatten().clone() for p in head.parameters()])
    return out


class _KeepCheckpoint(MemoryReporter):
    """A reporter that copies every reported checkpoint folder (the loop deletes it after report)."""

    def __init__(self, dest: Path):
        super().__init__()
        self.dest = Path(dest)
        self.copies: list[Path] = []

    def report(self, metrics, checkpoint_dir):
        super().report(metrics, checkpoint_dir)
        copy = self.dest / f"epoch{len(self.copies)}"
        shutil.copytree(checkpoint_dir, copy)
        self.copies.append(copy)


def test_heatmap_task_trains_only_the_heatmap_head(phantom_root, data64):
    cfg = tiny_cfg(phantom_root, **{"loss.task": "heatmap", "train.epochs": 1})
    model = build_model(cfg, torch.device("cpu"))
    assert model.seg_head is None and model.heatmap_head is not None
    result = fit(cfg, data64, MemoryReporter())
    h = result.history[0]
    assert "train/loss_hem" in h and "train/loss_segm" not in h and "val/loss_segm" not in h
    assert h[schema.TRAIN_LOSS] == h[schema.TRAIN_LOSS_HEM]
    assert schema.VAL_ERR in h and schema.VAL_DICE not in h
    assert result.landmark_rows and not result.segmentation_rows


def test_segmentation_task_trains_only_the_lung_head(phantom_root, data64):
    cfg = tiny_cfg(phantom_root, **{"loss.task": "segmentation", "train.epochs": 1})
    model = build_model(cfg, torch.device("cpu"))
    assert model.heatmap_head is None and model.seg_head is not None
    result = fit(cfg, data64, MemoryReporter())
    h = result.history[0]
    assert "train/loss_segm" in h and "train/loss_hem" not in h and "val/loss_hem" not in h
    assert h[schema.TRAIN_LOSS] == h[schema.TRAIN_LOSS_SEGM]
    assert schema.VAL_DICE in h and schema.VAL_ERR not in h
    assert result.segmentation_rows and not result.landmark_rows


def test_multi_trains_both_heads_and_lambdas_weight_the_loss(phantom_root, data64, tmp_path):
    lam_h, lam_s = 0.3, 0.7
    cfg = tiny_cfg(phantom_root, **{"loss.task": "multi", "train.epochs": 1,
                                    "loss.lambda_hem": lam_h, "loss.lambda_segm": lam_s})
    before = _head_params(build_model(cfg, torch.device("cpu")))
    rep = _KeepCheckpoint(tmp_path)
    result = fit(cfg, data64, rep)
    model = build_model(cfg, torch.device("cpu"))
    model.load_state_dict(torch.load(rep.copies[0] / "state.pt", weights_only=True)["model"])
    after = _head_params(model)
    assert not torch.equal(before["heatmap_head"], after["heatmap_head"])
    assert not torch.equal(before["seg_head"], after["seg_head"])
    # eq. 5 as written, for the epoch means of training batches and for validation
    h = result.history[0]
    for split in ("train", "val"):
        joint = h[f"{split}/loss_joint"]
        assert joint == pytest.approx(lam_h * h[f"{split}/loss_hem"] + lam_s * h[f"{split}/loss_segm"], rel=1e-5)
        assert not joint == pytest.approx(0.95 * h[f"{split}/loss_hem"] + 0.05 * h[f"{split}/loss_segm"], rel=1e-3)


def test_zero_segmentation_weight_leaves_the_lung_head_untouched(phantom_root, data64, tmp_path):
    cfg = tiny_cfg(phantom_root, **{"loss.task": "multi", "train.epochs": 1,
                                    "loss.lambda_hem": 1.0, "loss.lambda_segm": 0.0})
    before = _head_params(build_model(cfg, torch.device("cpu")))
    rep = _KeepCheckpoint(tmp_path)
    fit(cfg, data64, rep)
    model = build_model(cfg, torch.device("cpu"))
    model.load_state_dict(torch.load(rep.copies[0] / "state.pt", weights_only=True)["model"])
    after = _head_params(model)
    assert torch.equal(before["seg_head"], after["seg_head"])  # zero gradient -> no Adam step
    assert not torch.equal(before["heatmap_head"], after["heatmap_head"])


# -- sides and flips ----------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", ["single", "per_landmark"])
def test_targets_decode_right_side_on_image_left_also_after_a_flip(phantom_root, data64, channels):
    cfg = tiny_cfg(phantom_root, **{"model.heatmap_channels": channels})
    s = data64.input_size
    for i in range(3):
        sample = {"id": "x", "image": data64.train.images[i], "mask": data64.train.masks[i],
                  "landmarks": data64.train.landmarks[i]}
        for flipped in (False, True):
            smp = flip_horizontal(sample) if flipped else sample
            batch = to_tensors(smp["image"][None], smp["mask"][None], smp["landmarks"][None], cfg)
            hm = batch["heatmap"][0].numpy()
            lm = smp["landmarks"]
            # the patient's right landmark (row 0) lies on the image-left lung (label 1) in both cases
            assert lm[0, 0] < (s - 1) / 2 < lm[1, 0]
            decoded = decode_landmarks(hm, channels, smp["mask"] if channels == "single" else None)
            np.testing.assert_allclose(decoded, lm, atol=0.05)
            assert decoded[0, 0] < (s - 1) / 2
            if channels == "per_landmark":
                y, x = np.unravel_index(np.argmin(hm[0]), hm[0].shape)
                assert x < (s - 1) / 2
                # the minimum of channel 0 sits on/next to the image-left lung (label 1)
                near = smp["mask"][max(0, y - 3):y + 4, max(0, x - 3):x + 4]
                assert (near == 1).any() and not (near == 2).any()


@pytest.mark.slow
def test_the_cpu_preset_itself_trains_stably_and_learns(phantom_root):
    """The README's main job runs the ``cpu`` preset as is (width 8 + batch norm, 96 px, lr 3e-3, 8 epochs):
    it must learn both tasks without diverging. Untrained (1 epoch at lr 1e-9) this split gave a mean
    error of ~150 reference px, R/5 accuracy 0 and Dice 0.24; trained ~9 px, 94 % and 0.69."""
    cfg = scale_preset("cpu").with_overrides({"data.root": str(phantom_root), "train.threads": 1,
                                              "train.device": "cpu", "loss.task": "multi", "loss.beta": 125})
    result = fit(cfg, prepare_data(cfg), MemoryReporter())
    assert len(result.history) == 8 and all(math.isfinite(h[schema.VAL_LOSS]) for h in result.history)
    t = result.test_metrics
    assert t["test/err_ref_mean"] < 25.0 and t["test/acc_r5"] >= 0.75
    assert t["test/dice"] > 0.5


# -- divergence ----------------------------------------------------------------------------------------

def test_absurd_learning_rate_stops_with_divergence_error(phantom_root, data64):
    cfg = tiny_cfg(phantom_root, **{"optim.lr": 1e6, "optim.warmup_steps": 0, "optim.grad_clip": 0.0,
                                    "model.batch_norm": False, "train.epochs": 3})
    with pytest.raises(DivergenceError, match="diverged"):
        fit(cfg, data64, MemoryReporter())


@pytest.mark.parametrize("head", ["heatmap_head", "seg_head"])
def test_a_head_saturated_everywhere_is_reported_as_collapsed(phantom_root, data64, head):
    """The issue's failure: a sigmoid stuck at 1 on every pixel (no minimum to decode, no gradient)."""
    import torch

    from raysearch.training.evaluate import evaluate_split
    from raysearch.training.loop import _check_activations

    cfg = tiny_cfg(phantom_root, **{"loss.task": "multi"})
    model = build_model(cfg, torch.device("cpu"))
    conv = getattr(model, head)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(30.0)  # sigmoid(30) == 1 in float32, everywhere
    val = evaluate_split(model, data64.val, cfg, torch.device("cpu"))
    name = "heatmap" if head == "heatmap_head" else "segmentation"
    with pytest.raises(DivergenceError, match=f"collapsed at epoch 4: the {name} head is saturated"):
        _check_activations(val, cfg, epoch=4)
    with torch.no_grad():
        conv.bias.fill_(3.0)  # high but alive (the cpu preset starts the heatmap head near here)
    _check_activations(evaluate_split(model, data64.val, cfg, torch.device("cpu")), cfg, epoch=0)


@pytest.mark.parametrize("beta", [1.0, 10.0])
def test_small_beta_is_not_mistaken_for_divergence(phantom_root, data64, beta):
    cfg = tiny_cfg(phantom_root, **{"loss.beta": beta, "train.epochs": 2})
    result = fit(cfg, data64, MemoryReporter())
    assert all(math.isfinite(h[schema.VAL_LOSS]) for h in result.history)


# -- determinism and resume ---------------------------------------------------------------------------

@pytest.mark.slow
def test_same_seed_same_metrics_and_resume_matches_uninterrupted(phantom_root, data64, tmp_path):
    cfg = tiny_cfg(phantom_root, **{"train.epochs": 2})
    keep = _KeepCheckpoint(tmp_path / "kept")
    first = fit(cfg, data64, keep)
    second = fit(cfg, data64, MemoryReporter())
    assert _without_timing(first.history) == _without_timing(second.history)
    assert first.test_metrics == second.test_metrics
    assert first.landmark_rows == second.landmark_rows

    # resume from the checkpoint reported after epoch 1 and run to the end
    resumed_reporter = MemoryReporter()
    resumed = fit(cfg, data64, resumed_reporter, resume_dir=keep.copies[0])
    assert len(resumed_reporter.history) == 1  # only epoch 2 was trained again
    # the checkpoint says, without loading weights, which epoch a resumed run trains first
    from raysearch.training.loop import PROGRESS_FILE, resume_start_epoch

    assert resume_start_epoch((keep.copies[0] / PROGRESS_FILE).read_text()) == 1
    assert resume_start_epoch(None) == 0
    assert _without_timing(resumed.history) == _without_timing(first.history)
    assert resumed.best_epoch == first.best_epoch
    assert resumed.test_metrics == first.test_metrics

    other = fit(tiny_cfg(phantom_root, **{"train.epochs": 2, "train.seed": 1}), data64, MemoryReporter())
    assert other.test_metrics != first.test_metrics
