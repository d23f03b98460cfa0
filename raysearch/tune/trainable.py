"""The Ray glue of one trial: a Tune function trial that runs a Ray Train ``TorchTrainer``.

This is the Ray 2.60 (Train V2) pattern: Tune schedules *function* trials; each builds a
``TorchTrainer`` whose train loop is :func:`raysearch.training.loop.fit`, fed by the Ray Data
stream of :mod:`raysearch.tune.data_stream`.

Two worker modes:

* ``workers_per_trial == 0`` (default on a machine without GPU): ``ScalingConfig(num_workers=0)``
  runs the train loop in the trial's own process (no worker actors, no 20-45 s start-up per
  trial); the trial holds the CPU/GPU share and reports with ``ray.tune.report``.
* ``workers_per_trial >= 1`` (GPU clusters): a Train worker group per trial holds the GPU fractions
  (``resources_per_worker``), DDP when > 1; metrics reach Tune through ``TuneReportCallback``, and
  a restored trial resumes from the Train run's last checkpoint (Train V2 auto-resume by run name).

Per-epoch checkpoints hold ``state.pt`` (resume) and ``best.pt``. When a trial ends, rank 0 writes
its tidy tables and best checkpoint to ``<experiment>/runs/<trial_id>/`` (idempotent per trial), and
the trial's last report carries only a ``complete.json`` marker as checkpoint, so Tune (``num_to_keep=1``)
drops the resume state: a finished 6-trial cpu-scale sweep went from 70 MB to 14 MB, and at paper scale
(width 64) each trial would otherwise keep ~0.5 GB of optimiser state.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from raysearch import schema
from raysearch.config import RunConfig
from raysearch.data.dataset import Dataset
from raysearch.data.splits import Splits
from raysearch.storage import ExperimentStore
from raysearch.training.results import write_json_atomic
from raysearch.tune.spaces import SearchSpace

RUNS_DIR = "runs"
TRIAL_TABLE = "trial.parquet"


class InjectedFailure(RuntimeError):
    """Raised once per trial when ``TrialContext.inject_failure_once`` is set (fault-tolerance tests)."""


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled parameters (sent once through the object store)."""

    base_config: dict[str, Any]
    space: SearchSpace
    experiment_dir: str
    dataset: Dataset
    splits: Splits
    workers_per_trial: int = 0
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    data_timeout_s: float = 600.0
    inject_failure_once: bool = False


def trial_config(ctx: TrialContext, params: dict[str, Any]) -> RunConfig:
    """Return the full run config of a trial: base config + this trial's sampled overrides."""
    return RunConfig.from_dict(ctx.base_config).with_overrides(ctx.space.trial_overrides(params))


def run_trial(params: dict[str, Any], ctx: TrialContext) -> None:
    """Tune function trainable: build and fit the trial's ``TorchTrainer``."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer

    from raysearch.tune.data_stream import data_execution_options

    trial_id = tune.get_context().get_trial_id()
    store = ExperimentStore(ctx.experiment_dir)
    done = f"{RUNS_DIR}/{trial_id}/{TRIAL_TABLE}"
    if store.exists(done):
        # Finished before the driver was killed (Tune snapshots its state only periodically): never retrain,
        # just hand Tune the stored final metrics again.
        row = store.read_parquet(done).iloc[0].to_dict()
        tune.report({k: float(v) for k, v in row.items() if "/" in k and not k.startswith("config/")
                     and isinstance(v, (int, float))} | {schema.BEST_EPOCH: float(row[schema.BEST_EPOCH])})
        return
    cfg = trial_config(ctx, params)
    train_ids = ctx.splits.for_seed(cfg.data.split_seed)["train"]
    by_id = ctx.dataset.by_id
    train_records = [by_id[i] for i in train_ids]
    local = ctx.workers_per_trial == 0
    loop_config = {"run_config": cfg.to_dict(), "trial_id": trial_id, "local": local,
                   "dataset": ctx.dataset, "splits": ctx.splits,
                   "experiment_dir": ctx.experiment_dir, "data_timeout_s": ctx.data_timeout_s,
                   "inject_failure_once": ctx.inject_failure_once}
    if local:
        scaling = ray.train.ScalingConfig(num_workers=0)
        callbacks = []
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        resources = {"CPU": ctx.cpus_per_worker}
        if ctx.gpus_per_worker > 0:
            resources["GPU"] = ctx.gpus_per_worker
        scaling = ray.train.ScalingConfig(num_workers=ctx.workers_per_trial, use_gpu=ctx.gpus_per_worker > 0,
                                          resources_per_worker=resources)
        callbacks = [TuneReportCallback()]
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if ctx.gpus_per_worker > 0 else "gloo"),
        scaling_config=scaling,
        datasets=train_datasets(train_records, cfg, world=max(1, ctx.workers_per_trial),
                                start_epoch=resume_epoch_of(tune.get_checkpoint()) if local
                                else train_run_resume_epoch(store, trial_id)),
        dataset_config=ray.train.DataConfig(datasets_to_split=[], execution_options=data_execution_options()),
        run_config=ray.train.RunConfig(name=f"train-{trial_id}", storage_path=f"{store.location}/train_runs",
                                       callbacks=callbacks,
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    trainer.fit()


def train_dataset_name(rank: int, world: int) -> str:
    """Name of the Train dataset a worker reads: ``train``, or its own shard ``train_<rank>`` under DDP."""
    return "train" if world == 1 else f"train_{rank}"


def train_datasets(records, cfg: RunConfig, world: int, start_epoch: int = 0) -> dict:
    """The lazy Ray Datasets of a trial: the whole training stream, or one disjoint shard per DDP worker.

    Each worker iterates only its own dataset, so every image is decoded and augmented once per epoch
    (not once per worker); a resumed in-process trial streams only the epochs it still has to train.
    """
    from raysearch.tune.data_stream import build_train_dataset

    return {train_dataset_name(r, world): build_train_dataset(records, cfg, start_epoch=start_epoch, rank=r,
                                                                world=world)
            for r in range(world)}


def resume_epoch_of(checkpoint) -> int:
    """Return the epoch a trial restarted from ``checkpoint`` (a Ray ``Checkpoint`` or None) trains first.

    Reads only the checkpoint's small ``progress.json`` through its filesystem (no weights are fetched).
    """
    from raysearch.training.loop import PROGRESS_FILE, resume_start_epoch

    if checkpoint is None:
        return 0
    path = f"{checkpoint.path.rstrip('/')}/{PROGRESS_FILE}"
    try:
        with checkpoint.filesystem.open_input_stream(path) as f:
            return resume_start_epoch(f.read())
    except (FileNotFoundError, OSError):  # a completion marker or an older checkpoint: stream from the start
        return 0


def train_run_resume_epoch(store: ExperimentStore, trial_id: str) -> int:
    """Return the epoch a restarted worker-group trial trains first: Ray Train resumes its run (by name)
    from the newest ``checkpoint_*`` under ``train_runs/train-<trial_id>/``; 0 when there is none."""
    from raysearch.training.loop import PROGRESS_FILE, resume_start_epoch

    run = f"train_runs/train-{trial_id}"
    for name in reversed([n for n in store.subfolders(run) if n.startswith("checkpoint_")]):
        if store.exists(f"{run}/{name}/{PROGRESS_FILE}"):
            return resume_start_epoch(store.read_bytes(f"{run}/{name}/{PROGRESS_FILE}"))
    return 0


class RayReporter:
    """Forwards ``fit``'s per-epoch reports to Tune (in-process mode) or Train (worker mode)."""

    def __init__(self, local: bool, rank: int) -> None:
        self.local, self.rank = local, rank

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        import ray.train
        from ray import tune

        if self.local:
            ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
            tune.report(metrics, checkpoint=ckpt)
        else:
            ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir and self.rank == 0 else None
            ray.train.report(metrics, checkpoint=ckpt)


def _train_loop(loop_config: dict[str, Any]) -> None:
    """Train loop of one trial (runs in the trial process or in each Train worker)."""
    import ray.train
    from ray import tune

    from raysearch.training.loop import fit
    from raysearch.training.prepare import prepare_data
    from raysearch.tune.data_stream import EpochBatches

    import time

    import ray

    started = time.time()
    cfg = RunConfig.from_dict(loop_config["run_config"])
    from raysearch.training.prepare import resolve_dataset_root

    resolve_dataset_root(cfg.data)  # fetches a cloud dataset once on this node (no-op for local folders)
    local = bool(loop_config["local"])
    store = ExperimentStore(loop_config["experiment_dir"])
    trial_id = loop_config["trial_id"]
    run_rel = f"{RUNS_DIR}/{trial_id}"
    if local:
        rank, world = 0, 1
        checkpoint = tune.get_checkpoint()
    else:
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        checkpoint = ray.train.get_checkpoint()
    if loop_config.get("inject_failure_once"):
        marker = f"{run_rel}/.injected-failure"
        if not store.exists(marker):
            store.write_bytes(marker, b"this trial raised once on purpose (fault-tolerance test)\n")
            raise InjectedFailure(f"trial {trial_id}: injected failure (first attempt)")

    # start the Ray Data stream first: its start-up overlaps decoding the val/test splits and building the model
    n_train = len(loop_config["splits"].for_seed(cfg.data.split_seed)["train"])
    shard = ray.train.get_dataset_shard(train_dataset_name(rank, world))  # this worker's rows only
    batches = EpochBatches(shard.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2),
                           cfg.optim.batch_size, timeout_s=float(loop_config["data_timeout_s"]),
                           rows_per_epoch=n_train // world)
    data = prepare_data(cfg, dataset=loop_config["dataset"], splits=loop_config["splits"], include_train=False)
    wrap = None
    if world > 1:
        from ray.train.torch import prepare_model

        wrap = prepare_model
    reporter = RayReporter(local, rank)
    if checkpoint is not None:
        with checkpoint.as_directory() as resume_dir:
            result = fit(cfg, data, reporter, train_batches=batches, resume_dir=resume_dir, wrap_model=wrap)
    else:
        result = fit(cfg, data, reporter, train_batches=batches, wrap_model=wrap)
    if rank == 0:
        placement = {"started_at": started, "finished_at": time.time(),
                     "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
                     "node_id": ray.get_runtime_context().get_node_id(), "world_size": world}
        if store.is_uri:  # written locally, then uploaded with the completion record (trial.parquet) last
            with tempfile.TemporaryDirectory(prefix="rs-run-") as tmp:
                write_trial_artefacts(Path(tmp), result, trial_id, data, placement)
                store.upload_folder(tmp, run_rel, last=(TRIAL_TABLE,))
        else:
            write_trial_artefacts(Path(store.location) / RUNS_DIR / trial_id, result, trial_id, data, placement)
    # one last report carrying the test metrics, so Tune results and the W&B summary hold them. Its checkpoint
    # is a small completion marker: with num_to_keep=1 Tune/Train then delete the trial's last resume state
    # (model + optimiser + best weights, ~4x the model), which a finished trial never needs again.
    final = {**result.history[-1], **result.test_metrics, schema.BEST_EPOCH: float(result.best_epoch)}
    with tempfile.TemporaryDirectory(prefix="rs-complete-") as marker:
        if rank == 0:
            write_json_atomic({"trial_id": trial_id, "complete": True,
                               "best_checkpoint": f"{RUNS_DIR}/{trial_id}/{schema.CHECKPOINT_FILE}",
                               "note": "finished trial: results and best weights live in runs/<trial_id>/"},
                              Path(marker) / schema.COMPLETE_MARKER)
        reporter.report(final, Path(marker) if rank == 0 else None)


def write_trial_artefacts(run_dir: Path, result, trial_id: str, data, placement: dict | None = None) -> None:
    """Write a finished trial's tables, ``best.pt`` and ``config.yaml`` into ``run_dir`` (replacing earlier ones).

    ``placement``: where and when it ran (start/finish time in epoch seconds, GPU ids, node), kept in
    ``trials.parquet`` so packing and scheduling can be audited.
    """
    from raysearch.training.checkpoint import save_checkpoint
    from raysearch.training.results import (history_frame, landmark_frame, segmentation_frame, trial_row,
                                            write_parquet_atomic)


    run_dir.mkdir(parents=True, exist_ok=True)
    seed = result.config.data.split_seed
    if result.best_model is not None:
        save_checkpoint(run_dir, result.best_model, result.config, result.best_epoch,
                        {**result.val_metrics, **result.test_metrics})
    write_parquet_atomic(history_frame(result, trial_id, seed), run_dir / schema.HISTORY_FILE)
    write_parquet_atomic(landmark_frame(result, trial_id, seed), run_dir / schema.LANDMARK_FILE)
    write_parquet_atomic(segmentation_frame(result, trial_id, seed), run_dir / schema.SEGMENTATION_FILE)
    row = trial_row(result, trial_id, split_hash=data.splits.seed_hash(seed), dataset_checksum=data.dataset.checksum,
                    checkpoint=f"{RUNS_DIR}/{trial_id}/{schema.CHECKPOINT_FILE}",
                    counts={"train": len(data.train.records), "val": len(data.val), "test": len(data.test)})
    row.update(placement or {})
    write_parquet_atomic(pd.DataFrame([row]), run_dir / TRIAL_TABLE)

