"""The end-of-sweep console summary: the paper's Table-3 layout (accuracy at R..R/10, mean ± std over seeds).

The full set of tables, Wilcoxon tests and figures is built by ``python -m raysearch.report``; this is
the quick look printed when a sweep ends.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from raysearch.metrics import summarise, threshold_accuracy


def summary_text(trials: pd.DataFrame, landmarks: pd.DataFrame, segmentation: pd.DataFrame,
                 group_by: list[str], analysis: str) -> str:
    """Return a text table: per configuration (``group_by`` values) and side, accuracy at R..R/10 as mean ± std over
    split seeds (percent), plus Dice when segmentation was trained. Thresholds come from the trials' eval config."""
    if trials.empty or "status" not in trials:
        return "no finished trials"
    ok = trials[trials["status"] == "TERMINATED"]
    if ok.empty:
        return "no finished trials"
    cols = [f"config/{k}" for k in group_by if f"config/{k}" in ok]
    radius = float(ok["config/eval.radius_ref_px"].iloc[0])
    divisors = json.loads(ok["config/eval.threshold_divisors"].iloc[0]) if isinstance(
        ok["config/eval.threshold_divisors"].iloc[0], str) else list(ok["config/eval.threshold_divisors"].iloc[0])
    thresholds = [radius / d for d in divisors]
    heads = ["R" if d == 1 else f"R/{d:g}" for d in divisors]
    lines = [f"{analysis} summary: landmark accuracy (%) at R = {radius:g} reference px, mean ± std over split seeds"]
    configs = ok.groupby(cols, sort=True) if cols else [((), ok)]
    header = f"{'configuration':<28}{'side':<7}" + "".join(f"{h:>16}" for h in heads) + f"{'Dice':>18}"
    lines.append(header)
    for key, group in configs:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c.split('.')[-1]}={v}" for c, v in zip(cols, key)) or "all"
        lm = landmarks[landmarks["trial_id"].isin(group["trial_id"])]
        dice = segmentation[segmentation["trial_id"].isin(group["trial_id"])]
        dice_txt = ""
        if len(dice):
            per_trial = dice.groupby("trial_id")["dice"].mean().to_numpy()
            m, s = summarise(per_trial)
            dice_txt = f"{m:.4f} ± {0.0 if np.isnan(s) else s:.4f}"
        for side in ("right", "left", "both"):
            if lm.empty:
                if side == "both":
                    lines.append(f"{label:<28}{'-':<7}" + "".join(f"{'-':>16}" for _ in heads) + f"{dice_txt:>18}")
                continue
            accs = []
            for _, tl in lm.groupby("trial_id"):
                e = tl["error_ref_px"].to_numpy() if side == "both" else tl.loc[tl["side"] == side, "error_ref_px"].to_numpy()
                accs.append(100 * threshold_accuracy(e, thresholds))
            accs = np.array(accs)
            cells = []
            for j in range(len(thresholds)):
                m, s = summarise(accs[:, j])
                cells.append(f"{m:6.2f} ± {0.0 if np.isnan(s) else s:5.2f}")
            lines.append(f"{label if side == 'right' else '':<28}{side:<7}" + "".join(f"{c:>16}" for c in cells)
                         + (f"{dice_txt:>18}" if side == "both" else ""))
    return "\n".join(lines)
