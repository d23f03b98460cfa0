"""Reading experiment folders: strict about the layout, tolerant only of what it allows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysearch import schema
from raysearch.report.experiments import ReportError, load_experiment, load_experiments, provenance

from .conftest import BETAS, N_IMAGES


def _copy(src: Path, tmp_path: Path, name: str | None = None) -> Path:
    dst = tmp_path / (name or src.name)
    shutil.copytree(src, dst)
    return dst


def test_loads_documented_layout(beta_exp):
    es = load_experiments([beta_exp])
    assert len(es.trials) == len(BETAS) * 3
    assert es.group_by == ["loss.beta"]
    assert es.configurations() == ["β=10", "β=50", "β=125"]  # numeric order, not text order
    assert set(es.landmarks["configuration"]) == set(es.configurations())
    assert len(es.landmarks) == len(BETAS) * 3 * 12 * 2
    prov = provenance(es)
    assert prov["n_images"] == N_IMAGES and prov["dataset"] == "fixture"
    assert [s["split_seed"] for s in prov["splits"]] == [0, 1, 2]
    assert prov["splits"][0]["n_test"] == 12


@pytest.mark.parametrize("filename", [schema.TRIALS_FILE, schema.HISTORY_FILE, schema.LANDMARK_FILE,
                                      schema.SEGMENTATION_FILE, "experiment.json"])
def test_missing_file_is_named(beta_exp, tmp_path, filename):
    d = _copy(beta_exp, tmp_path)
    (d / filename).unlink()
    with pytest.raises(ReportError) as exc:
        load_experiment(d)
    assert str(d) in str(exc.value) and filename in str(exc.value)


def test_missing_column_is_named(beta_exp, tmp_path):
    d = _copy(beta_exp, tmp_path)
    lm = pd.read_parquet(d / schema.LANDMARK_FILE).drop(columns="error_ref_px")
    lm.to_parquet(d / schema.LANDMARK_FILE)
    with pytest.raises(ReportError, match=r"landmark_errors\.parquet: missing column\(s\) \['error_ref_px'\]"):
        load_experiment(d)


def test_missing_experiment_key_and_group_by_column(beta_exp, tmp_path):
    d = _copy(beta_exp, tmp_path)
    meta = json.loads((d / "experiment.json").read_text())
    meta["group_by"] = ["loss.bta"]
    (d / "experiment.json").write_text(json.dumps(meta))
    with pytest.raises(ReportError, match=r"group_by names 'loss.bta'.*config/loss.bta"):
        load_experiment(d)
    del meta["split_hash"]
    (d / "experiment.json").write_text(json.dumps(meta))
    with pytest.raises(ReportError, match=r"experiment.json: missing key\(s\) \['split_hash'\]"):
        load_experiment(d)


def test_unknown_trial_and_non_finite_error_rejected(beta_exp, tmp_path):
    d = _copy(beta_exp, tmp_path)
    lm = pd.read_parquet(d / schema.LANDMARK_FILE)
    bad = lm.copy()
    bad.loc[3, "trial_id"] = "ghost"
    bad.to_parquet(d / schema.LANDMARK_FILE)
    with pytest.raises(ReportError, match=r"landmark_errors\.parquet: trial_id\(s\) \['ghost'\]"):
        load_experiment(d)
    bad = lm.copy()
    bad.loc[5, "error_ref_px"] = np.nan
    bad.to_parquet(d / schema.LANDMARK_FILE)
    with pytest.raises(ReportError, match=r"error_ref_px, first: row 5 \(trial .*IMG.*\): nan"):
        load_experiment(d)


def test_nan_loss_columns_of_untrained_heads_are_accepted(tasks_exps):
    es = load_experiments(tasks_exps)
    hm = es.trials[es.trials["config/loss.task"] == "heatmap"]["trial_id"]
    h = es.history[es.history["trial_id"].isin(hm)]
    assert h["val/loss_segm"].isna().all() and h["val/loss_hem"].notna().all()
    assert es.configurations() == ["task=heatmap", "task=segmentation", "task=multi"]


def test_mismatched_split_hash_is_refused_naming_trials_and_seed(tasks_exps, tmp_path):
    single = _copy(tasks_exps[0], tmp_path)
    t = pd.read_parquet(single / schema.TRIALS_FILE)
    victim = t.index[t["split_seed"] == 1][0]
    t.loc[victim, "split_hash"] = "0" * 64
    t.to_parquet(single / schema.TRIALS_FILE)
    with pytest.raises(ReportError) as exc:
        load_experiments([single, tasks_exps[1]])
    msg = str(exc.value)
    assert "split seed 1" in msg and t.loc[victim, "trial_id"] in msg
    assert "multi_task" in msg or "single_task_0" in msg  # the other trial is named too
    assert "cannot be paired" in msg


def test_different_datasets_refused(beta_exp, lambda_exp, tmp_path):
    d = _copy(lambda_exp, tmp_path)
    meta = json.loads((d / "experiment.json").read_text())
    meta["dataset"]["checksum"] = "f" * 64
    (d / "experiment.json").write_text(json.dumps(meta))
    with pytest.raises(ReportError, match="different datasets"):
        load_experiments([beta_exp, d])


def test_failed_trial_is_kept_but_excluded(beta_exp, tmp_path):
    d = _copy(beta_exp, tmp_path)
    t = pd.read_parquet(d / schema.TRIALS_FILE)
    t.loc[0, "status"] = "ERROR"
    t.loc[0, "error"] = "RuntimeError: diverged"
    t.to_parquet(d / schema.TRIALS_FILE)
    es = load_experiments([d])
    assert bool(es.trials.loc[0, "failed"])
    assert t.loc[0, "trial_id"] not in set(es.ok_trials["trial_id"])
    assert len(es.ok_trials) == len(t) - 1


def test_empty_tables_without_schema_are_accepted(beta_exp, tmp_path):
    """A sweep whose every trial failed writes history/landmark tables with no rows and no columns."""
    d = _copy(beta_exp, tmp_path)
    pd.DataFrame().to_parquet(d / schema.HISTORY_FILE)
    pd.DataFrame().to_parquet(d / schema.SEGMENTATION_FILE)
    e = load_experiment(d)
    assert e.history.empty and "val/loss_joint" in e.history.columns and e.segmentation.empty
