"""Best-model checkpoints that carry their own configuration.

A checkpoint is a ``torch.save`` of plain Python containers and tensors, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs). The run's full
:class:`~raysearch.config.RunConfig` is stored inside (and as ``config.yaml`` beside it), so a
model can always be rebuilt exactly as it was trained.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from raysearch import __version__
from raysearch.config import ConfigError, RunConfig
from raysearch.schema import CHECKPOINT_FILE, CONFIG_FILE

FORMAT = "raysearch-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, of another format, or not matching a config."""


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    config: RunConfig
    epoch: int
    metrics: dict[str, float]
    path: Path


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: RunConfig, epoch: int,
                    metrics: dict[str, float]) -> Path:
    """Write ``best.pt`` (atomically: temp file + rename) and ``config.yaml`` beside it; return the path."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".pt":
        path = path / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "model_state": state,
        "epoch": int(epoch),
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        "raysearch_version": __version__,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    config.to_yaml(path.parent / CONFIG_FILE)
    return path


def resolve_checkpoint_path(path: str | Path) -> Path:
    """Accept a ``.pt`` file or a folder holding ``best.pt``; return the file path or raise CheckpointError."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not p.exists():
        raise CheckpointError(f"{p}: no checkpoint there (expected a best.pt file or a folder containing one)")
    return p


def load_checkpoint(path: str | Path, expected: RunConfig | None = None, device: str = "cpu") -> LoadedCheckpoint:
    """Load a checkpoint and rebuild its model (eval mode) from the stored config.

    ``expected``: if given, the model-defining parts of the config (model, loss.task, data.input_size)
    must match it, else :class:`CheckpointError` says which keys differ.
    """
    from raysearch.model import TwoHeadUNet  # model imports torch only; kept local to avoid cycles

    p = resolve_checkpoint_path(path)
    try:
        payload: dict[str, Any] = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt file, or not a weights-only checkpoint
        raise CheckpointError(f"{p}: cannot be read as a raysearch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a raysearch checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, expected {FORMAT!r})")
    try:
        config = RunConfig.from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{p}: stored config is invalid: {exc}") from exc
    if expected is not None:
        diffs = _model_defining_diffs(config, expected)
        if diffs:
            raise CheckpointError(
                f"{p}: checkpoint config does not match the requested config: "
                + "; ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, a, b in diffs)
            )
    model = TwoHeadUNet(config.model, config.loss.task)
    try:
        model.load_state_dict(payload["model_state"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{p}: weights do not fit the stored model config: {exc}") from exc
    model.to(device).eval()
    return LoadedCheckpoint(model=model, config=config, epoch=int(payload["epoch"]),
                            metrics=dict(payload.get("metrics", {})), path=p)


def _model_defining_diffs(a: RunConfig, b: RunConfig) -> list[tuple[str, Any, Any]]:
    fa, fb = a.flat(), b.flat()
    keys = [k for k in fa if k.startswith("model.")] + ["loss.task", "data.input_size"]
    return [(k, fa[k], fb[k]) for k in keys if fa[k] != fb[k]]
