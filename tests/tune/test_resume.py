"""Resume after the driver is SIGKILLed mid-sweep: finished trials are not rerun, final tables complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines() if line.strip()) if int(s) == sid]


def _kill_session(sid: int) -> None:
    for _ in range(3):
        for pid in _session_pids(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_resume_after_sigkill(tiny_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(Path("/tmp") / f"rsk{os.getpid()}")
    cmd = [sys.executable, "-m", "raysearch.tune", "smoke", "--scale", "smoke", "--data", str(tiny_dataset),
           "--storage", str(tmp_path), "--name", "killed", "--max-concurrent", "1", "--workers-per-trial", "0",
           "--wandb", "disabled", "--ray-address", "local", "--verbose", "0", "train.epochs=3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    runs = tmp_path / "killed" / "runs"
    deadline = time.time() + 600
    while time.time() < deadline and len(list(runs.glob("*/trial.parquet"))) < 1:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it could be killed (exit {proc.returncode})")
        time.sleep(0.5)
    time.sleep(2.0)  # let Tune snapshot its state once more
    _kill_session(proc.pid)
    proc.wait(timeout=30)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/trial.parquet")}
    assert 1 <= len(finished) < 4, "kill the sweep mid-way: some but not all trials finished"

    out = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=800,
                         start_new_session=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "killed" / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    lm = pd.read_parquet(tmp_path / "killed" / "landmark_errors.parquet")
    assert set(lm["trial_id"]) == set(trials["trial_id"])
    # trials that had finished before the kill were not trained again (their results were not rewritten)
    for tid, mtime in finished.items():
        if tid in set(trials["trial_id"]):
            assert (runs / tid / "trial.parquet").stat().st_mtime_ns == mtime, f"{tid} was rerun"
    assert "resuming" in out.stdout
