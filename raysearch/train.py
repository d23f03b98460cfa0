"""``python -m raysearch.train``: one training run without Ray.

For debugging a configuration and for users without a cluster. Writes into ``--out``: the
resolved ``config.yaml``, ``best.pt``, ``history.parquet``, ``landmark_errors.parquet``,
``segmentation.parquet``, ``trials.parquet``, ``splits.json`` and ``experiment.json`` (the same
layout as one trial of a sweep, so ``python -m raysearch.report`` reads it), and prints a summary.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from raysearch import __version__, schema
from raysearch.config import ConfigError, RunConfig, apply_overrides, parse_key_values, scale_preset


def build_config(config_file: str | None, scale: str | None, data: str | None,
                 overrides: list[str]) -> RunConfig:
    """Resolve a run config: scale preset (or a YAML file), then ``--data``, then ``key=value`` overrides."""
    if config_file:
        cfg = RunConfig.from_yaml(config_file)
        if scale and scale != cfg.scale:
            raise ConfigError(f"--scale {scale} conflicts with scale {cfg.scale!r} in {config_file}; drop one of them")
    else:
        cfg = scale_preset(scale or default_scale())
    if data:
        cfg = apply_overrides(cfg, {"data.root": str(Path(data).expanduser().resolve())})
    return apply_overrides(cfg, parse_key_values(overrides))


def default_scale() -> str:
    """Return ``paper`` when a CUDA GPU is visible, else ``cpu``."""
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def run(cfg: RunConfig, out: Path, force: bool = False, log=print) -> dict:
    """Train ``cfg`` and write its tables into ``out``; return the test metrics."""
    from raysearch.training.loop import MemoryReporter, fit
    from raysearch.training.prepare import prepare_data, resolve_dataset_root
    from raysearch.training.results import write_json_atomic, write_run_tables

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise SystemExit(f"error: {out} is not empty; choose another --out or pass --force to overwrite its results")
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out / schema.CONFIG_FILE)
    root = resolve_dataset_root(cfg.data)
    log(f"dataset: {root}")
    data = prepare_data(cfg)
    data.splits.save(out / schema.SPLITS_FILE)
    log(f"split seed {cfg.data.split_seed}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
        f"images at {cfg.data.input_size} px, task {cfg.loss.task}, beta {cfg.loss.beta:g} ref px")
    result = fit(cfg, data, MemoryReporter(), out_dir=out, log=log)
    trial_id = out.name
    write_run_tables(out, result, trial_id, cfg.data.split_seed, extra_trial_fields={
        "split_hash": data.splits.seed_hash(cfg.data.split_seed), "dataset_checksum": data.dataset.checksum,
        "checkpoint": schema.CHECKPOINT_FILE,
        "counts": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}})
    write_json_atomic({
        "analysis": "single-run", "description": "one run of python -m raysearch.train", "group_by": [],
        "metric": cfg.train.select_metric, "mode": cfg.train.select_mode, "scale": cfg.scale,
        "dataset": {"name": data.dataset.name, "root": str(root), "checksum": data.dataset.checksum,
                    "n_images": len(data.dataset.records)},
        "split_seeds": [cfg.data.split_seed], "split_hash": data.splits.hash,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "raysearch_version": __version__, "command": " ".join(sys.argv),
    }, out / "experiment.json")
    log(summary_text(result.test_metrics, cfg))
    log(f"best epoch {result.best_epoch + 1}, {result.seconds:.0f} s; results in {out}")
    return result.test_metrics


def summary_text(m: dict[str, float], cfg: RunConfig) -> str:
    """Return the short test summary: accuracy at R..R/10 per side and Dice."""
    lines = [f"test accuracy (R = {cfg.eval.radius_ref_px:g} reference px):"]
    if any(k.startswith("test/acc_") for k in m):
        header = "          " + "".join(f"{'R' if d == 1 else f'R/{d:g}':>8}" for d in cfg.eval.threshold_divisors)
        lines.append(header)
        for side in ("right", "left", "both"):
            vals = [m.get(schema.acc_key("test", d, side), float("nan")) for d in cfg.eval.threshold_divisors]
            lines.append(f"  {side:<8}" + "".join(f"{100 * v:7.1f}%" for v in vals))
        lines.append(f"  mean error {m.get(schema.TEST_ERR, float('nan')):.2f} reference px"
                     + (f" ({m['test/err_mm_mean']:.1f} mm)" if "test/err_mm_mean" in m else ""))
    if schema.TEST_DICE in m:
        lines.append(f"  Dice {m[schema.TEST_DICE]:.4f}  Jaccard {m.get('test/jaccard', float('nan')):.4f}  "
                     f"AUC {m.get('test/auc', float('nan')):.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raysearch.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="run config YAML (e.g. a config.yaml written by an earlier run)")
    p.add_argument("--data", help="dataset folder (default: the built-in phantom set)")
    p.add_argument("--scale", choices=["smoke", "cpu", "paper"], help="preset (default: paper with a GPU, else cpu)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite results in a non-empty --out")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. loss.beta=50 train.epochs=3")
    args = p.parse_intermixed_args(argv)
    try:
        cfg = build_config(args.config, args.scale, args.data, args.overrides)
        if args.scale is None and args.config is None:
            print(f"scale: {cfg.scale} ({'GPU visible' if cfg.scale == 'paper' else 'no GPU visible: running on CPU'})")
        run(cfg, Path(args.out), force=args.force)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from raysearch.data.errors import DatasetError
        from raysearch.training.loop import DivergenceError

        if isinstance(exc, (DatasetError, DivergenceError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
