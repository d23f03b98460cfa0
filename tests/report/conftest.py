"""Fixtures that WRITE experiment folders in the documented layout (docs/interfaces.md, "Experiment folder").

The rows are synthetic but shaped like a real sweep: per split seed a fixed set of test images, each
with a per-image, per-side difficulty shared by all configurations (so paired tests have something
to pair), errors drawn around a configuration-dependent scale, per-epoch losses that decay, NaN loss
columns for heads that were not trained and no rows for a missing head.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raysearch import schema
from raysearch.config import scale_preset

DATASET_CHECKSUM = hashlib.sha256(b"synthetic fixture dataset").hexdigest()
N_IMAGES = 60


def split_hash(seed: int) -> str:
    return hashlib.sha256(f"fixture split {seed}".encode()).hexdigest()


def test_ids(seed: int, n_test: int) -> list[str]:
    rng = np.random.default_rng(1000 + seed)
    ids = [f"IMG{i:03d}" for i in range(N_IMAGES)]
    return sorted(rng.choice(ids, size=n_test, replace=False).tolist())


def error_scale(cfg: dict[str, Any]) -> float:
    """Mean landmark error (reference px) of a configuration: falls with beta, rises with a tiny lambda_hem."""
    beta = float(cfg.get("loss.beta", 125.0))
    lam = float(cfg.get("loss.lambda_hem", 0.95))
    return 4.0 + 40.0 / np.sqrt(beta) + 6.0 * (1.0 - lam)


def write_experiment(root: Path, name: str, analysis: str, group_by: list[str], configs: list[dict[str, Any]],
                     seeds: tuple[int, ...] = (0, 1, 2), n_test: int = 12, epochs: int = 6,
                     metric: str = "val/loss_joint", mode: str = "min", noise_seed: int = 0,
                     dataset: dict[str, Any] | None = None, extra_trial_fields: dict[str, dict] | None = None,
                     ids_for_seed=None) -> Path:
    """Write ``root/name`` with one trial per (config, seed); return the folder."""
    folder = root / name
    folder.mkdir(parents=True)
    base = scale_preset("smoke")
    trials, hist, lms, segs = [], [], [], []
    k = 0
    for ci, overrides in enumerate(configs):
        for seed in seeds:
            cfg = base.with_overrides({**overrides, "data.split_seed": seed})
            flat = cfg.flat()
            tid = f"{name}_{k:04d}"
            k += 1
            rng = np.random.default_rng([noise_seed, ci, seed])
            task = flat["loss.task"]
            ids = ids_for_seed(seed) if ids_for_seed else test_ids(seed, n_test)
            scale = error_scale(flat)
            errs = []
            if task != "segmentation":
                for img in ids:
                    for s, side in enumerate(schema.SIDES):
                        # difficulty shared by every configuration (same image, side, seed)
                        d = np.random.default_rng([7, seed, int(img[3:]), s]).gamma(2.0, 0.5)
                        e = float(scale * d * rng.lognormal(0.0, 0.35) * (1.15 if side == "left" else 1.0))
                        dx, dy = rng.normal(0, e / 1.5), rng.normal(0, e / 1.5)
                        errs.append(e)
                        lms.append({"trial_id": tid, "split_seed": seed, "image_id": img, "side": side,
                                    "error_ref_px": e, "error_stored_px": e / 2, "error_orig_px": e,
                                    "error_mm": e * 0.35, "dx_stored_px": dx, "dy_stored_px": dy,
                                    "dy_ref_px": dy * 2, "pred_x": 100 + dx, "pred_y": 200 + dy,
                                    "true_x": 100.0, "true_y": 200.0})
            dice_mean = 0.965 + 0.004 * float(flat["loss.lambda_segm"]) if task != "heatmap" else None
            if task != "heatmap":
                for img in ids:
                    dice = float(np.clip(rng.normal(dice_mean, 0.01), 0, 1))
                    segs.append({"trial_id": tid, "split_seed": seed, "image_id": img, "dice": dice,
                                 "jaccard": dice / (2 - dice), "auc": float(np.clip(rng.normal(0.98, 0.005), 0, 1)),
                                 "accuracy": float(np.clip(rng.normal(0.983, 0.004), 0, 1)),
                                 "precision": float(np.clip(rng.normal(0.971, 0.01), 0, 1)),
                                 "recall": float(np.clip(rng.normal(0.969, 0.01), 0, 1))})
            for ep in range(1, epochs + 1):
                decay = np.exp(-0.45 * ep)
                hem = 0.02 + 0.3 * decay * rng.uniform(0.9, 1.1) if task != "segmentation" else np.nan
                seg = 0.03 + 0.5 * decay * rng.uniform(0.9, 1.1) if task != "heatmap" else np.nan
                lh, ls = float(flat["loss.lambda_hem"]), float(flat["loss.lambda_segm"])
                joint = (lh * hem + ls * seg) if task == "multi" else (hem if task == "heatmap" else seg)
                hist.append({"trial_id": tid, "split_seed": seed, "epoch": ep,
                             "train/loss_joint": joint * 0.9, "train/loss_hem": hem * 0.9 if hem == hem else np.nan,
                             "train/loss_segm": seg * 0.9 if seg == seg else np.nan,
                             "val/loss_joint": joint, "val/loss_hem": hem, "val/loss_segm": seg,
                             "val/err_ref_mean": scale * (1 + decay), "val/dice": 0.9, "val/acc_r10": 50.0,
                             "lr": 1e-3})
            row = {"trial_id": tid, "status": "TERMINATED", "error": "", "split_seed": seed,
                   "split_hash": split_hash(seed), "dataset_checksum": (dataset or {}).get("checksum", DATASET_CHECKSUM),
                   schema.BEST_EPOCH: epochs}
            for key, v in flat.items():
                row[f"config/{key}"] = json.dumps(v) if isinstance(v, list) else v
            row["val/loss_joint"] = float(hist[-1]["val/loss_joint"])
            row["val/err_ref_mean"] = float(np.mean(errs)) if errs else np.nan
            row["test/err_ref_mean"] = float(np.mean(errs)) if errs else np.nan
            row["test/dice"] = dice_mean if dice_mean is not None else np.nan
            row["checkpoint"] = f"runs/{tid}/best.pt"
            row.update({"n_train": 36, "n_val": 12, "n_test": len(ids), "seconds": 1.5})
            row.update((extra_trial_fields or {}).get(tid, {}))
            trials.append(row)
    cols_l, cols_s = list(schema.LANDMARK_COLUMNS), list(schema.SEGMENTATION_COLUMNS)
    pd.DataFrame(trials).to_parquet(folder / schema.TRIALS_FILE, index=False)
    pd.DataFrame(hist).to_parquet(folder / schema.HISTORY_FILE, index=False)
    pd.DataFrame(lms, columns=cols_l).to_parquet(folder / schema.LANDMARK_FILE, index=False)
    pd.DataFrame(segs, columns=cols_s).to_parquet(folder / schema.SEGMENTATION_FILE, index=False)
    meta = {
        "analysis": analysis, "description": f"synthetic fixture ({analysis})", "group_by": group_by,
        "metric": metric, "mode": mode, "scale": "smoke",
        "dataset": dataset or {"name": "fixture", "root": str(root / "no-such-dataset"), "checksum": DATASET_CHECKSUM,
                               "n_images": N_IMAGES},
        "split_seeds": list(seeds), "split_hash": hashlib.sha256(b"".join(split_hash(s).encode() for s in seeds)).hexdigest(),
        "created": "2025-01-01T00:00:00+00:00", "raysearch_version": "0.1.0",
        "command": f"python -m raysearch.tune --analysis {analysis} (fixture)",
    }
    (folder / "experiment.json").write_text(json.dumps(meta, indent=2))
    (folder / schema.SPLITS_FILE).write_text("{}")
    return folder


BETAS = (10.0, 50.0, 125.0)
LAMBDAS = ((0.95, 0.05), (0.5, 0.5))


@pytest.fixture(scope="session")
def exp_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experiments")


@pytest.fixture(scope="session")
def beta_exp(exp_root) -> Path:
    """Analysis I: three betas x three split seeds x 12 test images x 2 sides."""
    return write_experiment(exp_root, "beta_sweep", "beta", ["loss.beta"], [{"loss.beta": b} for b in BETAS])


@pytest.fixture(scope="session")
def lambda_exp(exp_root) -> Path:
    """Analysis II: two (lambda_hem, lambda_segm) pairs, multi-task."""
    return write_experiment(exp_root, "lambda_sweep", "lambda", ["loss.lambda_hem", "loss.lambda_segm"],
                            [{"loss.lambda_hem": a, "loss.lambda_segm": b} for a, b in LAMBDAS], noise_seed=1)


@pytest.fixture(scope="session")
def tasks_exps(exp_root) -> list[Path]:
    """Analysis III: a single-task sweep (heatmap-only and segmentation-only) and a multi-task sweep."""
    single = write_experiment(exp_root, "single_task", "tasks", ["loss.task"],
                              [{"loss.task": "heatmap"}, {"loss.task": "segmentation"}], noise_seed=2)
    multi = write_experiment(exp_root, "multi_task", "tasks", ["loss.task"], [{"loss.task": "multi"}], noise_seed=3)
    return [single, multi]


@pytest.fixture(scope="session")
def sweep_exp(exp_root) -> Path:
    """An Optuna-like search: ten trials with random lr and beta, one split seed each."""
    rng = np.random.default_rng(5)
    configs = [{"optim.lr": float(10 ** rng.uniform(-4, -2)), "loss.beta": float(rng.uniform(10, 200))}
               for _ in range(10)]
    return write_experiment(exp_root, "optuna_search", "optuna", [], configs, seeds=(0,), metric="test/err_ref_mean")


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory) -> Path:
    """A small phantom dataset folder (12 images of 128 px) for checkpoint-backed figures."""
    from raysearch.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms") / "ph", n=12, size=128, seed=0)


@pytest.fixture(scope="session")
def checkpoint_exp(exp_root, phantom_dataset) -> Path:
    """A multi-task beta experiment on the phantom dataset whose trials have real (untrained) checkpoints."""
    import torch

    from raysearch.data.dataset import load_dataset
    from raysearch.model import TwoHeadUNet
    from raysearch.training.checkpoint import save_checkpoint

    ds = load_dataset(phantom_dataset)
    ids = ds.ids
    dataset = {"name": ds.name, "root": str(phantom_dataset), "checksum": ds.checksum, "n_images": len(ds)}
    folder = write_experiment(exp_root, "ckpt_sweep", "beta", ["loss.beta"], [{"loss.beta": b} for b in (25.0, 125.0)],
                              seeds=(0,), dataset=dataset, ids_for_seed=lambda seed: ids[:6])
    trials = pd.read_parquet(folder / schema.TRIALS_FILE)
    base = scale_preset("smoke")
    for i, (_, r) in enumerate(trials.iterrows()):
        cfg = base.with_overrides({"loss.beta": r["config/loss.beta"]})
        torch.manual_seed(i)
        save_checkpoint(folder / r["checkpoint"], TwoHeadUNet(cfg.model, cfg.loss.task), cfg, epoch=2, metrics={})
    return folder
