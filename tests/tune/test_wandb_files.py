"""W&B run files reach non-local experiment storage (the path taken with ``--storage s3://...``)."""

from __future__ import annotations

import pyarrow.fs

from raysearch.tune.wandb_logging import upload_run_files


def test_run_files_are_copied_to_a_non_local_filesystem(tmp_path):
    staging = tmp_path / "staging" / "trial_0"
    run = staging / "wandb" / "offline-run-20261204_000000-abc_00000"
    (run / "logs").mkdir(parents=True)
    (run / "run-abc_00000.wandb").write_bytes(b":W&B\xe1\xbe\x00" + bytes(range(256)) * 40)
    (run / "logs" / "debug.log").write_text("finished\n")
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    # a real pyarrow filesystem that is not a LocalFileSystem, as S3/GCS are
    fs = pyarrow.fs.SubTreeFileSystem(str(bucket), pyarrow.fs.LocalFileSystem())
    assert not isinstance(fs, pyarrow.fs.LocalFileSystem)

    assert upload_run_files(str(staging), fs, "exp/trial_0") == 2
    copied = bucket / "exp" / "trial_0" / "wandb" / run.name
    assert (copied / "run-abc_00000.wandb").read_bytes() == (run / "run-abc_00000.wandb").read_bytes()
    assert (copied / "logs" / "debug.log").read_text() == "finished\n"
    # a second upload (Tune's own sync may already have copied a partial file) overwrites
    (run / "run-abc_00000.wandb").write_bytes(b"complete")
    upload_run_files(str(staging), fs, "exp/trial_0")
    assert (copied / "run-abc_00000.wandb").read_bytes() == b"complete"


def test_nothing_to_upload_without_a_wandb_folder(tmp_path):
    fs = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())
    assert upload_run_files(str(tmp_path / "no-such-trial"), fs, "exp/t") == 0
