"""Real Ray Tune sweeps on the session's local Ray (smoke scale, tiny phantom set)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raysearch import schema
from raysearch.tune.driver import TuneOptions, run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _opts(tiny_dataset, tmp_path, name, analysis="smoke", **kw):
    base = dict(analysis=analysis, scale="smoke", data=str(tiny_dataset), storage=str(tmp_path), name=name,
                workers_per_trial=0, gpus_per_trial=0.0, wandb="offline", verbose=0)
    base.update(kw)
    return TuneOptions(**base)


SWEEP_SPACE = """\
description: "the smoke space with three split seeds (issue 5's report acceptance)"
analysis: beta
base: {loss.task: heatmap}
epochs: {smoke: 2}
search:
  loss.beta: {grid: [50, 125]}
  data.split_seed: {grid: [0, 1, 2]}
group_by: [loss.beta]
progress_columns: [val/err_ref_mean]
"""


@pytest.fixture(scope="module")
def smoke_sweep(ray_session, tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    space = tmp / "smoke3.yaml"
    space.write_text(SWEEP_SPACE)
    return run_experiment(_opts(tiny_dataset, tmp, "smoke-test", analysis=str(space)), log=lambda s: None)


@pytest.mark.timeout(600)
def test_smoke_sweep_writes_every_table(smoke_sweep):
    exp = smoke_sweep.experiment_dir
    for f in (schema.TRIALS_FILE, schema.HISTORY_FILE, schema.LANDMARK_FILE, schema.SEGMENTATION_FILE,
              schema.SPLITS_FILE, "experiment.json"):
        assert (exp / f).exists(), f
    trials = pd.read_parquet(exp / schema.TRIALS_FILE)
    assert len(trials) == 6 and set(trials["status"]) == {"TERMINATED"}
    assert sorted(trials["config/loss.beta"].tolist()) == [50.0] * 3 + [125.0] * 3
    assert sorted(trials["split_seed"].tolist()) == [0, 0, 1, 1, 2, 2]
    # every trial of a seed saw the same split (the Wilcoxon pairing relies on it)
    assert trials.groupby("split_seed")["split_hash"].nunique().max() == 1
    history = pd.read_parquet(exp / schema.HISTORY_FILE)
    assert history.groupby("trial_id")[schema.EPOCH].apply(list).map(list).tolist() == [[0, 1]] * 6
    lm = pd.read_parquet(exp / schema.LANDMARK_FILE)
    assert list(lm.columns) == list(schema.LANDMARK_COLUMNS)
    n_test = int(trials["n_test"].iloc[0])
    assert len(lm) == 6 * 2 * n_test  # every test image, both sides, every trial
    assert np.all(lm["error_ref_px"] >= 0)
    # heatmap-only task: no segmentation rows, no segmentation loss
    assert len(pd.read_parquet(exp / schema.SEGMENTATION_FILE)) == 0
    for tid in trials["trial_id"]:
        assert (exp / "runs" / tid / "best.pt").exists()
    info = json.loads((exp / "experiment.json").read_text())
    assert info["group_by"] == ["loss.beta"] and info["dataset"]["n_images"] == 30
    assert "both" in smoke_sweep.summary and "beta=50" in smoke_sweep.summary
    # in-process trials reuse the finished trials' processes: 6 trials, 2 at a time, so at most 2 processes
    pids = {json.loads(line)["pid"] for f in exp.glob("*/result.json") for line in f.read_text().splitlines()}
    assert 1 <= len(pids) <= 2, pids
    # finished trials keep only a completion marker as Tune checkpoint, no resume state
    assert not list(exp.rglob("state.pt"))
    markers = list(exp.glob("*/checkpoint_*/complete.json"))
    assert len(markers) == 6 and all(json.loads(m.read_text())["complete"] for m in markers)
    from raysearch.predict.inference import resolve_checkpoint  # predict follows a marker to the best weights

    tid = json.loads(markers[0].read_text())["trial_id"]
    assert resolve_checkpoint(markers[0].parent.parent)[0] == exp / "runs" / tid / "best.pt"


@pytest.mark.timeout(600)
def test_wandb_offline_run_per_trial_with_its_config(smoke_sweep):
    exp = smoke_sweep.experiment_dir
    runs = sorted(exp.glob("*/wandb/offline-run-*"))
    assert len(runs) == 6
    # read at once: the logging actors tear W&B down before the sweep returns, so the files are complete
    for run in runs:
        blob = b"".join(p.read_bytes() for p in run.glob("*.wandb"))
        assert b"loss.beta" in blob and b"optim.lr" in blob, run  # full config
        assert b"analysis=beta" in blob, run  # tags
        assert schema.TEST_ERR.encode() in blob, run  # the final test metrics reached the run file


@pytest.mark.timeout(600)
def test_fractional_gpus_pack_four_trials_on_one_gpu(ray_session, tiny_dataset, tmp_path):
    res = run_experiment(_opts(tiny_dataset, tmp_path, "pack", gpus_per_trial=0.25, cpus_per_trial=0.25,
                               max_concurrent=4, overrides=["train.epochs=3"], wandb="disabled"), log=lambda s: None)
    trials = res.trials
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    assert set(trials["gpu_ids"]) == {"0"}  # each sees the same (logical) GPU
    events = sorted([(t, 1) for t in trials["started_at"]] + [(t, -1) for t in trials["finished_at"]])
    running, peak = 0, 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak == 4


@pytest.mark.timeout(600)
def test_a_trial_that_raises_once_is_retried(ray_session, tiny_dataset, tmp_path):
    res = run_experiment(_opts(tiny_dataset, tmp_path, "retry", inject_failure_once=True, max_failures=1,
                               wandb="disabled"), log=lambda s: None)
    assert set(res.trials["status"]) == {"TERMINATED"} and len(res.trials) == 4
    markers = list((tmp_path / "retry" / "runs").glob("*/.injected-failure"))
    assert len(markers) == 4  # each trial really failed once


@pytest.mark.timeout(600)
def test_a_trial_that_keeps_failing_is_reported(ray_session, tiny_dataset, tmp_path):
    res = run_experiment(_opts(tiny_dataset, tmp_path, "fail", inject_failure_once=True, max_failures=0,
                               wandb="disabled"), log=lambda s: None)
    assert len(res.trials) == 4
    assert set(res.trials["status"]) == {"ERROR"}
    assert res.trials["error"].str.contains("injected failure").all()


@pytest.mark.timeout(900)
def test_optuna_asha_stops_poor_trials_early(ray_session, tiny_dataset, tmp_path):
    res = run_experiment(_opts(tiny_dataset, tmp_path, "opt", analysis="optuna", num_samples=6,
                               overrides=["train.epochs=3"], wandb="disabled"), log=lambda s: None)
    hist = res.history
    epochs = hist.groupby("trial_id")[schema.EPOCH].max() + 1
    assert len(epochs) == 6
    assert (epochs < 3).any(), "ASHA stopped no trial early"
    assert (epochs == 3).any()
    status = res.trials.set_index("trial_id")["status"]
    assert set(status) <= {"TERMINATED", "STOPPED_EARLY"} and (status == "STOPPED_EARLY").any()
    assert (status[epochs[epochs < 3].index] == "STOPPED_EARLY").all()
    # trials that ran every epoch have test rows; early-stopped ones have none
    assert set(res.landmarks["trial_id"]) == set(status[status == "TERMINATED"].index)
    betas = res.trials["config/loss.beta"].astype(float)
    assert betas.nunique() > 1 and betas.between(1, 200).all()  # sampled by Optuna in the space's range
    lam = res.trials["config/loss.lambda_hem"].astype(float) + res.trials["config/loss.lambda_segm"].astype(float)
    np.testing.assert_allclose(lam, 1.0)


@pytest.mark.timeout(900)
def test_train_worker_group_mode(ray_session, tiny_dataset, tmp_path):
    """``--workers-per-trial 2``: each trial runs a Ray Train worker group (the GPU-cluster mode), here two
    CPU workers training with DDP (gloo)."""
    space = tmp_path / "one.yaml"
    space.write_text(
        "description: one trial\nanalysis: beta\nbase: {loss.task: multi}\nepochs: {smoke: 2}\n"
        "search: {loss.beta: {grid: [125]}, data.split_seed: {grid: [0]}}\ngroup_by: [loss.beta]\n")
    res = run_experiment(_opts(tiny_dataset, tmp_path, "workers", analysis=str(space), workers_per_trial=2,
                               cpus_per_trial=0.5, wandb="disabled"), log=lambda s: None)
    t = res.trials
    assert len(t) == 1 and t["status"].iloc[0] == "TERMINATED"
    assert int(t["world_size"].iloc[0]) == 2
    assert len(res.segmentation) > 0 and len(res.landmarks) > 0
    assert res.history[schema.EPOCH].tolist() == [0, 1]
    # the Train run's last checkpoint is the completion marker; the resume state is gone
    exp = tmp_path / "workers"
    assert not list(exp.rglob("state.pt"))
    assert len(list((exp / "train_runs").rglob("complete.json"))) == 1


@pytest.mark.timeout(600)
def test_report_on_the_real_sweep_matches_a_direct_recomputation(smoke_sweep, tmp_path):
    """Issue 5's acceptance on a real sweep (2 betas x 3 seeds): tables equal a recomputation from the
    per-image rows, Wilcoxon p-values equal scipy's, a mismatched split hash is refused."""
    import shutil

    from scipy.stats import wilcoxon

    from raysearch.report import ReportOptions, build_report
    from raysearch.report.experiments import ReportError

    exp = smoke_sweep.experiment_dir
    out = build_report([exp], tmp_path / "report", ReportOptions(gradcam=True, qualitative=True))
    acc = pd.read_csv(out / "tables" / "accuracy_beta.csv")
    assert len(acc) == 2 * 3 * 4  # 2 betas x (right, left, both) x 4 thresholds
    trials = pd.read_parquet(exp / schema.TRIALS_FILE).set_index("trial_id")
    lm = pd.read_parquet(exp / schema.LANDMARK_FILE)
    lm["beta"] = lm["trial_id"].map(trials["config/loss.beta"])
    for beta, label in ((50.0, "β=50"), (125.0, "β=125")):
        for divisor, t in ((1, 100.0), (5, 20.0)):
            per_seed = [100 * np.mean(g["error_ref_px"].to_numpy() <= t)
                        for _, g in lm[lm["beta"] == beta].groupby("split_seed")]
            row = acc[(acc["configuration"] == label) & (acc["side"] == "both") & (acc["divisor"] == divisor)].iloc[0]
            assert row["accuracy_mean_pct"] == pytest.approx(np.mean(per_seed), abs=1e-6)
            assert row["accuracy_std_pct"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-6)
    tests = pd.read_csv(out / "tables" / "wilcoxon.csv")
    a = lm[lm["beta"] == 50.0].set_index(["split_seed", "image_id", "side"])["error_ref_px"]
    b = lm[lm["beta"] == 125.0].set_index(["split_seed", "image_id", "side"])["error_ref_px"]
    a, b = a.align(b, join="inner")
    p = tests[tests["side"] == "both"]["p_value"].iloc[0]
    assert p == pytest.approx(wilcoxon(a.to_numpy(), b.to_numpy()).pvalue, rel=1e-9)
    figures = list((out / "figures").glob("*.png"))
    assert {"losses.png", "qualitative.png", "gradcam.png"} <= {f.name for f in figures}
    assert all(f.stat().st_size > 5000 for f in figures)
    # a copy whose split hash for one seed differs is refused
    bad = tmp_path / "bad"
    shutil.copytree(exp, bad, ignore=shutil.ignore_patterns("run_trial_*", "train_runs"))
    t = pd.read_parquet(bad / schema.TRIALS_FILE)
    t.loc[t.index[0], "split_hash"] = "0" * 64
    t.to_parquet(bad / schema.TRIALS_FILE)
    with pytest.raises(ReportError, match="split"):
        build_report([bad], tmp_path / "report2", ReportOptions(gradcam=False, qualitative=False))
