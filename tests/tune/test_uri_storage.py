"""``--storage`` given as a URI (``s3://...`` on a cluster): a real sweep, its resume and its report.

``file://`` URIs go through exactly the code an ``s3://`` bucket does (pyarrow filesystem calls, the
driver's local copy, uploads from the trials); only the filesystem behind them differs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from raysearch import schema
from raysearch.tune.driver import TuneOptions, run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_sweep_resume_and_report_with_uri_storage(ray_session, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI mistaken for a path would land here as a folder named "file:"
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    uri = f"file://{bucket}"
    opts = TuneOptions(analysis="smoke", scale="smoke", data=str(tiny_dataset), storage=uri, name="remote",
                       workers_per_trial=0, gpus_per_trial=0.0, wandb="disabled", verbose=0)
    res = run_experiment(opts, log=lambda s: None)
    assert len(res.trials) >= 2 and set(res.trials["status"]) == {"TERMINATED"}
    assert not (tmp_path / "file:").exists()

    exp = bucket / "remote"
    for f in (schema.TRIALS_FILE, schema.HISTORY_FILE, schema.LANDMARK_FILE, schema.SEGMENTATION_FILE,
              schema.SPLITS_FILE, "experiment.json"):
        assert (exp / f).is_file(), f
    runs = sorted((exp / "runs").iterdir())
    assert [r.name for r in runs] == sorted(res.trials["trial_id"])
    assert all((r / "trial.parquet").is_file() and (r / schema.CHECKPOINT_FILE).is_file() for r in runs)
    # the driver gathered the tables in its local copy and uploaded them
    assert Path(res.experiment_dir) != exp and (Path(res.experiment_dir) / schema.TRIALS_FILE).is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(exp / schema.TRIALS_FILE), res.trials)
    assert len(pd.read_parquet(exp / schema.LANDMARK_FILE)) == len(res.landmarks) > 0

    # resume from the URI: every trial is finished, nothing is trained again
    stamps = {r.name: (r / "trial.parquet").stat().st_mtime_ns for r in runs}
    again = run_experiment(dataclasses.replace(opts, resume=True), log=lambda s: None)
    assert sorted(again.trials["trial_id"]) == sorted(stamps)
    assert {r.name: (r / "trial.parquet").stat().st_mtime_ns for r in runs} == stamps

    # the report reads the experiment from its URI
    from raysearch.report import ReportOptions, build_report

    out = build_report([f"{uri}/remote"], tmp_path / "report", ReportOptions(gradcam=False, qualitative=False))
    import json

    assert (out / "report.md").is_file()
    assert json.loads((out / "report.json").read_text())["experiments"] == [f"{uri}/remote"]
    beta = pd.read_csv(out / "tables" / "accuracy_beta.csv")
    assert len(beta) == 2 * 3 * 4  # 2 betas x (right, left, both) x 4 thresholds
    # predict picks the experiment's best trial from its URI too
    from raysearch.predict.inference import resolve_checkpoint

    best, said = resolve_checkpoint(f"{uri}/remote")
    assert best.name == schema.CHECKPOINT_FILE and best.read_bytes() == (exp / "runs" / best.parent.name /
                                                                          schema.CHECKPOINT_FILE).read_bytes()
