"""Weights & Biases logging of trials: one W&B run per trial, grouped by experiment, tagged by its values.

Mode ``offline`` (the default without ``WANDB_API_KEY``) writes run files under each trial's folder
(``wandb sync`` uploads them later); the API key is never put into configs, logs or results: W&B
reads it from the environment of the logging actor only.

Where the run files go: Ray's logging actor writes into the trial's *driver staging* folder, which Tune
copies to the experiment folder in its final sync -- **before** it waits for the logging actors to
finish. The last trials' ``.wandb`` files then reach the experiment folder holding only their 7-byte
header (seen in CI). With local (or mounted) storage we therefore point ``wandb.init(dir=...)`` at the
trial's folder in the experiment itself, so the files there are the ones W&B finishes writing. With
cloud storage (``s3://...``) the files stay in staging, and once Tune has waited for every logging
actor we upload each trial's ``wandb`` folder again (:func:`upload_run_files`).
"""

from __future__ import annotations

from typing import Any


def make_wandb_callback(project: str, group: str, job_type: str, mode: str, tags: list[str],
                        search_keys: list[str], base_config: dict[str, Any] | None = None,
                        trial_overrides=None):
    """Return a Tune callback logging each trial as a W&B run (config, per-epoch metrics, final summary)."""
    try:
        from ray.air.integrations.wandb import WandbLoggerCallback
    except ImportError as exc:  # pragma: no cover - wandb is a dependency
        raise ImportError("W&B logging needs `pip install wandb`; or pass --wandb disabled") from exc

    class TaggedWandbCallback(WandbLoggerCallback):
        """Adds per-trial tags (split seed, beta, lambda, task...) so W&B's views can filter and group."""

        def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs: Any):
            config = trial.config or {}
            extra = []
            for key in search_keys:
                value = config.get(key)
                if isinstance(value, dict):
                    extra += [f"{k.split('.')[-1]}={v}" for k, v in value.items()]
                elif value is not None:
                    extra.append(f"{key.split('.')[-1]}={_short(value)}")
            wandb_init_kwargs["tags"] = list(tags) + extra
            if base_config is not None:  # the trial's full resolved config, as dotted keys
                full = dict(base_config)
                if trial_overrides is not None:
                    full.update(trial_overrides(config))
                wandb_init_kwargs["config"] = {**full, **wandb_init_kwargs.get("config", {})}
            wandb_init_kwargs.pop("reinit", None)  # deprecated in wandb >= 0.31
            run_dir = _local_trial_dir(trial)
            if run_dir is not None:
                wandb_init_kwargs["dir"] = run_dir
            return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

        def on_experiment_end(self, trials, **info):
            super().on_experiment_end(trials, **info)  # waits for every run's wandb.finish()
            for trial in trials:
                storage = getattr(trial, "storage", None)
                if storage is not None and _local_trial_dir(trial) is None:
                    upload_run_files(trial.local_path, storage.storage_filesystem, trial.path)

    return TaggedWandbCallback(project=project, group=group, job_type=job_type, mode=mode, log_config=True,
                               tags=list(tags))


def _local_trial_dir(trial) -> str | None:
    """The trial's folder inside the experiment (created if needed), or None when storage is not local."""
    import os

    import pyarrow.fs

    storage = getattr(trial, "storage", None)
    if storage is None or not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        return None
    os.makedirs(trial.path, exist_ok=True)
    return trial.path


def upload_run_files(staging_dir: str, filesystem, trial_fs_path: str) -> int:
    """Copy ``<staging_dir>/wandb`` to ``<trial_fs_path>/wandb`` on ``filesystem``; return the files copied."""
    import os

    import pyarrow.fs

    src = os.path.join(staging_dir, "wandb")
    if not os.path.isdir(src):
        return 0
    dst = f"{trial_fs_path.rstrip('/')}/wandb"
    filesystem.create_dir(dst, recursive=True)
    pyarrow.fs.copy_files(src, dst, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=filesystem)
    return sum(len(files) for _, _, files in os.walk(src))


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
