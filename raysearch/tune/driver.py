"""The Ray Tune driver: one experiment = one search space run over a dataset.

Order of work: resolve the config and the dataset, validate every sample up-front (a bad file
stops the sweep before any training, with the full list of problems), make and persist the
splits, then run Tune (or restore it), and finally gather the per-trial tables into the
experiment's tidy Parquet tables and print the analysis summary.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from raysearch import __version__, schema
from raysearch.config import ConfigError, RunConfig, apply_overrides, parse_key_values
from raysearch.data.remote import is_uri
from raysearch.storage import EXPERIMENT_FILES, TABLE_FILES, ExperimentStore, local_mirror
from raysearch.data.dataset import load_dataset
from raysearch.data.splits import Splits, make_splits
from raysearch.training.prepare import resolve_dataset_root
from raysearch.training.results import failed_trial_row, write_json_atomic, write_parquet_atomic
from raysearch.tune.spaces import SearchSpace, load_space, tune_param_space
from raysearch.tune.trainable import RUNS_DIR, TRIAL_TABLE, TrialContext, run_trial

EXPERIMENT_FILE = schema.EXPERIMENT_FILE
STOPPED_EARLY = "STOPPED_EARLY"
DEFAULT_STORAGE = "./raysearch_results"


@dataclass
class TuneOptions:
    """What ``python -m raysearch.tune`` was asked to do (CLI flags, one to one)."""

    analysis: str
    scale: str | None = None
    data: str | None = None
    storage: str = DEFAULT_STORAGE
    name: str | None = None
    overrides: list[str] = field(default_factory=list)
    workers_per_trial: int | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    max_concurrent: int | None = None
    num_samples: int | None = None
    resume: bool = False
    max_failures: int = 2
    wandb: str | None = None
    wandb_project: str = "raysearch"
    data_timeout_s: float = 600.0
    gpu_wait_s: float = 900.0
    """With --gpus-per-trial > 0 and no GPU in the cluster yet: how long to wait for the autoscaler to add one."""
    reuse_actors: bool | None = None
    """Run the next trial in a finished trial's process (default: yes when trials train in-process, which
    saves the ~10 s process start of every trial on a laptop; no with Train worker groups)."""
    verbose: int = 1
    ray_address: str | None = None
    """Ray cluster to join (``auto``, ``ray://...``, ``local`` for a fresh local instance; default: Ray's own rule)."""
    inject_failure_once: bool = False
    """Testing aid: every trial raises once on its first attempt (exercises --max-failures)."""


@dataclass
class ExperimentResult:
    experiment_dir: Path
    space: SearchSpace
    trials: pd.DataFrame
    landmarks: pd.DataFrame
    segmentation: pd.DataFrame
    history: pd.DataFrame
    summary: str


def cluster_has_gpu() -> bool:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0)) > 0


def wait_for_gpu(cluster_resources: Callable[[], dict], timeout_s: float, log: Callable[[str], None] = print,
                 request: Callable[[], None] | None = None, poll_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait until ``cluster_resources()`` shows a GPU; return whether one appeared within ``timeout_s`` seconds.

    ``request`` (once, at the start) asks the autoscaler for a GPU node, so a cluster whose GPU workers
    start at zero scales up before the first trial is even queued.
    """
    if float(cluster_resources().get("GPU", 0.0)) > 0:
        return True
    if timeout_s <= 0:
        return False
    log(f"no GPU in the Ray cluster yet: asking the autoscaler for a GPU node and waiting up to {timeout_s:g} s "
        "(--gpu-wait; Ctrl-C and pass --gpus-per-trial 0 on a machine without GPUs)")
    if request is not None:
        request()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        if float(cluster_resources().get("GPU", 0.0)) > 0:
            log("a GPU node joined the cluster")
            return True
    return False


def _request_one_gpu() -> None:
    """Ask Ray's autoscaler for one GPU bundle (a no-op on a cluster without autoscaler)."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{"GPU": 1}])
    except Exception as exc:  # pragma: no cover - depends on the cluster's autoscaler
        print(f"notice: could not ask the autoscaler for a GPU node ({exc}); waiting anyway")


def resolve_resources(opts: TuneOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Decide workers, CPUs and GPUs per trial and the concurrency (explicit flags always win).

    Without GPUs: in-process trials (``workers_per_trial`` 0: no worker actors, whose 20-45 s start-up
    per trial would dominate a laptop sweep), one trial per logical CPU. With GPUs: one Train
    worker per trial holding the GPU share (default 0.5 GPU), one CPU each.
    """
    import ray

    has_gpu = cluster_has_gpu()
    if opts.gpus_per_trial and not has_gpu:
        # an autoscaling cluster (cluster.yaml: GPU workers with min_workers 0) has no GPU until asked for one
        has_gpu = wait_for_gpu(lambda: ray.cluster_resources(), opts.gpu_wait_s, log=log,
                               request=_request_one_gpu)
        if not has_gpu:
            raise ConfigError(f"--gpus-per-trial {opts.gpus_per_trial} asked for, but no GPU joined the Ray cluster "
                              f"within {opts.gpu_wait_s:g} s (--gpu-wait); on a machine without GPUs pass "
                              "--gpus-per-trial 0")
    total_cpu = float(ray.cluster_resources().get("CPU", 1.0))
    workers = opts.workers_per_trial if opts.workers_per_trial is not None else (1 if has_gpu else 0)
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (0.5 if has_gpu else 0.0)
    if opts.max_concurrent is not None:
        concurrent = opts.max_concurrent
    elif gpus > 0:
        concurrent = None  # as many as the GPUs allow, including GPU nodes the autoscaler adds later
    else:
        concurrent = max(1, int(total_cpu))
    per_trial_cpu = total_cpu / concurrent if concurrent else 1.0
    cpus = opts.cpus_per_trial if opts.cpus_per_trial is not None else max(0.25, min(1.0, per_trial_cpu))
    return {"workers": workers, "gpus": gpus, "cpus": cpus, "concurrent": concurrent, "has_gpu": has_gpu,
            "total_cpu": total_cpu}


def split_seeds_of(space: SearchSpace, cfg: RunConfig) -> list[int]:
    """Return the split seeds an experiment uses (the values of ``data.split_seed`` in the space)."""
    dom = space.search.get("data.split_seed")
    if dom is None:
        return [cfg.data.split_seed]
    values = next(iter(dom.values()))
    if isinstance(values, list) and all(isinstance(v, int) for v in values):
        return sorted(set(values))
    lo, hi = values
    return list(range(int(lo), int(hi)))


def run_experiment(opts: TuneOptions, log: Callable[[str], None] = print) -> ExperimentResult:
    """Run (or resume) one experiment and return its gathered tables."""
    import ray
    from ray import tune

    space = load_space(opts.analysis)
    # the classic progress table (our metric columns); Ray's newer output ignores custom reporters
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600")
        ray.init(address=opts.ray_address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=opts.verbose > 1)
    res = resolve_resources(opts, log)
    scale = opts.scale or ("paper" if res["has_gpu"] else "cpu")
    if opts.scale is None:
        log(f"scale: {scale} ({'GPU in the Ray cluster' if res['has_gpu'] else 'no GPU visible: running on CPU'}; "
            f"choose with --scale smoke|cpu|paper)")
    if not res["has_gpu"]:
        log("notice: no GPU in the Ray cluster; every trial trains on CPU")
    cfg = space.base_config(scale)
    if opts.data:
        root_arg = opts.data if is_uri(opts.data) else str(Path(opts.data).expanduser().resolve())
        cfg = apply_overrides(cfg, {"data.root": root_arg})
    threads = max(1, int(res["cpus"])) if res["workers"] == 0 else 1
    cfg = apply_overrides(cfg, {"train.threads": threads})
    cfg = apply_overrides(cfg, parse_key_values(opts.overrides))
    searched = set(space.search) | set(space.derived)
    clash = sorted(k for k in parse_key_values(opts.overrides) if k in searched)
    if clash:
        raise ConfigError(f"{', '.join(clash)} is searched by {space.name!r}; it cannot also be overridden")

    root = resolve_dataset_root(cfg.data)
    log(f"dataset: {root} (validating every image and mask...)")
    dataset = load_dataset(root)  # raises DatasetError listing every problem, before any training
    if not cfg.data.root:
        cfg = apply_overrides(cfg, {"data.root": str(root)})

    storage = str(opts.storage) if is_uri(opts.storage) else str(Path(opts.storage).expanduser().resolve())
    name = opts.name or _latest_or_new_name(storage, space.name, scale, opts.resume)
    store = ExperimentStore(f"{storage.rstrip('/')}/{name}")
    # raysearch's own files are written here first; with a URI this is a local copy, uploaded as it changes
    exp_dir = local_mirror(store.location) if store.is_uri else Path(store.location)
    from ray.tune import Tuner

    restoring = opts.resume and Tuner.can_restore(store.location)
    if opts.resume and not restoring:
        raise ConfigError(f"--resume: no restorable experiment at {store.location}")
    if not opts.resume and not store.is_empty():
        raise ConfigError(f"experiment folder {store.location} exists already: pass --resume to continue it, or "
                          f"choose another --name (or remove the folder to start over)")
    if store.is_uri and not restoring:  # a fresh experiment: no leftovers of an earlier one under this URI
        shutil.rmtree(exp_dir, ignore_errors=True)
    exp_dir.mkdir(parents=True, exist_ok=True)
    if store.is_uri and restoring:
        store.fetch(EXPERIMENT_FILES, exp_dir)

    seeds = split_seeds_of(space, cfg)
    splits_path = exp_dir / schema.SPLITS_FILE
    if restoring and splits_path.exists():
        splits = Splits.load(splits_path)
        old = _read_json(exp_dir / EXPERIMENT_FILE)
        if old.get("dataset", {}).get("checksum") != dataset.checksum:
            raise ConfigError(f"--resume: the dataset at {root} changed since {exp_dir} was started "
                              f"(checksum differs); results would not be comparable")
    else:
        splits = make_splits(dataset.ids, seeds=seeds, ratios=tuple(cfg.data.split_ratios), groups=dataset.groups)
        splits.save(splits_path)
    n_trials = opts.num_samples or (space.grid_size() if space.searcher == "grid" else space.num_samples)
    info = {
        "analysis": space.analysis, "space": space.name, "description": space.description,
        "group_by": list(space.group_by), "metric": space.metric, "mode": space.mode, "scale": scale,
        "dataset": {"name": dataset.name, "root": str(root), "checksum": dataset.checksum,
                    "n_images": len(dataset.records)},
        "split_seeds": seeds, "split_hash": splits.hash, "n_trials": n_trials,
        "resources": {k: res[k] for k in ("workers", "gpus", "cpus", "concurrent")},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "raysearch_version": __version__, "command": " ".join(sys.argv), "base_config": cfg.to_dict(),
    }
    if not restoring:
        write_json_atomic(info, exp_dir / EXPERIMENT_FILE)
        if store.is_uri:
            store.push(EXPERIMENT_FILES, exp_dir)
    log(f"experiment {name}: {space.description}")
    at_a_time = res["concurrent"] or "as many as the GPUs allow"
    log(f"  {n_trials} trials, {at_a_time} at a time, {res['workers']} Train worker(s)/trial, "
        f"{res['cpus']:g} CPU + {res['gpus']:g} GPU per trial, scale {scale}, "
        f"{cfg.train.epochs} epochs, {len(dataset.records)} images; results in {store.location}"
        + (f" (local copy: {exp_dir})" if store.is_uri else ""))

    ctx = TrialContext(base_config=cfg.to_dict(), space=space, experiment_dir=store.location, dataset=dataset,
                       splits=splits, workers_per_trial=res["workers"],
                       cpus_per_worker=res["cpus"], gpus_per_worker=res["gpus"] / max(res["workers"], 1),
                       data_timeout_s=opts.data_timeout_s, inject_failure_once=opts.inject_failure_once)
    if res["workers"] == 0:
        trial_resources = {"cpu": res["cpus"], "gpu": res["gpus"]}
    else:  # GPUs go on the Train workers, never on the trial (else they are reserved twice)
        trial_resources = {"cpu": 0.1}
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), trial_resources)
    callbacks = _wandb_callbacks(opts, space, name, scale, cfg)
    reuse = opts.reuse_actors if opts.reuse_actors is not None else res["workers"] == 0
    if restoring:
        log(f"resuming {store.location}: finished trials are kept, unfinished and errored ones continue from "
            f"their last checkpoint")
        tuner = Tuner.restore(store.location, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = Tuner(trainable, param_space=tune_param_space(space),
                      tune_config=_tune_config(space, cfg, res["concurrent"], n_trials, reuse),
                      run_config=tune.RunConfig(
                          name=name, storage_path=storage, callbacks=callbacks, verbose=opts.verbose,
                          failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                          progress_reporter=_progress_reporter(space)))
    grid = tuner.fit()
    result = gather_results(exp_dir, grid, space, store=store if store.is_uri else None)
    log(result.summary)
    failed = (result.trials[~result.trials["status"].isin(["TERMINATED", STOPPED_EARLY])]
              if len(result.trials) else result.trials)
    if len(failed):
        log(f"WARNING: {len(failed)} trial(s) did not finish (after {opts.max_failures} retries):")
        for _, r in failed.iterrows():
            log(f"  {r['trial_id']}: {r['status']}: {str(r.get('error', ''))[:300]}")
    log(f"tables: {store.location}/{{trials,history,landmark_errors,segmentation}}.parquet; "
        f"report: python -m raysearch.report {store.location} --out {exp_dir if not store.is_uri else '.'}/report")
    return result


def _tune_config(space: SearchSpace, cfg: RunConfig, concurrent: int | None, n_trials: int, reuse_actors: bool):
    from ray import tune

    kwargs: dict[str, Any] = {"max_concurrent_trials": concurrent, "reuse_actors": reuse_actors}
    if space.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        kwargs.update(search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=cfg.train.seed)),
                      metric=space.metric, mode=space.mode, num_samples=n_trials)
    else:
        kwargs["num_samples"] = space.num_samples
    if space.scheduler.get("type") == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # max_t one past the epochs: the trial's extra final report (test metrics) must not be cut off
        kwargs["scheduler"] = ASHAScheduler(max_t=cfg.train.epochs + 1,
                                            grace_period=int(space.scheduler.get("grace_period", 1)),
                                            reduction_factor=float(space.scheduler.get("reduction_factor", 2)))
        kwargs.setdefault("metric", space.metric)
        kwargs.setdefault("mode", space.mode)
    return tune.TuneConfig(**kwargs)


def _progress_reporter(space: SearchSpace):
    from ray import tune

    metrics = {schema.EPOCH: "epoch", **{m: m.split("/", 1)[1] for m in space.progress_columns}}
    params = {k: k.split(".")[-1] for k in space.search}
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30)


def _wandb_callbacks(opts: TuneOptions, space: SearchSpace, name: str, scale: str, cfg: RunConfig) -> list:
    mode = opts.wandb or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if mode == "disabled":
        return []
    if mode == "offline":  # Ray's callback insists on an API key unless WANDB_MODE says offline
        os.environ["WANDB_MODE"] = "offline"
    from raysearch.tune.wandb_logging import make_wandb_callback

    return [make_wandb_callback(project=opts.wandb_project, group=name, job_type=space.analysis, mode=mode,
                                tags=[f"analysis={space.analysis}", f"scale={scale}"], search_keys=list(space.search),
                                base_config=cfg.flat(), trial_overrides=space.trial_overrides)]


def gather_results(exp_dir: Path, grid=None, space: SearchSpace | None = None,
                   store: ExperimentStore | None = None) -> ExperimentResult:
    """Concatenate every ``runs/<trial_id>/`` table into the experiment tables (atomic writes).

    Trials in ``grid`` that errored are added to ``trials.parquet`` with their status and error, so a
    trial that keeps failing is reported, not dropped. With ``store`` (a URI experiment), ``exp_dir`` is
    its local copy: the trials' ``runs/`` are downloaded into it first and the tables uploaded after.
    """
    exp_dir = Path(exp_dir)
    if store is not None:
        store.download(RUNS_DIR, exp_dir / RUNS_DIR)
    runs = sorted(p for p in (exp_dir / RUNS_DIR).glob("*") if (p / TRIAL_TABLE).exists())
    frames: dict[str, list[pd.DataFrame]] = {"trials": [], "history": [], "landmarks": [], "segmentation": []}
    for run in runs:
        frames["trials"].append(pd.read_parquet(run / TRIAL_TABLE))
        frames["history"].append(pd.read_parquet(run / schema.HISTORY_FILE))
        frames["landmarks"].append(pd.read_parquet(run / schema.LANDMARK_FILE))
        frames["segmentation"].append(pd.read_parquet(run / schema.SEGMENTATION_FILE))
    done = {r.name for r in runs}
    if grid is not None:
        for res in grid:
            tid = _trial_id_of(res)
            if tid in done:
                continue
            flat = _flat_config(space, dict(res.config or {}))
            if res.error is not None:
                frames["trials"].append(pd.DataFrame([failed_trial_row(tid, flat,
                                                                       f"{type(res.error).__name__}: {res.error}")]))
                continue
            # stopped by the scheduler (ASHA) before its last epoch: no test evaluation, but its
            # configuration, last validation metrics and per-epoch history are kept for the leaderboard
            row = failed_trial_row(tid, flat, "stopped early by the scheduler", status=STOPPED_EARLY)
            row.update({k: v for k, v in (res.metrics or {}).items() if k.startswith("val/")})
            frames["trials"].append(pd.DataFrame([row]))
            hist = res.metrics_dataframe
            if hist is not None and len(hist):
                keep = [c for c in hist.columns if c in (schema.EPOCH, schema.LR, schema.BEST_EPOCH)
                        or c.startswith(("train/", "val/"))]
                h = hist[keep].copy()
                h.insert(0, "split_seed", flat.get("data.split_seed"))
                h.insert(0, "trial_id", tid)
                frames["history"].append(h)
    tables = {k: (pd.concat([f for f in v if len(f)], ignore_index=True) if any(len(f) for f in v) else pd.DataFrame())
              for k, v in frames.items()}
    for key, cols in (("landmarks", schema.LANDMARK_COLUMNS), ("segmentation", schema.SEGMENTATION_COLUMNS)):
        if tables[key].empty:
            tables[key] = pd.DataFrame(columns=list(cols))
    if not tables["trials"].empty:
        tables["trials"] = tables["trials"].sort_values("trial_id").reset_index(drop=True)
    write_parquet_atomic(tables["trials"], exp_dir / schema.TRIALS_FILE)
    write_parquet_atomic(tables["history"], exp_dir / schema.HISTORY_FILE)
    write_parquet_atomic(tables["landmarks"], exp_dir / schema.LANDMARK_FILE)
    write_parquet_atomic(tables["segmentation"], exp_dir / schema.SEGMENTATION_FILE)
    if store is not None:
        store.push(TABLE_FILES, exp_dir)
    info = _read_json(exp_dir / EXPERIMENT_FILE)
    from raysearch.tune.summary import summary_text

    summary = summary_text(tables["trials"], tables["landmarks"], tables["segmentation"],
                           list(info.get("group_by", [])), info.get("analysis", ""))
    return ExperimentResult(exp_dir, space, tables["trials"], tables["landmarks"], tables["segmentation"],
                            tables["history"], summary)


def _trial_id_of(res) -> str:
    """Return a Tune result's trial id (from its metrics, else from its folder name ``<fn>_<id>_<n>_...``)."""
    import re

    tid = (res.metrics or {}).get("trial_id")
    if tid:
        return str(tid)
    m = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(res.path).name if res.path else "")
    return m.group(1) if m else "unknown"


def _flat_config(space: SearchSpace | None, params: dict) -> dict:
    return space.trial_overrides(params) if space is not None else dict(params)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def _latest_or_new_name(storage: str, space_name: str, scale: str, resume: bool) -> str:
    if resume:
        if is_uri(storage):  # object stores keep no folder times: the newest by the time stamp in the name
            candidates = [n for n in ExperimentStore(storage).subfolders() if n.startswith(f"{space_name}-")]
            candidates.sort(key=lambda n: n.rsplit("-", 2)[-2:] if n.count("-") >= 2 else [n])
        else:
            candidates = [p.name for p in sorted((p for p in Path(storage).glob(f"{space_name}-*") if p.is_dir()),
                                                 key=lambda p: p.stat().st_mtime)]
        if not candidates:
            raise ConfigError(f"--resume: no experiment of {space_name!r} under {storage}; pass --name")
        return candidates[-1]
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{space_name}-{scale}-{stamp}"
