"""The paper's tables, built with plain pandas from the per-image rows of experiment folders.

Every table is a :class:`Table`: a numeric ``data`` frame (written to CSV with a fixed float format,
rows sorted deterministically, so re-running gives byte-identical files) and a ``display`` frame of
strings (Markdown/HTML) with an optional ``bold`` mask. Accuracies use
:func:`raysearch.metrics.threshold_accuracy`, the same function the training loop reports, so a
table can never disagree with the metrics logged during training.

Units: landmark errors and thresholds in 512-px reference pixels; accuracies in percent;
segmentation metrics as fractions (Dice table, 4 decimals) or percent (single- vs multi-task table).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raysearch import schema
from raysearch.report.experiments import CONFIG_PREFIX, ReportError, short_name
from raysearch.report.stats import holm, wilcoxon_paired

SIDE_ROWS = ("right", "left", "both")
SIDE_TITLES = {"right": "Right", "left": "Left", "both": "Both"}
ALPHA = 0.05
CSV_FLOAT_FORMAT = "%.10g"

ARROW_ROW = "←"
"""Wilcoxon matrix symbol: the ROW configuration has the significantly lower errors."""
ARROW_COL = "↑"
"""Wilcoxon matrix symbol: the COLUMN configuration has the significantly lower errors."""
NO_DIFF = "≈"


@dataclass
class Table:
    """One report table.

    ``name``: file stem of ``tables/<name>.csv``; ``data``: numeric frame written to CSV;
    ``display``: strings shown in Markdown/HTML; ``bold``: bool frame of ``display``'s shape (or None).
    """

    name: str
    title: str
    caption: str
    data: pd.DataFrame
    display: pd.DataFrame
    bold: pd.DataFrame | None = None
    csv: bool = True
    """False for tables shown but not written (the provenance, which lives in report.json)."""


def to_csv_text(df: pd.DataFrame) -> str:
    """CSV text with a fixed float format and ``\\n`` line ends (byte-identical on re-runs)."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
    return buf.getvalue()


def format_mean_std(mean: float, std: float, n: int, decimals: int) -> str:
    """``"99.85 ± 0.19"``; with one replicate the std is undefined: ``"99.85 (n=1)"``; no value: ``"–"``."""
    if n == 0 or not np.isfinite(mean):
        return "–"
    if n < 2 or not np.isfinite(std):
        return f"{mean:.{decimals}f} (n=1)"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def divisor_label(d: float) -> str:
    """Column title of a threshold: ``R``, ``R/2``, ``R/5``, ``R/10``."""
    d = float(d)
    if d == 1:
        return "R"
    return f"R/{int(d) if d.is_integer() else d:g}"


def thresholds_from_trials(trials: pd.DataFrame) -> tuple[float, tuple[float, ...]]:
    """Return ``(R, divisors)`` from the trials' ``config/eval.*`` columns (defaults R=100, (1,2,5,10)).

    Raises :class:`ReportError` when trials disagree (their accuracies would not be comparable).
    """
    import json

    radius, divisors = 100.0, tuple(float(d) for d in schema.THRESHOLD_DIVISORS)
    col_r, col_d = CONFIG_PREFIX + "eval.radius_ref_px", CONFIG_PREFIX + "eval.threshold_divisors"
    if col_r in trials:
        vals = sorted({float(v) for v in trials[col_r]})
        if len(vals) > 1:
            raise ReportError(f"trials use different eval.radius_ref_px {vals}; their accuracies are not comparable")
        radius = vals[0]
    if col_d in trials:
        parsed = set()
        for v in trials[col_d]:
            v = json.loads(v) if isinstance(v, str) else v
            parsed.add(tuple(float(x) for x in v))
        if len(parsed) > 1:
            raise ReportError(f"trials use different eval.threshold_divisors {sorted(parsed)}")
        divisors = parsed.pop()
    return radius, divisors


# -- landmark accuracy ----------------------------------------------------------------------------

def accuracy_per_trial(landmarks: pd.DataFrame, trials: pd.DataFrame, radius: float,
                       divisors: tuple[float, ...]) -> pd.DataFrame:
    """Accuracy (percent) of every trial at R/divisor, per side and for both sides pooled.

    ``landmarks``: landmark_errors rows (``error_ref_px`` in reference px); ``trials``: the trials
    to include (``trial_id, configuration, config_order, split_seed``). Trials without landmark rows
    (segmentation-only) are left out. Returns a long frame with columns ``configuration,
    config_order, split_seed, trial_id, side, divisor, threshold_ref_px, n_points, accuracy``.
    """
    from raysearch.metrics import threshold_accuracy

    thresholds = np.array([radius / d for d in divisors], dtype=np.float64)
    rows = []
    by_trial = {k: g for k, g in landmarks.groupby("trial_id", sort=False)}
    for _, t in trials.iterrows():
        g = by_trial.get(t["trial_id"])
        if g is None or g.empty:
            continue
        for side in SIDE_ROWS:
            errs = g["error_ref_px"].to_numpy(np.float64) if side == "both" else \
                g.loc[g["side"] == side, "error_ref_px"].to_numpy(np.float64)
            if errs.size == 0:
                continue
            acc = np.asarray(threshold_accuracy(errs, thresholds), dtype=np.float64) * 100.0
            for d, thr, a in zip(divisors, thresholds, acc):
                rows.append({
                    "configuration": t["configuration"], "config_order": int(t["config_order"]),
                    "split_seed": int(t["split_seed"]), "trial_id": t["trial_id"], "side": side,
                    "divisor": float(d), "threshold_ref_px": float(thr), "n_points": int(errs.size),
                    "accuracy": float(a),
                })
    cols = ["configuration", "config_order", "split_seed", "trial_id", "side", "divisor",
            "threshold_ref_px", "n_points", "accuracy"]
    out = pd.DataFrame(rows, columns=cols)
    return _sort_sides(out, ["config_order", "side_order", "divisor", "split_seed"])


def _sort_sides(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    df = df.assign(side_order=df["side"].map({s: i for i, s in enumerate(SIDE_ROWS)}))
    return df.sort_values(by, kind="mergesort").drop(columns="side_order").reset_index(drop=True)


def summarise_over_seeds(per_trial: pd.DataFrame, value: str, keys: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1, :func:`raysearch.metrics.summarise`) and count of ``value`` over split seeds per ``keys`` group."""
    from raysearch.metrics import summarise

    rows = []
    for k, g in per_trial.groupby(keys, sort=False):
        mean, std = summarise(g[value].to_numpy(np.float64))
        rows.append(dict(zip(keys, k if isinstance(k, tuple) else (k,)), mean=mean, std=std,
                         n=int(np.isfinite(g[value].to_numpy(np.float64)).sum())))
    return pd.DataFrame(rows, columns=[*keys, "mean", "std", "n"])


def accuracy_summary(per_trial: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, side and threshold: mean ± std (percent) over split seeds, and ``best``.

    ``best`` marks, for the pooled (``both``) rows only, the configuration(s) with the highest mean
    at each threshold (ties all marked, none when every configuration ties), as the paper's bold.
    """
    s = summarise_over_seeds(per_trial, "accuracy", ["configuration", "config_order", "side", "divisor",
                                                     "threshold_ref_px"])
    s["best"] = False
    both = s["side"] == "both"
    for d in s["divisor"].unique():
        m = both & (s["divisor"] == d)
        s.loc[m, "best"] = _best_mask(s.loc[m, "mean"])
    return _sort_sides(s, ["config_order", "side_order", "divisor"])


def _best_mask(means: pd.Series) -> np.ndarray:
    """True for the highest mean(s); all False when there is one configuration or all of them tie."""
    v = means.to_numpy(np.float64)
    if v.size < 2 or not np.isfinite(v).any():
        return np.zeros(v.size, bool)
    best = np.isclose(v, np.nanmax(v), rtol=0, atol=1e-9)
    return best if not best.all() else np.zeros(v.size, bool)


def accuracy_table(per_trial: pd.DataFrame, group_by: list[str], trials: pd.DataFrame, name: str,
                   title: str, caption: str) -> Table:
    """Paper Tables 3/5/7: rows configuration x (Right, Left, Both), columns R ... R/10, mean ± std %."""
    s = accuracy_summary(per_trial)
    divisors = sorted(s["divisor"].unique())
    key_cols = [short_name(k) for k in group_by]
    values = _config_values(trials, group_by)
    disp_rows, bold_rows = [], []
    for cfg in list(dict.fromkeys(s["configuration"])):
        first = True
        for side in SIDE_ROWS:
            sub = s[(s["configuration"] == cfg) & (s["side"] == side)]
            if sub.empty:
                continue
            row = {k: (values[cfg][i] if first else "") for i, k in enumerate(key_cols)} if key_cols else \
                {"Configuration": cfg if first else ""}
            row["Side"] = SIDE_TITLES[side]
            brow = {c: False for c in row}
            for d in divisors:
                r = sub[sub["divisor"] == d].iloc[0]
                row[divisor_label(d)] = format_mean_std(r["mean"], r["std"], int(r["n"]), 2)
                brow[divisor_label(d)] = bool(r["best"])
            disp_rows.append(row)
            bold_rows.append(brow)
            first = False
    data = s.rename(columns={"mean": "accuracy_mean_pct", "std": "accuracy_std_pct", "n": "n_seeds"})
    data = data.drop(columns="config_order")
    return Table(name, title, caption, data, pd.DataFrame(disp_rows), pd.DataFrame(bold_rows))


def _config_values(trials: pd.DataFrame, group_by: list[str]) -> dict[str, list[str]]:
    from raysearch.report.experiments import format_value

    out: dict[str, list[str]] = {}
    for _, r in trials.iterrows():
        out.setdefault(r["configuration"], [format_value(r[CONFIG_PREFIX + k]) for k in group_by])
    return out


# -- segmentation ---------------------------------------------------------------------------------

def segmentation_per_trial(segmentation: pd.DataFrame, trials: pd.DataFrame,
                           metrics: tuple[str, ...] = schema.SEGMENTATION_METRICS) -> pd.DataFrame:
    """Mean of each segmentation metric over a trial's test images (fractions in [0, 1]).

    Trials whose rows are missing or all NaN (heatmap-only) are left out. Returns columns
    ``configuration, config_order, split_seed, trial_id, metric, n_images, value``.
    """
    rows = []
    by_trial = {k: g for k, g in segmentation.groupby("trial_id", sort=False)}
    for _, t in trials.iterrows():
        g = by_trial.get(t["trial_id"])
        if g is None:
            continue
        for m in metrics:
            v = g[m].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            rows.append({"configuration": t["configuration"], "config_order": int(t["config_order"]),
                         "split_seed": int(t["split_seed"]), "trial_id": t["trial_id"], "metric": m,
                         "n_images": int(v.size), "value": float(v.mean())})
    cols = ["configuration", "config_order", "split_seed", "trial_id", "metric", "n_images", "value"]
    out = pd.DataFrame(rows, columns=cols)
    order = {m: i for i, m in enumerate(schema.SEGMENTATION_METRICS)}
    return out.assign(_m=out["metric"].map(order)).sort_values(
        ["config_order", "_m", "split_seed"], kind="mergesort").drop(columns="_m").reset_index(drop=True)


SEG_TITLES = {"dice": "Dice", "jaccard": "Jaccard", "auc": "AUC", "accuracy": "Accuracy",
              "precision": "Precision", "recall": "Recall"}


def segmentation_table(per_trial: pd.DataFrame, group_by: list[str], trials: pd.DataFrame, name: str,
                       title: str, caption: str, metrics: tuple[str, ...], percent: bool) -> Table:
    """Paper Tables 6 (Dice, fraction, 4 decimals) and 8 (six metrics, percent, 2 decimals).

    Best configuration per metric (highest mean) in bold.
    """
    sub = per_trial[per_trial["metric"].isin(metrics)]
    s = summarise_over_seeds(sub, "value", ["configuration", "config_order", "metric"])
    scale, decimals = (100.0, 2) if percent else (1.0, 4)
    s["best"] = False
    for m in metrics:
        mm = s["metric"] == m
        s.loc[mm, "best"] = _best_mask(s.loc[mm, "mean"])
    key_cols = [short_name(k) for k in group_by]
    values = _config_values(trials, group_by)
    disp, bold = [], []
    for cfg in list(dict.fromkeys(s.sort_values("config_order", kind="mergesort")["configuration"])):
        row = {k: values[cfg][i] for i, k in enumerate(key_cols)} if key_cols else {"Configuration": cfg}
        brow = {c: False for c in row}
        for m in metrics:
            r = s[(s["configuration"] == cfg) & (s["metric"] == m)]
            col = SEG_TITLES[m] + (" (%)" if percent else "")
            if r.empty:
                row[col], brow[col] = "–", False
                continue
            r = r.iloc[0]
            row[col] = format_mean_std(r["mean"] * scale, r["std"] * scale, int(r["n"]), decimals)
            brow[col] = bool(r["best"])
        disp.append(row)
        bold.append(brow)
    order = {m: i for i, m in enumerate(schema.SEGMENTATION_METRICS)}
    data = s.assign(_m=s["metric"].map(order)).sort_values(["config_order", "_m"], kind="mergesort")
    data = data.drop(columns=["_m", "config_order"]).rename(columns={"mean": "mean", "std": "std", "n": "n_seeds"})
    return Table(name, title, caption, data.reset_index(drop=True), pd.DataFrame(disp), pd.DataFrame(bold))


# -- Wilcoxon matrix ------------------------------------------------------------------------------

def paired_errors(landmarks: pd.DataFrame, trials: pd.DataFrame, config_a: str, config_b: str) -> pd.DataFrame:
    """Pair the per-image errors of two configurations: same split seed, image and side.

    ``trials``: one finished trial per (configuration, seed). Only seeds both configurations ran are
    paired. Returns columns ``split_seed, image_id, side, error_a, error_b`` sorted by those keys.
    Raises :class:`ReportError` when the two trials of a seed used different splits (split_hash),
    or when their test rows do not match (naming both trials and the seed).
    """
    ta = trials[trials["configuration"] == config_a].set_index("split_seed")
    tb = trials[trials["configuration"] == config_b].set_index("split_seed")
    seeds = sorted(set(ta.index) & set(tb.index))
    if not seeds:
        raise ReportError(f"configurations {config_a!r} and {config_b!r} share no split seed; nothing to pair")
    parts = []
    for seed in seeds:
        a, b = ta.loc[seed], tb.loc[seed]
        if str(a["split_hash"]) != str(b["split_hash"]):
            raise ReportError(
                f"split seed {seed}: trial {a['trial_id']} ({config_a}) has split_hash {str(a['split_hash'])[:12]} "
                f"but trial {b['trial_id']} ({config_b}) has {str(b['split_hash'])[:12]}; runs with different test "
                f"splits for the same seed cannot be paired"
            )
        ea = landmarks[landmarks["trial_id"] == a["trial_id"]][["image_id", "side", "error_ref_px"]]
        eb = landmarks[landmarks["trial_id"] == b["trial_id"]][["image_id", "side", "error_ref_px"]]
        m = ea.merge(eb, on=["image_id", "side"], how="outer", suffixes=("_a", "_b"), indicator=True)
        if (m["_merge"] != "both").any():
            r = m[m["_merge"] != "both"].iloc[0]
            only = a["trial_id"] if r["_merge"] == "left_only" else b["trial_id"]
            raise ReportError(
                f"split seed {seed}: trials {a['trial_id']} and {b['trial_id']} have different test rows "
                f"(image {r['image_id']}, side {r['side']} only in {only}); they cannot be paired"
            )
        m = m.drop(columns="_merge").rename(columns={"error_ref_px_a": "error_a", "error_ref_px_b": "error_b"})
        m.insert(0, "split_seed", int(seed))
        parts.append(m)
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["split_seed", "image_id", "side"], kind="mergesort").reset_index(drop=True)


def wilcoxon_tests(landmarks: pd.DataFrame, trials: pd.DataFrame, configs: list[str],
                   apply_holm: bool, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair (a before b in ``configs``) x side (right, left, both): a paired Wilcoxon test.

    Returns the long table ``config_a, config_b, side, n_pairs, statistic, p_value, p_adjusted,
    better`` where ``p_adjusted`` is Holm-corrected over ALL tests of the matrix when ``apply_holm``
    (else equal to ``p_value``) and ``better`` is the configuration with the lower errors when
    ``p_adjusted <= alpha``, else ``""``.
    """
    rows = []
    for i, a in enumerate(configs):
        for b in configs[i + 1:]:
            pairs = paired_errors(landmarks, trials, a, b)
            for side in SIDE_ROWS:
                sub = pairs if side == "both" else pairs[pairs["side"] == side]
                if sub.empty:
                    continue
                r = wilcoxon_paired(sub["error_a"].to_numpy(), sub["error_b"].to_numpy())
                rows.append({"config_a": a, "config_b": b, "side": side, "n_pairs": r.n_pairs,
                             "statistic": r.statistic, "p_value": r.p_value, "_better": r.better})
    cols = ["config_a", "config_b", "side", "n_pairs", "statistic", "p_value", "p_adjusted", "better"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["p_adjusted"] = holm(df["p_value"].to_numpy()) if apply_holm else df["p_value"]
    sig = df["p_adjusted"] <= alpha
    df["better"] = np.where(sig & (df["_better"] == "a"), df["config_a"],
                            np.where(sig & (df["_better"] == "b"), df["config_b"], ""))
    return df[cols]


def wilcoxon_matrix(tests: pd.DataFrame, configs: list[str], apply_holm: bool, alpha: float = ALPHA) -> Table:
    """Paper Table 4: upper-triangular matrix of ``right / left / both`` symbols per pair."""
    disp = pd.DataFrame("", index=configs, columns=configs)
    for c in configs:
        disp.loc[c, c] = "="
    for (a, b), g in tests.groupby(["config_a", "config_b"], sort=False):
        sym = []
        for side in SIDE_ROWS:
            r = g[g["side"] == side]
            if r.empty:
                sym.append("–")
                continue
            better = r.iloc[0]["better"]
            sym.append(ARROW_ROW if better == a else ARROW_COL if better == b else NO_DIFF)
        disp.loc[a, b] = " / ".join(sym)
    disp = disp.reset_index().rename(columns={"index": ""})
    corr = "Holm-corrected over all tests of the matrix" if apply_holm else "not corrected for multiple comparisons"
    caption = (
        f"Two-sided Wilcoxon signed-rank tests on paired per-image landmark errors (pairs: same split seed, "
        f"test image and side). Each cell shows right / left / both lungs. {NO_DIFF}: no significant difference "
        f"(p > {alpha}); {ARROW_ROW}: the ROW configuration has significantly lower errors; {ARROW_COL}: the "
        f"COLUMN configuration has significantly lower errors (p ≤ {alpha}). p-values {corr}; all statistics "
        f"are in wilcoxon.csv."
    )
    return Table("wilcoxon", "Wilcoxon signed-rank tests between configurations", caption,
                 tests.reset_index(drop=True), disp, None)


# -- any sweep ------------------------------------------------------------------------------------

EXCLUDED_PARAMS = ("data.split_seed",)


def varied_params(trials: pd.DataFrame) -> list[str]:
    """Dotted config keys whose value differs between the given trials (split seed excluded), sorted."""
    out = []
    for c in sorted(c for c in trials.columns if c.startswith(CONFIG_PREFIX)):
        key = c[len(CONFIG_PREFIX):]
        if key in EXCLUDED_PARAMS:
            continue
        if trials[c].astype(str).nunique() > 1:
            out.append(key)
    return out


def leaderboard(trials: pd.DataFrame, metric: str, mode: str, extra_metrics: tuple[str, ...] = (
        schema.TEST_ERR, schema.TEST_DICE, schema.acc_key("test", 10), schema.BEST_EPOCH)) -> Table:
    """Finished trials sorted by the experiment's metric (``mode`` min or max; ties by trial id)."""
    params = varied_params(trials)
    cols = ["trial_id"] + (["experiment"] if trials["experiment"].nunique() > 1 else []) + ["split_seed"]
    cols += [CONFIG_PREFIX + p for p in params] + [metric] + [m for m in extra_metrics if m in trials and m != metric]
    df = trials[cols].copy()
    df = df.sort_values(["trial_id"], kind="mergesort").sort_values(
        metric, ascending=(mode == "min"), kind="mergesort", na_position="last").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    disp = df.copy()
    for c in disp.columns:
        if pd.api.types.is_float_dtype(disp[c]):
            disp[c] = disp[c].map(lambda v: "–" if not np.isfinite(v) else f"{v:.4g}")
    disp.columns = [c[len(CONFIG_PREFIX):] if c.startswith(CONFIG_PREFIX) else c for c in disp.columns]
    caption = f"Finished trials sorted by {metric} ({'lower' if mode == 'min' else 'higher'} is better)."
    return Table("leaderboard", "Leaderboard", caption, df, disp.astype(str), None)


def parameter_importance(trials: pd.DataFrame, metric: str) -> Table:
    """Importance of each varied numeric parameter: the absolute Spearman rank correlation with the metric.

    A simple, documented measure (not fANOVA): |ρ| in [0, 1] says how monotonically the objective
    follows the parameter across finished trials; it misses non-monotonic effects and interactions.
    Non-numeric parameters are listed with ρ = NaN ("categorical"). Sorted by |ρ| descending.
    """
    from scipy.stats import spearmanr

    rows = []
    y = pd.to_numeric(trials[metric], errors="coerce").to_numpy(np.float64)
    for p in varied_params(trials):
        x = trials[CONFIG_PREFIX + p]
        numeric = pd.api.types.is_numeric_dtype(x) or pd.api.types.is_bool_dtype(x)
        rho = float("nan")
        kind = "categorical"
        if numeric:
            kind = "numeric"
            xv = x.astype(float).to_numpy()
            ok = np.isfinite(xv) & np.isfinite(y)
            if ok.sum() >= 3 and np.ptp(xv[ok]) > 0 and np.ptp(y[ok]) > 0:
                rho = float(spearmanr(xv[ok], y[ok]).statistic)
        rows.append({"parameter": p, "kind": kind, "spearman_rho": rho, "abs_rho": abs(rho), "n_trials": int(len(x))})
    df = pd.DataFrame(rows, columns=["parameter", "kind", "spearman_rho", "abs_rho", "n_trials"])
    df = df.sort_values("parameter", kind="mergesort").sort_values(
        "abs_rho", ascending=False, kind="mergesort", na_position="last").reset_index(drop=True)
    disp = df.copy()
    for c in ("spearman_rho", "abs_rho"):
        disp[c] = disp[c].map(lambda v: "–" if not math.isfinite(v) else f"{v:.3f}")
    caption = (f"Absolute Spearman rank correlation |ρ| between each varied numeric parameter and {metric} over "
               f"finished trials (1 = the objective is a monotonic function of the parameter, 0 = no monotonic "
               f"relation). Not a causal or interaction-aware measure.")
    return Table("importance", "Parameter importance", caption, df, disp.astype(str), None)


def per_seed_table(per_trial: pd.DataFrame, name: str = "accuracy_per_seed") -> Table:
    """The per-trial accuracies behind the mean ± std (CSV only; also shown compactly)."""
    data = per_trial.drop(columns="config_order").reset_index(drop=True)
    return Table(name, "Accuracy per split seed", "One row per trial, side and threshold (percent).",
                 data, data.astype(str), None)

