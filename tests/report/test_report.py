"""The whole report: output folder rules, determinism, CLI, self-contained HTML, checkpoint figures, W&B."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raysearch.report import ReportError, ReportOptions, build_report

from .test_figures import assert_real_png

REPO = Path(__file__).resolve().parents[2]
NO_EXAMPLES = ReportOptions(qualitative=False, gradcam=False)


def test_rerun_gives_identical_csvs(beta_exp, tmp_path):
    a = build_report([beta_exp], tmp_path / "a", NO_EXAMPLES)
    b = build_report([beta_exp], tmp_path / "b", NO_EXAMPLES)
    names = sorted(p.name for p in (a / "tables").glob("*.csv"))
    assert names == ["accuracy_beta.csv", "accuracy_per_seed.csv", "leaderboard.csv", "segmentation.csv",
                     "wilcoxon.csv"]
    for n in names:
        assert (a / "tables" / n).read_bytes() == (b / "tables" / n).read_bytes(), n
    for n in ("losses.png", "accuracy_vs_threshold.png"):
        assert_real_png(a / "figures" / n)
    umask = os.umask(0)
    os.umask(umask)
    for f in (a / "report.html", a / "tables" / "wilcoxon.csv", a / "figures" / "losses.png"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask  # like open(), not mkstemp's 0600


def test_output_folder_rules(beta_exp, sweep_exp, tmp_path):
    out = build_report([beta_exp], tmp_path / "r", NO_EXAMPLES)
    assert (out / "tables" / "wilcoxon.csv").exists()
    (out / "notes.txt").write_text("mine")
    # a previous report may be rewritten; its own stale files go, foreign files stay
    build_report([sweep_exp], out, NO_EXAMPLES)
    assert not (out / "tables" / "wilcoxon.csv").exists()
    assert (out / "tables" / "importance.csv").exists()
    assert (out / "notes.txt").read_text() == "mine"
    manifest = json.loads((out / "report.json").read_text())
    assert "tables/importance.csv" in manifest["files"] and manifest["analysis"] == "sweep"
    # a foreign non-empty folder is refused, with the ways out
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    with pytest.raises(ReportError, match=r"not empty.*--force"):
        build_report([beta_exp], foreign, NO_EXAMPLES)
    build_report([beta_exp], foreign, ReportOptions(force=True, qualitative=False, gradcam=False))
    assert (foreign / "thesis.tex").read_text() == "x" and (foreign / "report.md").exists()


def test_report_states_provenance(beta_exp, tmp_path):
    out = build_report([beta_exp], tmp_path / "r", NO_EXAMPLES)
    md = (out / "report.md").read_text()
    meta = json.loads((beta_exp / "experiment.json").read_text())
    for needle in ("Dataset checksum", meta["dataset"]["checksum"], "fixture (60 images)", "Scale preset | smoke",
                   "seed 0: 36 / 12 / 12", "Split hash per seed", "beta_sweep", "raysearch version",
                   "Report created", "Holm correction not applied"):
        assert needle in md, needle
    prov = json.loads((out / "report.json").read_text())["provenance"]
    assert prov["dataset_checksum"] == meta["dataset"]["checksum"]


def test_cli_writes_report_and_reports_errors(lambda_exp, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "raysearch.report", str(lambda_exp), "--out", str(out), "--holm",
                        "--no-gradcam", "--no-qualitative"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "Holm correction applied" in (out / "report.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "raysearch.report", str(tmp_path / "missing"), "--out",
                          str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert bad.returncode == 2 and "missing: not a folder" in bad.stderr


def test_html_is_self_contained(tasks_exps, tmp_path):
    out = build_report(tasks_exps, tmp_path / "r", NO_EXAMPLES)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # accuracy curves + losses
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//|file:)""", html)
    assert "<table>" in html and "Provenance" in html and "<b>" in html
    assert "single_task, multi_task" in html


def test_checkpoint_figures_in_report(checkpoint_exp, tmp_path):
    out = build_report([checkpoint_exp], tmp_path / "r", ReportOptions(n_examples=2))
    assert_real_png(out / "figures" / "qualitative.png")
    assert_real_png(out / "figures" / "gradcam.png")
    md = (out / "report.md").read_text()
    assert "figures/qualitative.png" in md and "figures/gradcam.png" in md and "Best trial by" in md


def test_missing_checkpoint_or_dataset_skips_examples_with_a_note(beta_exp, checkpoint_exp, tmp_path):
    # the plain fixture has no checkpoint files: the report says so instead of failing
    out = build_report([beta_exp], tmp_path / "r1", ReportOptions())
    assert "Checkpoint" in (out / "report.md").read_text()
    assert "not found on this machine; qualitative figures skipped" in (out / "report.md").read_text()
    d = tmp_path / "moved"
    shutil.copytree(checkpoint_exp, d)
    meta = json.loads((d / "experiment.json").read_text())
    meta["dataset"]["root"] = str(tmp_path / "elsewhere")
    (d / "experiment.json").write_text(json.dumps(meta))
    out = build_report([d], tmp_path / "r2", ReportOptions())
    assert f"Dataset folder {tmp_path / 'elsewhere'} not found" in (out / "report.md").read_text()
    assert not (out / "figures" / "gradcam.png").exists()


def test_html_renders_in_headless_chromium(tasks_exps, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = build_report(tasks_exps, tmp_path / "r", NO_EXAMPLES)
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           (out / "report.html").resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), r.stderr[-2000:]
    assert_real_png(shot, min_bytes=20000, min_std=10.0)


def test_wandb_offline_logs_tables(beta_exp, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = build_report([beta_exp], tmp_path / "r", ReportOptions(wandb="offline", qualitative=False, gradcam=False))
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "no offline run file written"


def test_report_logs_to_wandb_by_default_only_for_wandb_users(monkeypatch):
    from raysearch.report.__main__ import default_wandb_mode

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert default_wandb_mode() == "disabled"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert default_wandb_mode() == "online"
