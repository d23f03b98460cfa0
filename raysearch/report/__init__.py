"""The report: every paper table and figure regenerated from experiment folders.

``python -m raysearch.report EXP_DIR [EXP_DIR ...] --out REPORT_DIR`` calls :func:`build_report`,
which writes ``report.md``, a self-contained ``report.html``, ``tables/*.csv``, ``figures/*.png``
and ``report.json`` (the manifest of the files it wrote, the options and the provenance).

Analyses (``--analysis``, default ``auto`` = experiment.json's ``analysis`` when it is one of these):

* ``beta`` (paper Tables 3-4): landmark accuracy per beta at R, R/2, R/5, R/10, Wilcoxon matrix;
* ``lambda`` (Tables 5-6): accuracy per (lambda_hem, lambda_segm), Dice, Wilcoxon matrix;
* ``tasks`` (Tables 7-8): heatmap-only vs multi-task accuracy, segmentation-only vs multi-task
  Dice, Jaccard, AUC, accuracy, precision, recall;
* ``sweep`` (any search, e.g. Optuna): leaderboard, parameter importance, objective scatter plots.

Every analysis also gets the leaderboard, loss curves and, when the checkpoint and dataset are on
this machine, the qualitative panel and Grad-CAM maps of the best trial.

Output folder rule: REPORT_DIR must be missing, empty, or a previous report (it holds our
``report.json``); in a previous report only the files listed in its manifest are replaced. Any
other non-empty folder is refused unless ``force`` is set, and even then only our file names are
written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from raysearch.atomic import write_bytes_atomic
from raysearch.data.remote import is_uri
from raysearch.report.experiments import (
    ExperimentSet,
    ReportError,
    load_experiments,
    provenance,
    replicate_trials,
)
from raysearch.report.html import Block, Figure, Heading, Paragraph, render_html, render_markdown
from raysearch.report.tables import (
    ALPHA,
    SEG_TITLES,
    Table,
    accuracy_per_trial,
    accuracy_table,
    divisor_label,
    leaderboard,
    parameter_importance,
    per_seed_table,
    segmentation_per_trial,
    segmentation_table,
    thresholds_from_trials,
    to_csv_text,
    varied_params,
    wilcoxon_matrix,
    wilcoxon_tests,
)

REPORT_FORMAT = "raysearch-report-v1"
MANIFEST = "report.json"
ANALYSES = ("beta", "lambda", "tasks", "sweep")
DEFAULT_GROUP_BY = {"beta": ["loss.beta"], "lambda": ["loss.lambda_hem", "loss.lambda_segm"], "tasks": ["loss.task"]}
"""Configuration keys of an analysis when the experiments define none (e.g. single ``raysearch.train`` runs)."""
WANDB_MODES = ("disabled", "offline", "online")


@dataclass(frozen=True)
class ReportOptions:
    """What the report computes and how it writes.

    ``holm``: Holm-correct the Wilcoxon p-values over the whole matrix; ``analysis``: one of
    ``auto, beta, lambda, tasks, sweep``; ``gradcam``: draw Grad-CAM maps (needs checkpoint and
    dataset); ``qualitative``: draw the Figure-8 panel; ``wandb``: ``disabled``, ``offline`` or
    ``online``; ``force``: write into a non-empty folder that is not a previous report;
    ``alpha``: significance level; ``n_examples``: images in the qualitative panels.
    """

    holm: bool = False
    analysis: str = "auto"
    gradcam: bool = True
    qualitative: bool = True
    wandb: str = "disabled"
    force: bool = False
    alpha: float = ALPHA
    n_examples: int = 4

    def __post_init__(self) -> None:
        if self.analysis not in ("auto",) + ANALYSES:
            raise ReportError(f"analysis must be one of {['auto', *ANALYSES]}, got {self.analysis!r}")
        if self.wandb not in WANDB_MODES:
            raise ReportError(f"wandb must be one of {list(WANDB_MODES)}, got {self.wandb!r}")
        if not 0 < self.alpha < 1:
            raise ReportError(f"alpha must lie in (0, 1), got {self.alpha}")


def resolve_analysis(es: ExperimentSet, requested: str) -> str:
    """Return the analysis to run: ``requested`` unless ``auto``.

    ``auto``: the experiments' common ``analysis`` when it is one of beta/lambda/tasks; experiments
    that disagree but vary ``loss.task`` -> ``tasks``; anything else -> ``sweep``.
    """
    if requested != "auto":
        return requested
    kinds = set(es.analyses)
    if len(kinds) == 1 and next(iter(kinds)) in ANALYSES:
        return next(iter(kinds))
    # anything else ("search", "single-run", mixed): a trial-level sweep, unless loss.task varies
    if "config/loss.task" in es.trials and es.ok_trials["config/loss.task"].nunique() > 1:
        return "tasks"
    return "sweep"


# -- output folder --------------------------------------------------------------------------------

def _prepare_out_dir(out: Path, force: bool) -> list[str]:
    """Check the output folder rule; return the files of a previous report to replace."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return []
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            prev = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            prev = {}
        if isinstance(prev, dict) and prev.get("format") == REPORT_FORMAT:
            return [f for f in prev.get("files", []) if isinstance(f, str)]
    if force:
        return []
    raise ReportError(
        f"--out {out} is not empty and holds no previous raysearch report ({MANIFEST}); refusing to write there. "
        f"Choose a new or empty folder, delete this one, or pass --force to write our files into it anyway."
    )


def _write_text(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), shared=True)  # a report is meant to be shared


# -- sections -------------------------------------------------------------------------------------

def _provenance_blocks(es: ExperimentSet, prov: dict[str, Any], analysis: str, options: ReportOptions,
                       radius: float, divisors: tuple[float, ...], created: str) -> list[Block]:
    exps = prov["experiments"]
    rows = [
        ("Experiments", ", ".join(e["name"] for e in exps)),
        ("Analysis", analysis),
        ("Configuration defined by", ", ".join(es.group_by) or "(each trial)"),
        ("Dataset", f"{prov['dataset']} ({prov['n_images']} images)"),
        ("Dataset checksum (sha256)", prov["dataset_checksum"]),
        ("Scale preset", ", ".join(sorted({e["scale"] for e in exps}))),
        ("Split seeds", ", ".join(str(s["split_seed"]) for s in prov["splits"])),
        ("Images per split (train / val / test)",
         "; ".join(f"seed {s['split_seed']}: {s['n_train']} / {s['n_val']} / {s['n_test']}" for s in prov["splits"])),
        ("Split hash per seed", "; ".join(f"seed {s['split_seed']}: {s['split_hash'][:16]}" for s in prov["splits"])),
        ("Split hash (experiment)", "; ".join(f"{e['name']}: {e['split_hash'][:16]}" for e in exps)),
        ("Selection metric", f"{es.metric} ({es.mode})"),
        ("Accuracy thresholds (512-px reference pixels)", ", ".join(
            f"{divisor_label(d)} = {radius / d:g}" for d in divisors)),
        ("Trials (finished / failed)", "; ".join(f"{e['name']}: {e['n_trials'] - e['n_failed']} / {e['n_failed']}"
                                                 for e in exps)),
        ("Experiment created", "; ".join(f"{e['name']}: {e['created']}" for e in exps)),
        ("raysearch version (experiment / report)",
         ", ".join(sorted({e["raysearch_version"] for e in exps})) + f" / {prov['report_raysearch_version']}"),
        ("Wilcoxon significance", f"alpha = {options.alpha}; Holm correction "
                                  + ("applied over all tests of the matrix" if options.holm else "not applied")),
        ("Report created", created),
    ]
    df = pd.DataFrame(rows, columns=["Item", "Value"])
    table = Table("provenance", "Provenance", "Where every number of this report comes from (also in report.json).",
                  df, df, None, csv=False)
    blocks: list[Block] = [Heading(1, "raysearch report: " + ", ".join(e["name"] for e in exps)), table]
    for e in exps:
        if e["description"]:
            blocks.append(Paragraph(f"{e['name']}: {e['description']}"))
        blocks.append(Paragraph(f"{e['name']} command: {e['command']}"))
    failed = es.trials[es.trials["failed"]]
    if len(failed):
        lines = "; ".join(f"{r['trial_id']} ({r['status']}: {str(r['error'])[:120]})" for _, r in failed.iterrows())
        blocks.append(Paragraph(f"{len(failed)} trial(s) failed and are excluded from every table: {lines}", note=True))
    return blocks


def _trial_has(df: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["trial_id"].isin(df["trial_id"])]


def _grouped_sections(es: ExperimentSet, analysis: str, options: ReportOptions, radius: float,
                      divisors: tuple[float, ...]) -> tuple[list[Block], list[Table]]:
    trials = replicate_trials(es)
    blocks: list[Block] = []
    tables: list[Table] = []
    lm_trials = _trial_has(es.landmarks, trials)
    titles = {
        "beta": ("Analysis I: saturation distance β", "accuracy_beta",
                 "Landmark localisation accuracy (%) per saturation distance β (reference px)"),
        "lambda": ("Analysis II: balance between the tasks", "accuracy_lambda",
                   "Landmark localisation accuracy (%) per loss-weight configuration (λ_hem, λ_segm)"),
        "tasks": ("Analysis III: single-task vs multi-task", "accuracy_tasks",
                  "Landmark localisation accuracy (%) of the heatmap-only and multi-task models"),
    }
    section, acc_name, acc_title = titles.get(analysis, titles["beta"])
    blocks.append(Heading(2, section))
    thr_text = ", ".join(f"{divisor_label(d)} = {radius / d:g} px" for d in divisors)
    if len(lm_trials):
        per = accuracy_per_trial(es.landmarks, lm_trials, radius, divisors)
        n_seeds = per.groupby("configuration")["split_seed"].nunique()
        cap = (f"Fraction of test landmarks whose Euclidean error (512-px reference frame) is within the threshold "
               f"({thr_text}); mean ± sample std (ddof=1) over split seeds (n = {n_seeds.min()}"
               f"{'' if n_seeds.min() == n_seeds.max() else '–' + str(n_seeds.max())}). "
               f"Bold: the best configuration per threshold for both lungs.")
        t = accuracy_table(per, es.group_by, trials, acc_name, acc_title, cap)
        tables.append(t)
        blocks.append(t)
        seeds_t = per_seed_table(per)
        tables.append(seeds_t)
        blocks.append(Paragraph(f"Per-seed accuracies behind this table: tables/{seeds_t.name}.csv."))
        configs = list(dict.fromkeys(lm_trials["configuration"]))
        if len(configs) > 1:
            tests = wilcoxon_tests(es.landmarks, lm_trials, configs, options.holm, options.alpha)
            wt = wilcoxon_matrix(tests, configs, options.holm, options.alpha)
            tables.append(wt)
            blocks.append(wt)
    else:
        blocks.append(Paragraph("No landmark errors in these experiments (no heatmap head was trained).", note=True))

    seg_trials = _trial_has(es.segmentation.dropna(subset=["dice"]), trials)
    if len(seg_trials):
        per_seg = segmentation_per_trial(es.segmentation, seg_trials)
        if analysis == "tasks":
            metrics, percent = tuple(SEG_TITLES), True
            title = "Lung segmentation of the segmentation-only and multi-task models (%)"
        else:
            metrics, percent = ("dice",), False
            title = "Lung segmentation Dice per configuration"
        cap = ("Per trial, the mean over test images; then mean ± sample std over split seeds. "
               "Bold: the best configuration per metric.")
        st = segmentation_table(per_seg, es.group_by, trials, "segmentation", title, cap, metrics, percent)
        tables.append(st)
        blocks.append(st)
    return blocks, tables


def _sweep_sections(es: ExperimentSet, out: Path) -> tuple[list[Block], list[Table], list[Figure]]:
    trials = es.ok_trials
    blocks: list[Block] = [Heading(2, "Search results")]
    tables: list[Table] = []
    figs: list[Figure] = []
    imp = parameter_importance(trials, es.metric)
    tables.append(imp)
    blocks.append(imp)
    from raysearch.report.figures import objective_scatter

    p = objective_scatter(trials, varied_params(trials), es.metric, out / "figures" / "objective_vs_params.png")
    if p is not None:
        f = Figure(p, "figures/objective_vs_params.png", f"{es.metric} of every finished trial against each varied "
                                                         f"numeric parameter.")
        figs.append(f)
        blocks.append(f)
    return blocks, tables, figs


MAX_CURVES = 8


def _curve_trials(es: ExperimentSet, analysis: str) -> tuple[pd.DataFrame, str]:
    """Trials drawn in the curve figures: all, or for a large search the best MAX_CURVES configurations."""
    t = es.ok_trials
    configs = list(dict.fromkeys(t["configuration"]))
    if analysis != "sweep" or len(configs) <= MAX_CURVES:
        return t, ""
    best = t.groupby("configuration", sort=False)[es.metric].mean()
    best = best.sort_index(kind="mergesort").sort_values(ascending=(es.mode == "min"), kind="mergesort",
                                                         na_position="last")
    keep = set(best.index[:MAX_CURVES])
    note = (f"Curves show the {MAX_CURVES} best of {len(configs)} configurations by {es.metric} "
            f"(every trial is in the leaderboard).")
    return t[t["configuration"].isin(keep)], note


def _best_trial(es: ExperimentSet) -> pd.Series | None:
    t = es.ok_trials
    t = t[t["checkpoint"].notna() & (t["checkpoint"].astype(str) != "")]
    if t.empty:
        return None
    t = t.sort_values("trial_id", kind="mergesort").sort_values(
        es.metric, ascending=(es.mode == "min"), kind="mergesort", na_position="last")
    return t.iloc[0]


def _example_sections(es: ExperimentSet, out: Path, options: ReportOptions) -> tuple[list[Block], list[Figure]]:
    if not (options.qualitative or options.gradcam):
        return [], []
    blocks: list[Block] = [Heading(2, "Qualitative results (paper Figures 8 and 9)")]
    best = _best_trial(es)
    if best is None:
        return blocks + [Paragraph("No finished trial has a checkpoint; qualitative figures skipped.", note=True)], []
    exp = next(e for e in es.experiments if e.name == best["experiment"])
    ckpt = exp.path / str(best["checkpoint"])
    root = Path(str(exp.meta["dataset"]["root"]))
    if not ckpt.is_file():
        return blocks + [Paragraph(f"Checkpoint {ckpt} not found on this machine; qualitative figures skipped.",
                                   note=True)], []
    if not root.is_dir():
        return blocks + [Paragraph(f"Dataset folder {root} not found on this machine; qualitative figures "
                                   f"skipped.", note=True)], []
    from raysearch.data.dataset import load_dataset

    checksum = load_dataset(root).checksum
    if checksum != exp.meta["dataset"]["checksum"]:
        return blocks + [Paragraph(f"The dataset at {root} has changed since the experiment (checksum {checksum[:12]} "
                                   f"vs {str(exp.meta['dataset']['checksum'])[:12]}); qualitative figures skipped.",
                                   note=True)], []
    from raysearch.report.figures import pick_example_images, qualitative_panel

    lm = es.landmarks[es.landmarks["trial_id"] == best["trial_id"]]
    if lm.empty:
        seg = es.segmentation[es.segmentation["trial_id"] == best["trial_id"]]
        lm = pd.DataFrame({"image_id": seg["image_id"], "error_ref_px": 1.0 - seg["dice"]})
    ids = pick_example_images(lm, options.n_examples)
    blocks.append(Paragraph(f"Best trial by {es.metric}: {best['trial_id']} ({best['configuration']}, split seed "
                            f"{best['split_seed']}); test images: two typical ones and the worst by error: "
                            f"{', '.join(ids)}."))
    figs: list[Figure] = []
    if options.qualitative:
        p = qualitative_panel(ckpt, root, ids, out / "figures" / "qualitative.png")
        figs.append(Figure(p, "figures/qualitative.png",
                           "Rows: input, predicted lung mask, predicted heatmap, overlay (mask contour yellow, "
                           "ground truth blue, prediction red). Errors in 512-px reference pixels."))
    if options.gradcam:
        from raysearch.report.gradcam import gradcam_panel

        p = gradcam_panel(ckpt, root, ids, out / "figures" / "gradcam.png")
        figs.append(Figure(p, "figures/gradcam.png",
                           "Grad-CAM at the fourth encoder block for each head (red: high activation, blue: low)."))
    return blocks + figs, figs


def log_to_wandb(tables: list[Table], prov: dict[str, Any], mode: str, out: Path) -> None:
    """Log every table as a ``wandb.Table`` (and the provenance as the run config) in one run.

    ``mode``: ``offline`` (files under ``out/wandb``) or ``online``.
    """
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ReportError("--wandb needs the wandb package: pip install wandb") from exc
    run = wandb.init(mode=mode, project="raysearch", job_type="report", dir=str(out), config=prov)
    try:
        for t in tables:
            df = t.data.copy()
            for c in df.columns:
                if df[c].dtype == object:
                    df[c] = df[c].astype(str)
            run.log({t.name: wandb.Table(dataframe=df)})
    finally:
        run.finish()


def build_report(experiment_dirs: list[str | Path], out_dir: str | Path,
                 options: ReportOptions | None = None) -> Path:
    """Write the report of one or more experiment folders into ``out_dir``; return ``out_dir``.

    Writes ``report.md``, ``report.html`` (self-contained), ``tables/<name>.csv``,
    ``figures/<name>.png`` and ``report.json``. Raises :class:`ReportError` for invalid experiment
    folders, split hashes that differ for the same seed, or an output folder it may not write into.
    """
    from raysearch.report.figures import accuracy_curves, loss_curves

    options = options or ReportOptions()
    out = Path(out_dir)
    previous = _prepare_out_dir(out, options.force)
    es = load_experiments(list(experiment_dirs))
    if es.ok_trials.empty:
        raise ReportError(f"no finished trial in {[str(p) for p in experiment_dirs]}; nothing to report")
    analysis = resolve_analysis(es, options.analysis)
    if not es.group_by and analysis in DEFAULT_GROUP_BY:
        es = load_experiments(list(experiment_dirs), group_by=DEFAULT_GROUP_BY[analysis])
    radius, divisors = thresholds_from_trials(es.ok_trials)
    prov = provenance(es)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    out.mkdir(parents=True, exist_ok=True)
    for rel in previous:  # files of the previous report that we own and rewrite below
        p = (out / rel).resolve()
        if out.resolve() in p.parents and p.is_file():
            p.unlink()

    blocks = _provenance_blocks(es, prov, analysis, options, radius, divisors, created)
    tables: list[Table] = []
    figures: list[Figure] = []
    if analysis == "sweep":
        b, t, f = _sweep_sections(es, out)
    else:
        b, t = _grouped_sections(es, analysis, options, radius, divisors)
        f = []
    blocks += b
    tables += t
    figures += f

    lb = leaderboard(es.ok_trials, es.metric, es.mode)
    tables.append(lb)
    blocks += [Heading(2, "All trials"), lb]

    blocks.append(Heading(2, "Curves"))
    trials, curve_note = _curve_trials(es, analysis)
    if curve_note:
        blocks.append(Paragraph(curve_note))
    p = accuracy_curves(es.landmarks, trials, radius, out / "figures" / "accuracy_vs_threshold.png")
    if p is not None:
        figures.append(Figure(p, "figures/accuracy_vs_threshold.png",
                              "Landmark accuracy against the threshold (continuous version of the tables' columns)."))
        blocks.append(figures[-1])
    p = loss_curves(es.history, trials, out / "figures" / "losses.png")
    if p is not None:
        figures.append(Figure(p, "figures/losses.png",
                              "Training and validation losses per epoch (log scale); terms of untrained heads omitted."))
        blocks.append(figures[-1])

    b, f = _example_sections(es, out, options)
    blocks += b
    figures += f

    files = []
    for t in (t for t in tables if t.csv):
        _write_text(out / "tables" / f"{t.name}.csv", to_csv_text(t.data))
        files.append(f"tables/{t.name}.csv")
    title = "raysearch report: " + ", ".join(e.name for e in es.experiments)
    _write_text(out / "report.md", render_markdown(blocks))
    _write_text(out / "report.html", render_html(blocks, title))
    files += [fig.rel for fig in figures] + ["report.md", "report.html"]
    manifest = {"format": REPORT_FORMAT, "created": created, "analysis": analysis, "options": asdict(options),
                "experiments": [str(p) if is_uri(p) else str(Path(p).resolve()) for p in experiment_dirs], "provenance": prov,
                "files": sorted(set(files))}
    _write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if options.wandb != "disabled":
        log_to_wandb(tables, prov, options.wandb, out)
    return out


__all__ = ["ReportError", "ReportOptions", "build_report", "load_experiments", "log_to_wandb", "resolve_analysis"]
