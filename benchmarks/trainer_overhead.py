"""Images/s of one Ray trial (Tune -> Train -> Ray Data stream) versus the plain training loop.

Same data, model, config and thread count, measured in the same run; prints the ratio.
Target: the Ray path within 10 % of the plain loop at ``cpu`` scale.

    python benchmarks/trainer_overhead.py [--scale cpu] [--epochs 4] [--workers 0 1] [--threads 1]

Throughput is the mean of the per-epoch ``train/images_per_s`` (the training part of each epoch,
validation excluded) over epochs after the first (warm-up), plus the wall time of the whole trial
including Ray's start-up, reported separately.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def plain(cfg):
    from raysearch.training.loop import MemoryReporter, fit
    from raysearch.training.prepare import prepare_data

    t0 = time.time()
    data = prepare_data(cfg)
    result = fit(cfg, data, MemoryReporter())
    ips = [h["train/images_per_s"] for h in result.history[1:]]
    return float(np.mean(ips)), time.time() - t0


def ray_trial(cfg, workers: int, storage: Path, data_root: str):
    from raysearch.tune.driver import TuneOptions, run_experiment

    space = storage / "one.yaml"
    space.write_text(
        "description: one trial for the overhead benchmark\nanalysis: beta\n"
        f"search: {{loss.beta: {{grid: [{cfg.loss.beta}]}}, data.split_seed: {{grid: [{cfg.data.split_seed}]}}}}\n"
        "group_by: [loss.beta]\n")
    overrides = [f"{k}={v}" for k, v in cfg.flat().items()
                 if k not in ("loss.beta", "data.split_seed", "data.root", "scale") and not isinstance(v, list)]
    t0 = time.time()
    res = run_experiment(TuneOptions(analysis=str(space), scale=cfg.scale, data=data_root, storage=str(storage),
                                     name=f"bench-w{workers}", overrides=overrides, workers_per_trial=workers,
                                     gpus_per_trial=0.0, cpus_per_trial=float(cfg.train.threads), wandb="disabled",
                                     verbose=0), log=lambda s: None)
    hist = res.history.sort_values("epoch")
    return float(hist["train/images_per_s"].iloc[1:].mean()), time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="cpu")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    p.add_argument("--data", default="", help="dataset folder (default: built-in phantoms)")
    args = p.parse_args()

    import ray

    from raysearch.config import scale_preset
    from raysearch.training.prepare import resolve_dataset_root

    cfg = scale_preset(args.scale).with_overrides({"train.epochs": args.epochs, "train.threads": args.threads,
                                                   "loss.task": "multi", "data.root": args.data})
    root = str(resolve_dataset_root(cfg.data))
    cfg = cfg.with_overrides({"data.root": root})
    rows = [("plain loop", *plain(cfg))]
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="rsb", dir="/tmp"))
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            rows.append((f"Ray trial, {w} Train worker(s)", *ray_trial(cfg, w, Path(tmp), root)))
    ray.shutdown()
    base = rows[0][1]
    print(f"\nscale {args.scale}, {args.epochs} epochs, {args.threads} thread(s), input {cfg.data.input_size} px, "
          f"width {cfg.model.base_width}, batch {cfg.optim.batch_size}")
    print(f"{'path':<30}{'train img/s':>12}{'ratio':>8}{'wall s':>9}")
    for name, ips, wall in rows:
        print(f"{name:<30}{ips:>12.1f}{ips / base:>8.2f}{wall:>9.1f}")


if __name__ == "__main__":
    main()
