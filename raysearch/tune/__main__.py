"""``python -m raysearch.tune ANALYSIS``: run one of the paper's analyses (or a search) as a Ray Tune experiment."""

from __future__ import annotations

import argparse
import sys

from raysearch.config import ConfigError
from raysearch.tune.driver import DEFAULT_STORAGE, TuneOptions


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raysearch.tune", description=__doc__)
    p.add_argument("analysis", nargs="?", help="search space: a file stem in search_spaces/ (see --list) or a .yaml path")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=5")
    p.add_argument("--list", action="store_true", help="list the search spaces and exit")
    p.add_argument("--scale", choices=["smoke", "cpu", "paper"], help="preset (default: paper with GPUs, else cpu)")
    p.add_argument("--data", help="dataset folder (default: the built-in phantom set, generated once into a cache)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"results folder or cloud URI (default {DEFAULT_STORAGE})")
    p.add_argument("--name", help="experiment name (default: <analysis>-<scale>-<time>)")
    p.add_argument("--workers-per-trial", type=int, help="0: train in the trial process (default without GPU); "
                   "N>=1: a Ray Train worker group per trial (DDP when N>1; default 1 with GPUs)")
    p.add_argument("--gpus-per-trial", type=float, help="GPU share per trial, e.g. 0.25 packs four trials per GPU")
    p.add_argument("--cpus-per-trial", type=float, help="logical CPUs reserved per trial")
    p.add_argument("--max-concurrent", type=int, help="trials running at the same time")
    p.add_argument("--num-samples", type=int, help="number of trials of a sampled (optuna) search")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (--name, or the latest)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial (default 2)")
    p.add_argument("--wandb", choices=["online", "offline", "disabled"],
                   help="W&B mode (default: online with WANDB_API_KEY set, else offline)")
    p.add_argument("--wandb-project", default="raysearch")
    p.add_argument("--data-timeout", type=float, default=600.0,
                   help="seconds without a training batch before a starved Ray Data pipeline fails (default 600)")
    p.add_argument("--ray-address", help="Ray cluster to join: auto, ray://host:10001, or local for a new local "
                   "instance (default: RAY_ADDRESS, else a running local cluster, else a new one)")
    p.add_argument("--gpu-wait", type=float, default=900.0,
                   help="with --gpus-per-trial > 0 and no GPU in the cluster yet: seconds to wait for the autoscaler "
                   "to add a GPU node (default 900)")
    p.add_argument("--reuse-actors", action=argparse.BooleanOptionalAction, default=None,
                   help="run the next trial in a finished trial's process (default: on with --workers-per-trial 0, "
                   "saving ~10 s of process start per trial; off with Train worker groups)")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Tune output (0 quiet, 1 progress table)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from raysearch.tune.spaces import available_spaces, load_space

    if args.list or not args.analysis:
        for name in available_spaces():
            space = load_space(name)
            size = f"{space.grid_size()} trials" if space.searcher == "grid" else f"{space.num_samples} samples"
            print(f"{name:<10} {size:<12} {space.description}")
        return 0 if args.list else 2
    opts = TuneOptions(analysis=args.analysis, scale=args.scale, data=args.data, storage=args.storage, name=args.name,
                       overrides=args.overrides, workers_per_trial=args.workers_per_trial,
                       gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                       max_concurrent=args.max_concurrent, num_samples=args.num_samples, resume=args.resume,
                       max_failures=args.max_failures, wandb=args.wandb, wandb_project=args.wandb_project,
                       data_timeout_s=args.data_timeout, gpu_wait_s=args.gpu_wait,
                       reuse_actors=args.reuse_actors, verbose=args.verbose, ray_address=args.ray_address)
    try:
        from raysearch.tune.driver import run_experiment

        result = run_experiment(opts)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from raysearch.data.errors import DatasetError

        if isinstance(exc, DatasetError):
            print(f"error: the dataset cannot be used; nothing was trained.\n{exc}", file=sys.stderr)
            return 1
        raise
    failed = (~result.trials["status"].isin(["TERMINATED", "STOPPED_EARLY"])).sum() if len(result.trials) else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
