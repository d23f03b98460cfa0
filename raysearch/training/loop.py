"""``fit``: the plain PyTorch training loop of the two-head U-Net (importable without Ray).

Per epoch: train on augmented batches, evaluate losses and landmark/segmentation metrics on the
validation split, keep the best model by ``train.select_metric``, report to a :class:`Reporter`.
At the end the best model is evaluated on the test split, producing per-image rows.

Optimiser: Adam (the paper's choice). The paper trains at lr 1e-5, batch 1, for 200 epochs; the
``cpu`` preset uses batch norm, lr 3e-3 with a linear warm-up and one halving, and starts the
heatmap head at the mean target (:func:`init_heatmap_bias`) so that under a minute of CPU learns
(see :func:`raysearch.config.scale_preset`). A non-finite loss, a loss above
``train.divergence_loss`` or exploding pre-activations stop the run with :class:`DivergenceError`
instead of training through silently.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import torch

from raysearch import schema
from raysearch.config import RunConfig
from raysearch.losses import joint_loss
from raysearch.model import TwoHeadUNet
from raysearch.training.batches import iterate_train_batches, to_tensors
from raysearch.training.checkpoint import save_checkpoint
from raysearch.training.evaluate import SplitEvaluation, _autocast, _input, evaluate_split
from raysearch.training.prepare import PreparedData

MAX_ABS_LOGIT = 1e4
"""Pre-activations beyond this are treated as divergence (a diverged plain U-Net reached ~1e7)."""

SATURATED_LOGIT = 17.0
"""A head whose |pre-activation| exceeds this on *every* validation pixel is collapsed: its sigmoid is 0 or 1
to float32 precision everywhere, so it has no minimum to decode and no gradient to recover. (Even at
beta = 1, where the target is ~1 almost everywhere, MSE through a sigmoid cannot push logits this far.)"""

STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"
"""Small companion of ``state.pt``: the epoch it was written after, readable without loading the weights."""

TrainBatches = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]]
"""epoch -> iterable of augmented ``(images, masks, landmarks)`` numpy batches (network px)."""


class DivergenceError(RuntimeError):
    """Training diverged (NaN/inf or exploding loss or activations); the message says when and what to try."""


class Reporter(Protocol):
    """Receives one report per epoch. ``checkpoint_dir`` holds ``state.pt`` (resume) and ``best.pt``."""

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None: ...


class MemoryReporter:
    """Keeps every report in memory (tests, the train CLI)."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.checkpoints: list[Path | None] = []

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append(dict(metrics))
        self.checkpoints.append(checkpoint_dir)


@dataclass
class FitResult:
    """What a finished run returns. Rows are plain dicts in the schema of the Parquet tables."""

    config: RunConfig
    best_epoch: int
    best_value: float
    history: list[dict[str, float]]
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    landmark_rows: list[dict] = field(default_factory=list)
    segmentation_rows: list[dict] = field(default_factory=list)
    checkpoint_path: Path | None = None
    seconds: float = 0.0
    best_model: torch.nn.Module | None = None
    """The model with the best epoch's weights (eval mode)."""


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``train.device`` (``auto``: CUDA when visible, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(cfg: RunConfig, device: torch.device) -> TwoHeadUNet:
    """Create the two-head U-Net of ``cfg`` with seeded (He) initialisation."""
    torch.manual_seed(cfg.train.seed)
    model = TwoHeadUNet(cfg.model, cfg.loss.task).to(device)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def init_heatmap_bias(model: TwoHeadUNet, data: PreparedData, cfg: RunConfig) -> float | None:
    """Start the heatmap head at the logit of the mean training target; return that logit (None: no head).

    The target ``tanh(pi d / beta)`` is close to 1 almost everywhere (mean ~0.97 at beta = 125 ref
    px), but a zero-bias head starts at 0.5. Adam moves each parameter by about ``lr`` per step, so
    a small network needs hundreds of steps just to learn that offset before it can localise
    anything (a cpu-preset run spent its whole budget there). With batch norm the head then learns
    the landmark dips within a few epochs. Used only with ``model.batch_norm`` (the plain U-Net of
    the paper keeps the zero-bias start, see :mod:`raysearch.model`). Deterministic: it uses the
    unaugmented train split (at most 64 images), mean over annotated channels, clipped to [0.01, 0.99].
    """
    head = getattr(model, "heatmap_head", None)
    # the Ray path streams the train split and holds no decoded train arrays: the validation split then
    # stands in (same distribution, unaugmented)
    split = data.train if len(data.train.images) else data.val
    if head is None or head.bias is None or len(split.images) == 0:
        return None
    n = min(len(split.images), 64)
    batch = to_tensors(split.images[:n], split.masks[:n], split.landmarks[:n], cfg)
    w = batch["heatmap_weight"][:, :, None, None].expand_as(batch["heatmap"])
    mean = float((batch["heatmap"] * w).sum() / w.sum().clamp_min(1.0)) if float(w.sum()) > 0 else 0.5
    mean = min(max(mean, 0.01), 0.99)
    logit = math.log(mean / (1.0 - mean))
    with torch.no_grad():
        head.bias.fill_(logit)
    return logit


def learning_rate(cfg: RunConfig, step: int, epoch: int) -> float:
    """Return the lr of an optimiser step: linear warm-up from lr/100, halved once after ``decay_epoch_fraction``."""
    lr = cfg.optim.lr
    if cfg.optim.warmup_steps > 0 and step < cfg.optim.warmup_steps:
        lr = lr * (0.01 + 0.99 * step / cfg.optim.warmup_steps)
    if cfg.optim.decay_epoch_fraction < 1.0 and epoch >= math.ceil(cfg.optim.decay_epoch_fraction * cfg.train.epochs):
        lr *= 0.5
    return lr


def fit(cfg: RunConfig, data: PreparedData, reporter: Reporter | None = None, *,
        train_batches: TrainBatches | None = None, resume_dir: str | Path | None = None,
        out_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
        wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> FitResult:
    """Train ``cfg`` on ``data`` and evaluate the best epoch on the test split.

    ``train_batches``: where training batches come from (default: in-memory augmentation of
    ``data.train``; the Ray layer passes a Ray Data shard iterator). ``resume_dir``: a checkpoint
    folder from an earlier report (``state.pt``) to continue from. ``out_dir``: where ``best.pt`` is
    written at the end (else only kept in memory and in reported checkpoints). ``wrap_model``:
    wraps the model for training only (e.g. Ray Train's ``prepare_model`` → DDP); evaluation and
    checkpoints use the unwrapped model.
    """
    t0 = time.time()
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(cfg.train.device)
    model = build_model(cfg, device)
    if cfg.model.batch_norm:  # a resumed run overwrites it with the saved weights below
        init_heatmap_bias(model, data, cfg)
    train_model = wrap_model(model) if wrap_model is not None else model
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.train.precision == "fp16")
    sign = 1.0 if cfg.train.select_mode == "min" else -1.0

    history: list[dict[str, float]] = []
    best_value, best_epoch, best_state, best_val = math.inf, -1, None, {}
    start_epoch, step, stale = 0, 0, 0
    if resume_dir is not None and (Path(resume_dir) / STATE_FILE).exists():
        state = torch.load(Path(resume_dir) / STATE_FILE, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        best_state = state["best_model"]
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        best_value, best_epoch, stale = float(state["best_value"]), int(state["best_epoch"]), int(state["stale"])
        history = [dict(h) for h in state["history"]]
        best_val = dict(state["best_val"])
        if log:
            log(f"resumed from {resume_dir} at epoch {start_epoch}")
    if train_batches is None:
        def train_batches(epoch: int):
            return iterate_train_batches(data.train.images, data.train.masks, data.train.landmarks, epoch, cfg)

    for epoch in range(start_epoch, cfg.train.epochs):
        train_model.train()
        sums: dict[str, float] = {}
        seen, t_epoch = 0, time.time()
        for images, masks, landmarks in train_batches(epoch):
            lr = learning_rate(cfg, step, epoch)
            for g in optimiser.param_groups:
                g["lr"] = lr
            batch = to_tensors(images, masks, landmarks, cfg, device)
            with _autocast(cfg, device):
                out = train_model(_input(batch["image"], cfg))
                losses = joint_loss(out, batch["heatmap"], batch["heatmap_weight"], batch["seg"], cfg.loss)
            loss = losses["loss_joint"]
            _check_finite(float(loss.detach()), cfg, epoch, step, lr)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimiser)
            scaler.update()
            b = images.shape[0]
            for k, v in losses.items():
                if v is not None:
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
            seen += b
            step += 1
        if seen == 0:
            raise RuntimeError(f"epoch {epoch}: the training data produced no batches (empty train split or stream)")
        metrics: dict[str, float] = {schema.EPOCH: float(epoch), schema.LR: lr}
        metrics.update({f"train/{k}": v / seen for k, v in sums.items()})
        metrics[schema.IMAGES_PER_S] = seen / max(time.time() - t_epoch, 1e-9)
        val = evaluate_split(model, data.val, cfg, device)
        _check_activations(val, cfg, epoch)
        val_summary = val.summary("val", cfg)
        metrics.update(val_summary)
        value = metrics.get(cfg.train.select_metric)
        if value is None:
            raise KeyError(
                f"train.select_metric {cfg.train.select_metric!r} is not among the validation metrics of task "
                f"{cfg.loss.task!r}: {sorted(k for k in metrics if k.startswith('val/'))}"
            )
        if sign * value < sign * best_value or best_epoch < 0:
            best_value, best_epoch, stale = value, epoch, 0
            best_state = _copy_state(model)
            best_val = val_summary
        else:
            stale += 1
        metrics[schema.BEST_EPOCH] = float(best_epoch)
        history.append(metrics)
        if log:
            log(_epoch_line(metrics, cfg))
        stop = cfg.train.early_stopping_patience > 0 and stale >= cfg.train.early_stopping_patience
        if reporter is not None:
            with tempfile.TemporaryDirectory(prefix="raysearch-ckpt-") as tmp:
                _write_state(Path(tmp), model, optimiser, best_state, cfg, epoch, step, best_value, best_epoch,
                             stale, history, best_val)
                reporter.report(metrics, Path(tmp))
        if stop:
            if log:
                log(f"early stopping: no improvement of {cfg.train.select_metric} for {stale} epochs")
            break

    model.load_state_dict(best_state)
    test = evaluate_split(model, data.test, cfg, device, stored_resolution=True)
    test_metrics = test.summary("test", cfg)
    ckpt = None
    if out_dir is not None:
        ckpt = save_checkpoint(Path(out_dir), model, cfg, best_epoch, {**best_val, **test_metrics})
    return FitResult(config=cfg, best_epoch=best_epoch, best_value=best_value, history=history,
                     val_metrics=best_val, test_metrics=test_metrics, landmark_rows=test.landmark_rows,
                     segmentation_rows=test.segmentation_rows, checkpoint_path=ckpt, seconds=time.time() - t0,
                     best_model=model)


def resume_start_epoch(progress_json: str | bytes | None) -> int:
    """Return the first epoch a run resumed from a checkpoint trains (0 without one), from its ``progress.json``."""
    if not progress_json:
        return 0
    return int(json.loads(progress_json)["epoch"]) + 1


def _copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _write_state(folder: Path, model, optimiser, best_state, cfg: RunConfig, epoch: int, step: int,
                 best_value: float, best_epoch: int, stale: int, history, best_val) -> None:
    """Write ``state.pt`` (everything to resume) and ``best.pt`` (the best model so far) into ``folder``."""
    torch.save({
        "model": model.state_dict(), "optimiser": optimiser.state_dict(), "best_model": best_state,
        "epoch": epoch, "step": step, "best_value": best_value, "best_epoch": best_epoch, "stale": stale,
        "history": history, "best_val": best_val,
    }, folder / STATE_FILE)
    (folder / PROGRESS_FILE).write_text(json.dumps({"epoch": epoch, "step": step}))
    best_model = copy.deepcopy(model)
    best_model.load_state_dict(best_state)
    save_checkpoint(folder, best_model, cfg, best_epoch, best_val)


def _check_finite(loss: float, cfg: RunConfig, epoch: int, step: int, lr: float) -> None:
    if not math.isfinite(loss) or loss > cfg.train.divergence_loss:
        raise DivergenceError(
            f"training diverged at epoch {epoch}, step {step}: loss = {loss} (lr {lr:.3g}). "
            f"The plain U-Net is fragile at high learning rates: lower optim.lr (2e-4 with warm-up is safe "
            f"without batch norm), keep optim.warmup_steps > 0, or enable model.batch_norm=true."
        )


def _check_activations(val: SplitEvaluation, cfg: RunConfig, epoch: int) -> None:
    m = val.predictions.max_abs_logit if val.predictions else 0.0
    if not math.isfinite(m) or m > MAX_ABS_LOGIT:
        raise DivergenceError(
            f"training diverged at epoch {epoch}: output pre-activations reached {m:.3g} (saturated sigmoid "
            f"outputs; every landmark would decode at a corner). Lower optim.lr (now {cfg.optim.lr:g}), keep a "
            f"warm-up, or enable model.batch_norm=true."
        )
    for head, low in (val.predictions.min_abs_logit if val.predictions else {}).items():
        if low > SATURATED_LOGIT:
            name = "heatmap" if head.startswith("heatmap") else "segmentation"
            raise DivergenceError(
                f"training collapsed at epoch {epoch}: the {name} head is saturated on every validation pixel "
                f"(smallest |pre-activation| {low:.3g} > {SATURATED_LOGIT:g}: constant 0/1 output, no gradient). "
                f"Lower optim.lr (now {cfg.optim.lr:g}), keep a warm-up, or enable model.batch_norm=true.")
    for k, v in val.losses.items():
        if v is not None and not math.isfinite(v):
            raise DivergenceError(f"training diverged at epoch {epoch}: validation {k} = {v}")


def _epoch_line(m: dict[str, float], cfg: RunConfig) -> str:
    parts = [f"epoch {int(m[schema.EPOCH]) + 1}/{cfg.train.epochs}", f"train {m.get(schema.TRAIN_LOSS, float('nan')):.4f}",
             f"val {m.get(schema.VAL_LOSS, float('nan')):.4f}"]
    if schema.VAL_ERR in m:
        parts.append(f"err {m[schema.VAL_ERR]:.1f} ref px")
        parts.append(f"acc@R/5 {100 * m.get(schema.acc_key('val', 5), float('nan')):.0f}%")
    if schema.VAL_DICE in m:
        parts.append(f"dice {m[schema.VAL_DICE]:.3f}")
    parts.append(f"{m[schema.IMAGES_PER_S]:.1f} img/s")
    return "  ".join(parts)

