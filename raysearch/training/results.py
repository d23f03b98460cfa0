"""Tidy result tables (Parquet) shared by the train CLI, the Ray sweeps and the report.

Every write is atomic (temporary file + ``os.replace``), so a killed run never leaves a
half-written table, and per-trial rows are keyed by ``trial_id`` so re-writing a trial replaces
its rows instead of duplicating them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysearch.atomic import write_bytes_atomic
from raysearch import schema
from raysearch.training.loop import FitResult


def write_parquet_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically; return the path."""
    return write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())


def history_frame(result: FitResult, trial_id: str, split_seed: int) -> pd.DataFrame:
    """Return one row per epoch: ``trial_id, split_seed, epoch`` and every reported metric."""
    df = pd.DataFrame(result.history)
    df.insert(0, "split_seed", int(split_seed))
    df.insert(0, "trial_id", trial_id)
    if schema.EPOCH in df:
        df[schema.EPOCH] = df[schema.EPOCH].astype(int)
    for col in (schema.TRAIN_LOSS_HEM, schema.TRAIN_LOSS_SEGM, schema.VAL_LOSS_HEM, schema.VAL_LOSS_SEGM):
        if col not in df:
            df[col] = np.nan
    return df


def landmark_frame(result: FitResult, trial_id: str, split_seed: int) -> pd.DataFrame:
    """Return one row per (test image, annotated side) in :data:`schema.LANDMARK_COLUMNS`."""
    rows = [{"trial_id": trial_id, "split_seed": int(split_seed), **r} for r in result.landmark_rows]
    return pd.DataFrame(rows, columns=list(schema.LANDMARK_COLUMNS))


def segmentation_frame(result: FitResult, trial_id: str, split_seed: int) -> pd.DataFrame:
    """Return one row per test image in :data:`schema.SEGMENTATION_COLUMNS`."""
    rows = [{"trial_id": trial_id, "split_seed": int(split_seed), **r} for r in result.segmentation_rows]
    return pd.DataFrame(rows, columns=list(schema.SEGMENTATION_COLUMNS))


def trial_row(result: FitResult, trial_id: str, *, status: str = "TERMINATED", error: str = "",
              split_hash: str = "", dataset_checksum: str = "", checkpoint: str = "",
              counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Return the ``trials.parquet`` row of a finished run (config as ``config/<dotted key>`` columns)."""
    cfg = result.config
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "error": error,
                           "split_seed": cfg.data.split_seed, "split_hash": split_hash,
                           "dataset_checksum": dataset_checksum, "checkpoint": checkpoint,
                           schema.BEST_EPOCH: result.best_epoch, "seconds": round(result.seconds, 3)}
    for k, v in cfg.flat().items():
        row[f"config/{k}"] = json.dumps(v) if isinstance(v, list) else v
    for k, v in (counts or {}).items():
        row[f"n_{k}"] = int(v)
    row.update(result.val_metrics)
    row.update(result.test_metrics)
    return row


def failed_trial_row(trial_id: str, config_flat: dict[str, Any], error: str, status: str = "ERROR") -> dict[str, Any]:
    """Return the ``trials.parquet`` row of a trial that never finished (so it is reported, not dropped)."""
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "error": error,
                           "split_seed": config_flat.get("data.split_seed")}
    for k, v in config_flat.items():
        row[f"config/{k}"] = json.dumps(v) if isinstance(v, list) else v
    return row


def write_run_tables(folder: str | Path, result: FitResult, trial_id: str, split_seed: int,
                     extra_trial_fields: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the four tables of a single run into ``folder`` (the train CLI's output); return their paths."""
    folder = Path(folder)
    paths = {
        "history": write_parquet_atomic(history_frame(result, trial_id, split_seed), folder / schema.HISTORY_FILE),
        "landmarks": write_parquet_atomic(landmark_frame(result, trial_id, split_seed), folder / schema.LANDMARK_FILE),
        "segmentation": write_parquet_atomic(segmentation_frame(result, trial_id, split_seed),
                                             folder / schema.SEGMENTATION_FILE),
    }
    row = trial_row(result, trial_id, **(extra_trial_fields or {}))
    paths["trials"] = write_parquet_atomic(pd.DataFrame([row]), folder / schema.TRIALS_FILE)
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
