"""`python -m raysearch.train`, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raysearch import schema
from raysearch.config import RunConfig
from raysearch.data.phantom import write_phantom_dataset
from raysearch.data.splits import Splits
from raysearch.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysearch.train", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    return write_phantom_dataset(tmp_path_factory.mktemp("cli") / "ph", n=30, size=128, seed=5)


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(phantom_dir, tmp_path):
    out = tmp_path / "run1"
    res = cli("--scale", "smoke", "--data", phantom_dir, "--out", out, "train.threads=1", "loss.beta=50")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in (schema.CONFIG_FILE, schema.CHECKPOINT_FILE, schema.HISTORY_FILE, schema.LANDMARK_FILE,
                 schema.SEGMENTATION_FILE, schema.TRIALS_FILE, schema.SPLITS_FILE, "experiment.json"):
        assert (out / name).is_file(), f"{name} missing; have {sorted(p.name for p in out.iterdir())}"
    # the summary
    assert "test accuracy (R = 100 reference px)" in res.stdout
    assert "mean error" in res.stdout and "Dice" in res.stdout and "best epoch" in res.stdout

    cfg = RunConfig.from_yaml(out / schema.CONFIG_FILE)
    assert cfg.scale == "smoke" and cfg.loss.beta == 50.0 and cfg.train.threads == 1
    assert Path(cfg.data.root) == phantom_dir.resolve()
    assert load_checkpoint(out, expected=cfg).config == cfg

    n_test = len(Splits.load(out / schema.SPLITS_FILE).for_seed(cfg.data.split_seed)["test"])
    hist = pd.read_parquet(out / schema.HISTORY_FILE)
    assert list(hist[schema.EPOCH]) == list(range(cfg.train.epochs))
    assert (hist["trial_id"] == "run1").all()
    lm = pd.read_parquet(out / schema.LANDMARK_FILE)
    assert list(lm.columns) == list(schema.LANDMARK_COLUMNS) and len(lm) == 2 * n_test
    seg = pd.read_parquet(out / schema.SEGMENTATION_FILE)
    assert list(seg.columns) == list(schema.SEGMENTATION_COLUMNS) and len(seg) == n_test
    trials = pd.read_parquet(out / schema.TRIALS_FILE)
    assert len(trials) == 1 and trials.loc[0, "config/loss.beta"] == 50.0
    assert trials.loc[0, "n_test"] == n_test and trials.loc[0, "checkpoint"] == schema.CHECKPOINT_FILE
    assert trials.loc[0, schema.TEST_ERR] == pytest.approx(lm["error_ref_px"].mean())
    exp = json.loads((out / "experiment.json").read_text())
    assert exp["scale"] == "smoke" and exp["dataset"]["n_images"] == 30 and exp["split_seeds"] == [0]

    # a second run into the same folder is refused unless --force
    again = cli("--scale", "smoke", "--data", phantom_dir, "--out", out)
    assert again.returncode != 0 and "is not empty" in again.stderr + again.stdout
    assert "--force" in again.stderr + again.stdout


def test_unknown_override_exits_2_with_a_suggestion(phantom_dir, tmp_path):
    res = cli("--scale", "smoke", "--data", phantom_dir, "--out", tmp_path / "x", "loss.lamda_hem=0.5")
    assert res.returncode == 2
    assert "Did you mean 'loss.lambda_hem'" in res.stderr
    assert not (tmp_path / "x").exists()  # nothing written before the config is valid
    bad = cli("--scale", "smoke", "--out", tmp_path / "y", "train.epochs=many")
    assert bad.returncode == 2 and "train.epochs must be an integer, got 'many'" in bad.stderr
