"""Search spaces: one YAML file per analysis in ``search_spaces/``, found by file stem.

A file states everything an experiment needs besides the data::

    description: one line shown by ``--list``
    analysis: beta               # beta | lambda | tasks | search (what the report builds)
    base: {loss.task: heatmap}   # dotted-key overrides on top of the scale preset
    epochs: {smoke: 2, cpu: 12, paper: 200}
    search:                      # dotted config keys (or named bundles of keys)
      loss.beta: {grid: [1, 10, 25]}
      data.split_seed: {grid: [0, 1, 2, 3, 4]}
    derived: {loss.lambda_segm: {one_minus: loss.lambda_hem}}
    group_by: [loss.beta]        # what defines a configuration in the report (seeds are replicates)
    metric: val/err_ref_mean
    mode: min
    searcher: grid               # grid (every combination) | optuna (TPE)
    num_samples: 1               # grid: repeats of the whole grid; optuna: number of trials
    scheduler: {type: fifo}      # fifo | asha (grace_period, reduction_factor; max_t = epochs)

Domains: ``{grid: [...]}``, ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}``. A key that is not a config key is a *bundle*: its grid values are mappings
of config keys applied together (e.g. the paper's (lambda_hem, lambda_segm) pairs).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raysearch.config import ConfigError, RunConfig, scale_preset, unknown_key_message, valid_keys

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
DOMAINS = ("grid", "choice", "uniform", "loguniform", "randint")
ANALYSES = ("beta", "lambda", "tasks", "search")
TOP_KEYS = {"description", "analysis", "base", "epochs", "search", "derived", "group_by", "metric", "mode",
            "searcher", "num_samples", "scheduler", "progress_columns"}


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated search-space file."""

    name: str
    path: Path
    description: str
    analysis: str
    base: dict[str, Any]
    epochs: dict[str, int]
    search: dict[str, dict[str, Any]]
    derived: dict[str, dict[str, str]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    metric: str = "val/err_ref_mean"
    mode: str = "min"
    searcher: str = "grid"
    num_samples: int = 1
    scheduler: dict[str, Any] = field(default_factory=lambda: {"type": "fifo"})
    progress_columns: tuple[str, ...] = ()

    def base_config(self, scale: str) -> RunConfig:
        """Return the scale preset with this space's base overrides and epochs (before CLI overrides)."""
        cfg = scale_preset(scale).with_overrides(dict(self.base))
        if scale in self.epochs:
            cfg = cfg.with_overrides({"train.epochs": int(self.epochs[scale])})
        return cfg

    def grid_size(self) -> int:
        """Return the number of trials of a grid search (product of the grid lengths x num_samples)."""
        n = self.num_samples
        for dom in self.search.values():
            if "grid" in dom:
                n *= len(dom["grid"])
        return n

    def trial_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """Turn one trial's sampled parameters into dotted config overrides (bundles expanded, derived keys set)."""
        out: dict[str, Any] = {}
        for k, v in params.items():
            if k not in self.search:
                continue
            if isinstance(v, dict):
                out.update(v)
            else:
                out[k] = v
        for key, rule in self.derived.items():
            src = rule["one_minus"]
            if src in out:
                out[key] = round(1.0 - float(out[src]), 12)
        return out


def available_spaces(directory: Path = SPACES_DIR) -> dict[str, Path]:
    """Return ``{stem: path}`` of every search-space file."""
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def load_space(name_or_path: str, directory: Path = SPACES_DIR) -> SearchSpace:
    """Load a space by stem (``beta``) or path; an unknown name lists the valid ones."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        path = p
    else:
        spaces = available_spaces(directory)
        if name_or_path not in spaces:
            close = difflib.get_close_matches(name_or_path, list(spaces), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown analysis {name_or_path!r}.{hint} Valid: {', '.join(spaces)} "
                              f"(files in {directory}; or pass a path to a .yaml file)")
        path = spaces[name_or_path]
    raw = yaml.safe_load(path.read_text()) or {}
    return parse_space(raw, path)


def parse_space(raw: dict[str, Any], path: Path) -> SearchSpace:
    """Validate a search-space mapping; every problem raises :class:`ConfigError` naming the file."""
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a search space must be a mapping")
    for k in raw:
        if k not in TOP_KEYS:
            raise ConfigError(f"{where}: {unknown_key_message(k, TOP_KEYS)}")
    keys = set(valid_keys())
    base = dict(raw.get("base") or {})
    for k in base:
        if k not in keys:
            raise ConfigError(f"{where}: base: {unknown_key_message(k, keys)}")
    search: dict[str, dict[str, Any]] = {}
    for k, dom in (raw.get("search") or {}).items():
        if not isinstance(dom, dict) or len(dom) != 1 or next(iter(dom)) not in DOMAINS:
            raise ConfigError(f"{where}: search.{k} must be one domain of {DOMAINS}, e.g. {{grid: [1, 2]}}; got {dom!r}")
        kind, values = next(iter(dom.items()))
        if k not in keys:
            if kind not in ("grid", "choice") or not all(isinstance(v, dict) for v in values):
                raise ConfigError(f"{where}: search.{k}: {unknown_key_message(k, keys)} "
                                  f"(a bundle key must hold a grid/choice of mappings of config keys)")
            for v in values:
                for kk in v:
                    if kk not in keys:
                        raise ConfigError(f"{where}: search.{k}: {unknown_key_message(kk, keys)}")
        if kind in ("uniform", "loguniform", "randint") and (len(values) != 2 or values[0] >= values[1]):
            raise ConfigError(f"{where}: search.{k}: {kind} needs [low, high] with low < high, got {values!r}")
        search[k] = {kind: values}
    derived = dict(raw.get("derived") or {})
    for k, rule in derived.items():
        if k not in keys or not isinstance(rule, dict) or set(rule) != {"one_minus"} or rule["one_minus"] not in keys:
            raise ConfigError(f"{where}: derived.{k} must be {{one_minus: <config key>}} on config keys, got {rule!r}")
    analysis = raw.get("analysis", "search")
    if analysis not in ANALYSES:
        raise ConfigError(f"{where}: analysis must be one of {ANALYSES}, got {analysis!r}")
    searcher = raw.get("searcher", "grid")
    if searcher not in ("grid", "optuna"):
        raise ConfigError(f"{where}: searcher must be 'grid' or 'optuna', got {searcher!r}")
    if searcher == "grid" and any(next(iter(d)) != "grid" for d in search.values()):
        raise ConfigError(f"{where}: searcher 'grid' takes only grid domains; use searcher: optuna for sampled domains")
    if searcher == "optuna" and any("grid" in d for d in search.values()):
        raise ConfigError(f"{where}: searcher 'optuna' cannot take grid domains (Ray forbids mixing); use choice")
    scheduler = dict(raw.get("scheduler") or {"type": "fifo"})
    if scheduler.get("type") not in ("fifo", "asha"):
        raise ConfigError(f"{where}: scheduler.type must be 'fifo' or 'asha', got {scheduler.get('type')!r}")
    mode = raw.get("mode", "min")
    if mode not in ("min", "max"):
        raise ConfigError(f"{where}: mode must be 'min' or 'max', got {mode!r}")
    group_by = tuple(raw.get("group_by") or ())
    for k in group_by:
        if k not in keys:
            raise ConfigError(f"{where}: group_by: {unknown_key_message(k, keys)}")
    space = SearchSpace(
        name=path.stem, path=path, description=str(raw.get("description", "")).strip(), analysis=analysis,
        base=base, epochs={str(k): int(v) for k, v in (raw.get("epochs") or {}).items()}, search=search,
        derived=derived, group_by=group_by, metric=str(raw.get("metric", "val/err_ref_mean")), mode=mode,
        searcher=searcher, num_samples=int(raw.get("num_samples", 1)), scheduler=scheduler,
        progress_columns=tuple(raw.get("progress_columns") or ()),
    )
    for scale in ("smoke", "cpu", "paper"):  # every preset must resolve
        space.base_config(scale)
    return space


def tune_param_space(space: SearchSpace) -> dict[str, Any]:
    """Return the Ray Tune ``param_space`` of the searched keys (Tune domain objects)."""
    from ray import tune

    out: dict[str, Any] = {}
    for k, dom in space.search.items():
        kind, values = next(iter(dom.items()))
        if kind == "grid":
            out[k] = tune.grid_search(list(values))
        elif kind == "choice":
            out[k] = tune.choice(list(values))
        elif kind == "uniform":
            out[k] = tune.uniform(float(values[0]), float(values[1]))
        elif kind == "loguniform":
            out[k] = tune.loguniform(float(values[0]), float(values[1]))
        elif kind == "randint":
            out[k] = tune.randint(int(values[0]), int(values[1]))
    return out
