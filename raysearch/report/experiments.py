"""Read experiment folders into pandas, validate them strictly and collect their provenance.

An experiment folder is what ``python -m raysearch.tune`` writes (layout in ``docs/interfaces.md``,
"Experiment folder"). This module is the only place of the report that touches those files; every
table and figure is computed from the :class:`ExperimentSet` it returns.

Strictness: a missing file, a missing column, a trial id that does not exist, a duplicated row or
a non-finite landmark error raises :class:`ReportError` naming the folder and the file. The only
tolerance is the one the layout allows: the loss columns of a head that was not trained are NaN
(``config/loss.task`` says which heads exist), and a trial that failed (non-empty ``error`` or an
``ERROR``/``FAILED`` status) is kept in ``trials`` but excluded from every table (listed in the report).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysearch import schema
from raysearch.data.remote import is_uri

EXPERIMENT_FILE = schema.EXPERIMENT_FILE

EXPERIMENT_KEYS = (
    "analysis", "description", "group_by", "metric", "mode", "scale", "dataset",
    "split_seeds", "split_hash", "created", "raysearch_version", "command",
)
DATASET_KEYS = ("name", "root", "checksum", "n_images")

TRIAL_COLUMNS = (
    "trial_id", "status", "error", "split_seed", "split_hash", "dataset_checksum",
    schema.BEST_EPOCH, "checkpoint", "n_train", "n_val", "n_test",
)
HISTORY_COLUMNS = (
    "trial_id", "split_seed", schema.EPOCH,
    schema.TRAIN_LOSS, schema.TRAIN_LOSS_HEM, schema.TRAIN_LOSS_SEGM,
    schema.VAL_LOSS, schema.VAL_LOSS_HEM, schema.VAL_LOSS_SEGM,
)
LOSS_COLUMNS = (
    schema.TRAIN_LOSS, schema.TRAIN_LOSS_HEM, schema.TRAIN_LOSS_SEGM,
    schema.VAL_LOSS, schema.VAL_LOSS_HEM, schema.VAL_LOSS_SEGM,
)
FAILED_STATUSES = frozenset({"error", "failed"})
CONFIG_PREFIX = "config/"


class ReportError(ValueError):
    """Experiment folders that cannot be reported on; the message names the folder and the file."""


@dataclass
class Experiment:
    """One experiment folder, validated.

    ``trials``: one row per trial (all statuses); ``history``/``landmarks``/``segmentation``: the
    Parquet tables as written (landmark errors in 512-px reference pixels, segmentation metrics as
    fractions in [0, 1]). ``name`` is the folder name.
    """

    path: Path
    name: str
    meta: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame
    landmarks: pd.DataFrame
    segmentation: pd.DataFrame


@dataclass
class ExperimentSet:
    """One or more experiments concatenated; every table gains an ``experiment`` column.

    ``group_by``: the dotted config keys that define a configuration (union over the experiments,
    in order of appearance); ``trials`` holds a ``configuration`` column (a readable label such as
    ``"β=125"``) and ``failed`` (bool). Trial ids are unique across the set (prefixed with
    ``"<experiment>/"`` only when two experiments share an id).
    """

    experiments: list[Experiment]
    trials: pd.DataFrame
    history: pd.DataFrame
    landmarks: pd.DataFrame
    segmentation: pd.DataFrame
    group_by: list[str]
    metric: str
    mode: str
    analyses: list[str] = field(default_factory=list)

    @property
    def ok_trials(self) -> pd.DataFrame:
        """Trials that finished without error, sorted by configuration order then split seed."""
        t = self.trials[~self.trials["failed"]]
        return t.sort_values(["config_order", "split_seed", "trial_id"], kind="mergesort").reset_index(drop=True)

    def configurations(self) -> list[str]:
        """Configuration labels of finished trials in a stable order (numeric keys ascending)."""
        t = self.ok_trials
        return list(dict.fromkeys(t["configuration"].tolist()))


# -- reading --------------------------------------------------------------------------------------

def _read_parquet(folder: Path, name: str, required: tuple[str, ...]) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        raise ReportError(f"{folder}: missing {name} (expected the experiment folder layout of docs/interfaces.md)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise ReportError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from exc
    if df.empty and len(df.columns) == 0:  # an empty table (e.g. every trial failed) may carry no schema
        return pd.DataFrame(columns=list(required))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {missing}; it has {list(df.columns)}")
    return df


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / EXPERIMENT_FILE
    if not path.is_file():
        raise ReportError(f"{folder}: missing {EXPERIMENT_FILE}; is this an experiment folder written by raysearch.tune?")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in EXPERIMENT_KEYS if k not in meta]
    if missing:
        raise ReportError(f"{path}: missing key(s) {missing}")
    ds = meta["dataset"]
    if not isinstance(ds, dict) or any(k not in ds for k in DATASET_KEYS):
        raise ReportError(f"{path}: 'dataset' must be an object with keys {list(DATASET_KEYS)}, got {ds!r}")
    gb = meta["group_by"]
    if not isinstance(gb, list) or not all(isinstance(k, str) for k in gb):
        raise ReportError(f"{path}: 'group_by' must be a list of dotted config keys, got {gb!r}")
    if meta["mode"] not in ("min", "max"):
        raise ReportError(f"{path}: 'mode' must be 'min' or 'max', got {meta['mode']!r}")
    return meta


def _is_failed(row: pd.Series) -> bool:
    err = row["error"]
    has_error = err is not None and not (isinstance(err, float) and math.isnan(err)) and str(err).strip() != ""
    return has_error or str(row["status"]).strip().lower() in FAILED_STATUSES


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate one experiment folder (or URI); raise :class:`ReportError` naming the folder and file.

    An experiment in cloud storage (``s3://...``) is first copied into the local cache (its tables,
    ``experiment.json``, ``splits.json`` and ``runs/``; not Ray's trial folders).
    """
    if is_uri(path):
        from raysearch.storage import local_experiment_copy

        try:
            path = local_experiment_copy(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise ReportError(f"{path}: cannot read this experiment ({exc})") from exc
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder (expected an experiment folder written by raysearch.tune)")
    meta = _read_meta(folder)
    trials = _read_parquet(folder, schema.TRIALS_FILE, TRIAL_COLUMNS)
    history = _read_parquet(folder, schema.HISTORY_FILE, HISTORY_COLUMNS)
    landmarks = _read_parquet(folder, schema.LANDMARK_FILE, schema.LANDMARK_COLUMNS)
    segmentation = _read_parquet(folder, schema.SEGMENTATION_FILE, schema.SEGMENTATION_COLUMNS)

    tpath = folder / schema.TRIALS_FILE
    if trials.empty:
        raise ReportError(f"{tpath}: no trials")
    dup = trials["trial_id"][trials["trial_id"].duplicated()].tolist()
    if dup:
        raise ReportError(f"{tpath}: duplicated trial_id(s) {dup}")
    for key in meta["group_by"]:
        if CONFIG_PREFIX + key not in trials.columns:
            raise ReportError(
                f"{tpath}: experiment.json group_by names {key!r} but there is no column {CONFIG_PREFIX + key!r}"
            )
    if meta["metric"] not in trials.columns:
        raise ReportError(f"{tpath}: experiment.json metric {meta['metric']!r} is not a column of the trials table")
    trials = trials.copy()
    trials["failed"] = trials.apply(_is_failed, axis=1).astype(bool)
    trials["trial_id"] = trials["trial_id"].astype(str)

    seeds = dict(zip(trials["trial_id"], trials["split_seed"]))
    for name, df in ((schema.HISTORY_FILE, history), (schema.LANDMARK_FILE, landmarks),
                     (schema.SEGMENTATION_FILE, segmentation)):
        df["trial_id"] = df["trial_id"].astype(str)
        unknown = sorted(set(df["trial_id"]) - set(seeds))
        if unknown:
            raise ReportError(f"{folder / name}: trial_id(s) {unknown[:5]} are not in {schema.TRIALS_FILE}")
        wrong = df[df["split_seed"].to_numpy() != df["trial_id"].map(seeds).to_numpy()]
        if len(wrong):
            r = wrong.iloc[0]
            raise ReportError(
                f"{folder / name}: row {wrong.index[0]} (trial {r['trial_id']}) has split_seed {r['split_seed']} "
                f"but {schema.TRIALS_FILE} says {seeds[r['trial_id']]}"
            )

    lpath = folder / schema.LANDMARK_FILE
    bad_side = sorted(set(landmarks["side"]) - set(schema.SIDES))
    if bad_side:
        raise ReportError(f"{lpath}: side must be one of {list(schema.SIDES)}, got {bad_side}")
    errs = pd.to_numeric(landmarks["error_ref_px"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(errs) | (errs < 0))
    if bad.size:
        r = landmarks.iloc[bad[0]]
        raise ReportError(
            f"{lpath}: {bad.size} row(s) with a missing, non-finite or negative error_ref_px, first: row {bad[0]} "
            f"(trial {r['trial_id']}, image {r['image_id']}, side {r['side']}): {r['error_ref_px']}"
        )
    landmarks = landmarks.assign(error_ref_px=errs)
    key = ["trial_id", "image_id", "side"]
    if landmarks.duplicated(key).any():
        r = landmarks[landmarks.duplicated(key)].iloc[0]
        raise ReportError(f"{lpath}: duplicated row for trial {r['trial_id']}, image {r['image_id']}, side {r['side']}")
    spath = folder / schema.SEGMENTATION_FILE
    if segmentation.duplicated(["trial_id", "image_id"]).any():
        r = segmentation[segmentation.duplicated(["trial_id", "image_id"])].iloc[0]
        raise ReportError(f"{spath}: duplicated row for trial {r['trial_id']}, image {r['image_id']}")
    for m in schema.SEGMENTATION_METRICS:
        segmentation[m] = pd.to_numeric(segmentation[m], errors="coerce").astype(float)
    hpath = folder / schema.HISTORY_FILE
    if history.duplicated(["trial_id", schema.EPOCH]).any():
        r = history[history.duplicated(["trial_id", schema.EPOCH])].iloc[0]
        raise ReportError(f"{hpath}: duplicated epoch {r[schema.EPOCH]} for trial {r['trial_id']}")
    for c in LOSS_COLUMNS:
        history[c] = pd.to_numeric(history[c], errors="coerce").astype(float)  # NaN: head not trained
    return Experiment(folder, folder.resolve().name, meta, trials, history, landmarks, segmentation)


# -- combining ------------------------------------------------------------------------------------

SHORT_NAMES = {
    "loss.beta": "β",
    "loss.lambda_hem": "λ_hem",
    "loss.lambda_segm": "λ_segm",
    "loss.task": "task",
}


def short_name(key: str) -> str:
    """Readable name of a dotted config key (``loss.beta`` -> ``β``; others keep the last part)."""
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def format_value(v: Any) -> str:
    """Format a config value for a label: ``125.0`` -> ``125``, ``0.95`` -> ``0.95``, strings as is."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def config_label(values: dict[str, Any]) -> str:
    """Label of a configuration, e.g. ``"β=125"`` or ``"λ_hem=0.95, λ_segm=0.05"``."""
    return ", ".join(f"{short_name(k)}={format_value(v)}" for k, v in values.items())


def _sort_key(v: Any) -> tuple:
    if isinstance(v, (bool, np.bool_)):
        return (0, float(v), "")
    if isinstance(v, (int, float, np.integer, np.floating)):
        return (0, float(v), "")
    return (1, 0.0, str(v))


TASK_ORDER = {"heatmap": 0, "segmentation": 1, "multi": 2}


def check_split_hashes(trials: pd.DataFrame) -> None:
    """Refuse trials that used different splits for the same split seed.

    ``trials`` needs ``trial_id``, ``split_seed``, ``split_hash`` (and ``experiment`` if present).
    Raises :class:`ReportError` naming both trials, their experiments and the seed.
    """
    for seed, g in trials.groupby("split_seed", sort=True):
        hashes = g["split_hash"].astype(str)
        if hashes.nunique() > 1:
            first = g.iloc[0]
            other = g[hashes != str(first["split_hash"])].iloc[0]

            def who(r: pd.Series) -> str:
                exp = f" ({r['experiment']})" if "experiment" in r.index else ""
                return f"trial {r['trial_id']}{exp} has split_hash {str(r['split_hash'])[:12]}"

            raise ReportError(
                f"split seed {seed}: {who(first)} but {who(other)}; runs with different test splits for the same "
                f"seed cannot be paired or compared. Re-run them with the same dataset and split seeds."
            )


def load_experiments(paths: list[str | Path], group_by: list[str] | None = None) -> ExperimentSet:
    """Load and concatenate experiment folders (e.g. a heatmap-only and a multi-task sweep).

    ``group_by``: dotted config keys defining a configuration; default: the union of the
    experiments' ``group_by`` lists. Returns an :class:`ExperimentSet`. Raises :class:`ReportError`
    when the experiments used different datasets (checksum), different splits for the same seed,
    or different metrics.
    """
    if not paths:
        raise ReportError("no experiment folder given")
    exps = [load_experiment(p) for p in paths]
    names = [e.name for e in exps]
    if len(set(names)) != len(names):
        raise ReportError(f"the same experiment folder name was given twice: {names}")
    checksums = {e.meta["dataset"]["checksum"] for e in exps}
    if len(checksums) > 1:
        raise ReportError(
            "the experiments used different datasets: "
            + "; ".join(f"{e.path}: {e.meta['dataset']['name']} checksum {e.meta['dataset']['checksum']}" for e in exps)
        )
    for e in exps:
        t = e.trials[~e.trials["failed"]]
        bad = t[t["dataset_checksum"].astype(str) != str(e.meta["dataset"]["checksum"])]
        if len(bad):
            raise ReportError(
                f"{e.path / schema.TRIALS_FILE}: trial {bad.iloc[0]['trial_id']} has dataset_checksum "
                f"{bad.iloc[0]['dataset_checksum']} but experiment.json says {e.meta['dataset']['checksum']}"
            )
    metrics = {(e.meta["metric"], e.meta["mode"]) for e in exps}
    metric, mode = exps[0].meta["metric"], exps[0].meta["mode"]
    if len(metrics) > 1:
        raise ReportError(
            "the experiments optimise different metrics: "
            + "; ".join(f"{e.name}: {e.meta['metric']} ({e.meta['mode']})" for e in exps)
        )

    all_ids = [tid for e in exps for tid in e.trials["trial_id"]]
    prefix = len(set(all_ids)) != len(all_ids)
    tables: dict[str, list[pd.DataFrame]] = {"trials": [], "history": [], "landmarks": [], "segmentation": []}
    for e in exps:
        for name in tables:
            df = getattr(e, name).copy()
            df.insert(0, "experiment", e.name)
            if prefix:
                df["trial_id"] = e.name + "/" + df["trial_id"]
            tables[name].append(df)
    cat = {k: pd.concat(v, ignore_index=True, sort=False) for k, v in tables.items()}
    trials = cat["trials"]
    check_split_hashes(trials[~trials["failed"]])

    if group_by is None:
        group_by = list(dict.fromkeys(k for e in exps for k in e.meta["group_by"]))
    for k in group_by:
        if CONFIG_PREFIX + k not in trials.columns:
            raise ReportError(f"group_by key {k!r}: no column {CONFIG_PREFIX + k!r} in the trials tables")
        if trials[CONFIG_PREFIX + k].isna().any():
            bad = trials[trials[CONFIG_PREFIX + k].isna()].iloc[0]
            raise ReportError(
                f"{bad['experiment']}/{schema.TRIALS_FILE}: trial {bad['trial_id']} has no value for {CONFIG_PREFIX + k}"
            )
    if group_by:
        labels = [config_label({k: r[CONFIG_PREFIX + k] for k in group_by}) for _, r in trials.iterrows()]
        order_keys = [
            tuple((TASK_ORDER.get(r[CONFIG_PREFIX + k], 9),) + _sort_key(r[CONFIG_PREFIX + k]) for k in group_by)
            for _, r in trials.iterrows()
        ]
    else:
        labels = trials["trial_id"].tolist()
        order_keys = [(0, 0.0, t) for t in labels]
    trials["configuration"] = labels
    ranks = {k: i for i, k in enumerate(sorted(set(order_keys)))}
    trials["config_order"] = [ranks[k] for k in order_keys]
    cfg = dict(zip(trials["trial_id"], trials["configuration"]))
    for name in ("history", "landmarks", "segmentation"):
        cat[name]["configuration"] = cat[name]["trial_id"].map(cfg)
    return ExperimentSet(
        experiments=exps, trials=trials, history=cat["history"], landmarks=cat["landmarks"],
        segmentation=cat["segmentation"], group_by=group_by, metric=metric, mode=mode,
        analyses=[str(e.meta["analysis"]) for e in exps],
    )


def replicate_trials(es: ExperimentSet) -> pd.DataFrame:
    """Finished trials with exactly one trial per (configuration, split seed).

    Returns ``ok_trials``. Raises :class:`ReportError` naming the trials when a configuration has
    two trials for the same seed (then the seeds are not replicates and mean ± std would be wrong).
    """
    t = es.ok_trials
    dup = t[t.duplicated(["configuration", "split_seed"], keep=False)]
    if len(dup):
        g = dup.groupby(["configuration", "split_seed"], sort=True).first().reset_index().iloc[0]
        ids = dup[(dup["configuration"] == g["configuration"]) & (dup["split_seed"] == g["split_seed"])]["trial_id"]
        raise ReportError(
            f"configuration {g['configuration']} has several trials for split seed {g['split_seed']}: "
            f"{sorted(ids.tolist())}; group_by {es.group_by} does not identify a configuration. "
            f"Use --analysis sweep for a leaderboard, or report the experiments separately."
        )
    return t


# -- provenance -----------------------------------------------------------------------------------

def provenance(es: ExperimentSet) -> dict[str, Any]:
    """Everything a reader needs to trace a number: dataset, checksum, split sizes, seeds, versions.

    Returns a dict of plain values (strings, ints, lists) in a fixed order; ``experiments`` holds
    one dict per experiment (name, analysis, description, scale, created, raysearch_version,
    command, split_hash, split_seeds, n_trials, n_failed).
    """
    from raysearch import __version__

    first = es.experiments[0].meta
    t = es.trials[~es.trials["failed"]]
    sizes = []
    for seed, g in t.groupby("split_seed", sort=True):
        row = g.iloc[0]
        sizes.append({
            "split_seed": int(seed), "split_hash": str(row["split_hash"]),
            "n_train": int(row["n_train"]), "n_val": int(row["n_val"]), "n_test": int(row["n_test"]),
        })
    return {
        "dataset": str(first["dataset"]["name"]),
        "dataset_checksum": str(first["dataset"]["checksum"]),
        "dataset_root": str(first["dataset"]["root"]),
        "n_images": int(first["dataset"]["n_images"]),
        "splits": sizes,
        "experiments": [
            {
                "name": e.name, "analysis": str(e.meta["analysis"]), "description": str(e.meta["description"]),
                "scale": str(e.meta["scale"]), "created": str(e.meta["created"]),
                "raysearch_version": str(e.meta["raysearch_version"]), "command": str(e.meta["command"]),
                "split_hash": str(e.meta["split_hash"]), "split_seeds": [int(s) for s in e.meta["split_seeds"]],
                "group_by": list(e.meta["group_by"]), "metric": str(e.meta["metric"]), "mode": str(e.meta["mode"]),
                "n_trials": int(len(e.trials)), "n_failed": int(e.trials["failed"].sum()),
            }
            for e in es.experiments
        ],
        "report_raysearch_version": __version__,
    }
