"""Report figures (PNG, matplotlib's Agg canvas; no pyplot global state, no display needed).

* :func:`loss_curves`: training and validation losses per epoch (paper Figures 5-7), log scale,
  mean over split seeds with a min-max band, one line per configuration, one row per loss term.
* :func:`accuracy_curves`: landmark accuracy vs threshold (continuous version of R ... R/10).
* :func:`objective_scatter`: the experiment's metric against each varied numeric parameter.
* :func:`qualitative_panel`: input, predicted lung mask, predicted heatmap and landmarks (Figure 8).

Every function writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysearch import schema

DPI = 110
TRUTH_COLOUR = "#1f4fff"  # ground truth: blue (paper Figure 8)
PRED_COLOUR = "#ff2020"   # prediction: red


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_png(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file + rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def config_colours(configs: list[str]) -> dict[str, Any]:
    """A colour per configuration: tab10 up to 10 configurations, viridis (ordered) beyond."""
    from matplotlib import colormaps

    if len(configs) <= 10:
        cmap = colormaps["tab10"]
        return {c: cmap(i) for i, c in enumerate(configs)}
    cmap = colormaps["viridis"]
    return {c: cmap(i / max(len(configs) - 1, 1)) for i, c in enumerate(configs)}


LOSS_TERMS = (
    ("joint", schema.TRAIN_LOSS, schema.VAL_LOSS, "Joint loss"),
    ("heatmap", schema.TRAIN_LOSS_HEM, schema.VAL_LOSS_HEM, "Heatmap regression loss (MSE)"),
    ("segmentation", schema.TRAIN_LOSS_SEGM, schema.VAL_LOSS_SEGM, "Segmentation loss (Dice)"),
)


def loss_curves(history: pd.DataFrame, trials: pd.DataFrame, out_png: str | Path) -> Path | None:
    """Plot training (left column) and validation (right column) losses per epoch, log y.

    ``history``: history.parquet rows with a ``configuration`` column; ``trials``: the finished
    trials to plot (their order gives the legend order). Each line is the mean over split seeds of
    one configuration; the band spans min to max over seeds. Terms whose values are all NaN (a head
    that was not trained) are skipped. Returns the PNG path, or None when nothing can be plotted.
    """
    h = history[history["trial_id"].isin(trials["trial_id"])]
    terms = [t for t in LOSS_TERMS if np.isfinite(h[[t[1], t[2]]].to_numpy(np.float64)).any()]
    if not terms:
        return None
    configs = list(dict.fromkeys(trials["configuration"]))
    colours = config_colours(configs)
    fig = _figure(11, 3.2 * len(terms) + 0.6)
    axes = fig.subplots(len(terms), 2, squeeze=False, sharex=True)
    for row, (_, train_col, val_col, title) in enumerate(terms):
        for col, (column, split) in enumerate(((train_col, "training"), (val_col, "validation"))):
            ax = axes[row][col]
            for cfg in configs:
                sub = h[(h["configuration"] == cfg)][[schema.EPOCH, column]].dropna()
                sub = sub[sub[column] > 0]  # log scale
                if sub.empty:
                    continue
                g = sub.groupby(schema.EPOCH)[column]
                stats = pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max()}).sort_index()
                ax.plot(stats.index, stats["mean"], color=colours[cfg], lw=1.6, label=cfg)
                if g.size().max() > 1:
                    ax.fill_between(stats.index, stats["lo"], stats["hi"], color=colours[cfg], alpha=0.18, lw=0)
            ax.set_yscale("log")
            ax.set_title(f"{title}, {split}", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
            if row == len(terms) - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("loss (log scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0][1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=9, frameon=False)
    fig.suptitle("Loss per epoch: mean over split seeds, band = min-max", fontsize=11)
    return save_png(fig, out_png)


def accuracy_curves(landmarks: pd.DataFrame, trials: pd.DataFrame, radius: float, out_png: str | Path,
                    n_points: int = 201) -> Path | None:
    """Landmark accuracy (%) vs threshold (0 ... ``radius`` reference px) for right, left and both sides.

    Uses :func:`raysearch.metrics.threshold_accuracy` per trial; the line is the mean over split
    seeds, the band min-max. Dotted verticals mark R, R/2, R/5, R/10. Returns None without landmarks.
    """
    from raysearch.metrics import threshold_accuracy

    lm = landmarks[landmarks["trial_id"].isin(trials["trial_id"])]
    if lm.empty:
        return None
    configs = [c for c in dict.fromkeys(trials["configuration"]) if (lm["configuration"] == c).any()]
    colours = config_colours(configs)
    grid = np.linspace(0.0, float(radius), n_points)
    fig = _figure(13, 4.2)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, side in zip(axes, ("right", "left", "both")):
        for cfg in configs:
            curves = []
            for tid in trials.loc[trials["configuration"] == cfg, "trial_id"]:
                g = lm[lm["trial_id"] == tid]
                e = g["error_ref_px"].to_numpy(np.float64) if side == "both" else \
                    g.loc[g["side"] == side, "error_ref_px"].to_numpy(np.float64)
                if e.size:
                    curves.append(100.0 * np.asarray(threshold_accuracy(e, grid)))
            if not curves:
                continue
            c = np.vstack(curves)
            ax.plot(grid, c.mean(axis=0), color=colours[cfg], lw=1.6, label=cfg)
            if len(curves) > 1:
                ax.fill_between(grid, c.min(axis=0), c.max(axis=0), color=colours[cfg], alpha=0.15, lw=0)
        for d in schema.THRESHOLD_DIVISORS:
            ax.axvline(radius / d, color="grey", ls=":", lw=0.8)
            ax.text(radius / d, 3, "R" if d == 1 else f"R/{d}", rotation=90, ha="right", va="bottom",
                    fontsize=7, color="grey")
        ax.set_title({"right": "Right hemidiaphragm", "left": "Left hemidiaphragm", "both": "Both"}[side], fontsize=10)
        ax.set_xlabel("threshold (512-px reference pixels)")
        ax.set_xlim(0, radius)
        ax.set_ylim(0, 101)
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel("accuracy (%)")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=9, frameon=False)
    fig.suptitle("Landmark accuracy vs threshold: mean over split seeds, band = min-max "
                 "(dotted: R, R/2, R/5, R/10)", fontsize=11)
    return save_png(fig, out_png)


def objective_scatter(trials: pd.DataFrame, params: list[str], metric: str, out_png: str | Path) -> Path | None:
    """Scatter the metric against each varied numeric parameter (one panel per parameter).

    ``params``: dotted config keys (``config/<key>`` columns of ``trials``). A positive parameter
    spanning more than two decades gets a log x-axis. Returns None when no parameter is numeric.
    """
    numeric = [p for p in params if pd.api.types.is_numeric_dtype(trials["config/" + p])
               and not pd.api.types.is_bool_dtype(trials["config/" + p])]
    if not numeric:
        return None
    n = len(numeric)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = _figure(4.2 * cols, 3.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    y = pd.to_numeric(trials[metric], errors="coerce").to_numpy(np.float64)
    for ax, p in zip(axes, numeric):
        x = trials["config/" + p].astype(float).to_numpy()
        ax.scatter(x, y, s=22, color="#3060a0", alpha=0.8, edgecolor="white", lw=0.5)
        pos = x[np.isfinite(x)]
        if pos.size and pos.min() > 0 and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.25)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} per trial against each varied parameter", fontsize=11)
    return save_png(fig, out_png)


# -- qualitative panel (needs a checkpoint and the dataset) ----------------------------------------

def predict_images(checkpoint_path: str | Path, dataset_root: str | Path, image_ids: list[str]) -> list[dict]:
    """Run a checkpoint on dataset images at network resolution.

    Returns one dict per id: ``id``, ``image`` (S, S) float32 network input, ``truth`` (2, 2) and
    ``pred`` (2, 2) network px (rows right/left; NaN when absent), ``mask_prob`` (S, S) or None,
    ``heatmap`` (C, S, S) or None, ``error_ref_px`` (2,) (NaN when absent). Unknown ids raise ValueError.
    """
    import torch

    from raysearch.data.dataset import load_dataset, load_sample
    from raysearch.data.transforms import resize_sample
    from raysearch.geometry import REFERENCE_WIDTH, resize_points
    from raysearch.heatmaps import decode_landmarks
    from raysearch.training.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint_path)
    ds = load_dataset(dataset_root)
    records = ds.by_id
    missing = [i for i in image_ids if i not in records]
    if missing:
        raise ValueError(f"{dataset_root}: image id(s) {missing} not in the dataset (checkpoint {checkpoint_path})")
    size = ck.config.data.input_size
    channels = ck.config.model.heatmap_channels
    out = []
    for image_id in image_ids:
        stored = load_sample(records[image_id])
        stored_hw = stored["image"].shape
        sample = resize_sample(stored, size)
        x = torch.from_numpy(np.ascontiguousarray(sample["image"], dtype=np.float32))[None, None]
        with torch.no_grad():
            res = ck.model(x)
        prob = torch.sigmoid(res["seg_logits"])[0, 0].numpy() if res.get("seg_logits") is not None else None
        hm = res["heatmap"][0].numpy() if res.get("heatmap") is not None else None
        truth = np.asarray(sample["landmarks"], dtype=np.float64)
        pred = decode_landmarks(hm, channels, prob) if hm is not None else np.full((2, 2), np.nan)
        # errors in the stored frame, then scaled to the 512-px-wide reference frame (isotropic)
        pred_stored = resize_points(pred, (size, size), stored_hw)
        err = np.linalg.norm(pred_stored - stored["landmarks"], axis=1) * (REFERENCE_WIDTH / stored_hw[1])
        out.append({"id": image_id, "image": sample["image"], "truth": truth, "pred": pred, "mask_prob": prob,
                    "heatmap": hm, "error_ref_px": err})
    return out


def qualitative_panel(checkpoint_path: str | Path, dataset_root: str | Path, image_ids: list[str],
                      out_png: str | Path) -> Path:
    """Paper Figure 8: one column per image; rows input, predicted lung mask, predicted heatmap, overlay.

    The overlay draws the predicted mask's contour, ground-truth landmarks in blue and predicted
    ones in red; the column title gives the errors in 512-px reference pixels. A head the checkpoint
    does not have is drawn as an empty panel saying so. Returns the PNG path.
    """
    if not image_ids:
        raise ValueError("qualitative_panel needs at least one image id")
    preds = predict_images(checkpoint_path, dataset_root, list(image_ids))
    n = len(preds)
    fig = _figure(2.6 * n + 0.8, 10.8)
    axes = fig.subplots(4, n, squeeze=False)
    row_titles = ("input", "predicted lung mask", "predicted heatmap", "overlay (blue: truth, red: prediction)")
    for j, p in enumerate(preds):
        img = p["image"]
        axes[0][j].imshow(img, cmap="gray", vmin=0, vmax=1)
        e = p["error_ref_px"]
        err_txt = ", ".join("–" if not np.isfinite(v) else f"{v:.1f}" for v in e)
        axes[0][j].set_title(f"{p['id']}\nerror R, L: {err_txt} px", fontsize=8)
        if p["mask_prob"] is not None:
            axes[1][j].imshow(p["mask_prob"] > 0.5, cmap="gray", vmin=0, vmax=1)
        else:
            axes[1][j].text(0.5, 0.5, "no segmentation head", ha="center", va="center", fontsize=8)
        if p["heatmap"] is not None:
            axes[2][j].imshow(p["heatmap"].min(axis=0), cmap="magma", vmin=0, vmax=1)
        else:
            axes[2][j].text(0.5, 0.5, "no heatmap head", ha="center", va="center", fontsize=8)
        ax = axes[3][j]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        if p["mask_prob"] is not None:
            ax.contour(p["mask_prob"], levels=[0.5], colors=["#ffd000"], linewidths=0.8)
        t, q = p["truth"], p["pred"]
        ok_t, ok_q = np.isfinite(t).all(axis=1), np.isfinite(q).all(axis=1)
        ax.scatter(t[ok_t, 0], t[ok_t, 1], s=26, c=TRUTH_COLOUR, edgecolors="white", linewidths=0.5, zorder=3)
        ax.scatter(q[ok_q, 0], q[ok_q, 1], s=26, c=PRED_COLOUR, edgecolors="white", linewidths=0.5, zorder=4)
    for i in range(4):
        for j in range(n):
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
        axes[i][0].set_ylabel(row_titles[i], fontsize=8)
    return save_png(fig, out_png)


def pick_example_images(errors: pd.DataFrame, n: int = 4) -> list[str]:
    """Choose test images for the qualitative panel: typical ones and the worst by error.

    ``errors``: landmark rows of ONE trial (``image_id``, ``error_ref_px``). Images are ranked by
    their mean error over sides; returns up to ``n`` ids: the lower quartile and the median image,
    then the worst ones (worst last). Deterministic (ties by id).
    """
    per = errors.groupby("image_id", sort=True)["error_ref_px"].mean().reset_index()
    per = per.sort_values(["error_ref_px", "image_id"], kind="mergesort").reset_index(drop=True)
    ids = per["image_id"].tolist()
    if len(ids) <= n:
        return ids
    n_typical = n // 2
    qs = np.linspace(0.25, 0.5, n_typical) if n_typical > 1 else np.array([0.5])
    typical = [ids[int(round(q * (len(ids) - 1)))] for q in qs]
    worst = [i for i in ids if i not in typical][-(n - len(typical)):]
    return list(dict.fromkeys(typical + worst))[:n]
