"""Every table against a direct recomputation from the per-image Parquet rows (plain numpy here)."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from raysearch import schema
from raysearch.report import ReportOptions, build_report
from raysearch.report.experiments import ReportError, load_experiments, replicate_trials
from raysearch.report.tables import paired_errors

from .conftest import BETAS, LAMBDAS

THRESHOLDS = {1.0: 100.0, 2.0: 50.0, 5.0: 20.0, 10.0: 10.0}
SIDES = ("right", "left", "both")


@pytest.fixture(scope="module")
def beta_report(beta_exp, tmp_path_factory):
    return build_report([beta_exp], tmp_path_factory.mktemp("rep") / "beta", ReportOptions())


@pytest.fixture(scope="module")
def beta_report_holm(beta_exp, tmp_path_factory):
    return build_report([beta_exp], tmp_path_factory.mktemp("rep") / "beta_holm", ReportOptions(holm=True))


def _expected_accuracy(exp_dir, key_cols):
    """Recompute mean and ddof=1 std over seeds of the % of errors <= threshold, per config and side."""
    t = pd.read_parquet(exp_dir / schema.TRIALS_FILE)
    lm = pd.read_parquet(exp_dir / schema.LANDMARK_FILE)
    out = {}
    for cfg, trials in t.groupby([f"config/{k}" for k in key_cols]):
        for side in SIDES:
            for div, thr in THRESHOLDS.items():
                per_seed = []
                for tid in trials["trial_id"]:
                    e = lm.loc[lm["trial_id"] == tid, "error_ref_px"].to_numpy()
                    if side != "both":
                        e = lm.loc[(lm["trial_id"] == tid) & (lm["side"] == side), "error_ref_px"].to_numpy()
                    if e.size:
                        per_seed.append(100.0 * np.mean(e <= thr))
                if per_seed:
                    out[(cfg, side, div)] = (np.mean(per_seed), np.std(per_seed, ddof=1), len(per_seed))
    return out


def test_beta_accuracy_table_matches_recomputation(beta_exp, beta_report):
    csv = pd.read_csv(beta_report / "tables" / "accuracy_beta.csv")
    assert len(csv) == len(BETAS) * 3 * 4  # configs x (right, left, both) x thresholds
    expected = _expected_accuracy(beta_exp, ["loss.beta"])
    for (cfg, side, div), (mean, std, n) in expected.items():
        beta = cfg[0] if isinstance(cfg, tuple) else cfg
        row = csv[(csv["configuration"] == f"β={beta:g}") & (csv["side"] == side) & (csv["divisor"] == div)]
        assert len(row) == 1
        assert row["accuracy_mean_pct"].iloc[0] == pytest.approx(mean, rel=1e-9, abs=1e-7)
        assert row["accuracy_std_pct"].iloc[0] == pytest.approx(std, rel=1e-9, abs=1e-7)
        assert row["n_seeds"].iloc[0] == n == 3
    # bold = best Both row per threshold
    for div in THRESHOLDS:
        both = {b: expected[((b,), "both", div)][0] for b in BETAS}
        best = max(both.values())
        rows = csv[(csv["side"] == "both") & (csv["divisor"] == div)]
        all_tie = all(np.isclose(v, best) for v in both.values())
        for _, r in rows.iterrows():
            b = float(r["configuration"].split("=")[1])
            assert bool(r["best"]) == (bool(np.isclose(both[b], best)) and not all_tie)


def test_beta_markdown_table_shape_and_bold(beta_report):
    md = (beta_report / "report.md").read_text()
    block = md.split("| β | Side | R | R/2 | R/5 | R/10 |")[1].split("\n\n")[0].strip().splitlines()
    rows = block[1:]  # after the |---| line
    assert len(rows) == len(BETAS) * 3
    assert [r.split("|")[2].strip() for r in rows[:3]] == ["Right", "Left", "Both"]
    assert all("**" not in r for r in rows if "Both" not in r)  # only Both rows can be bold
    assert any("**" in r for r in rows if "Both" in r)


def _pairs(exp_dir, beta_a, beta_b):
    t = pd.read_parquet(exp_dir / schema.TRIALS_FILE)
    lm = pd.read_parquet(exp_dir / schema.LANDMARK_FILE)
    lm = lm.merge(t[["trial_id", "config/loss.beta"]], on="trial_id")
    a = lm[lm["config/loss.beta"] == beta_a][["split_seed", "image_id", "side", "error_ref_px"]]
    b = lm[lm["config/loss.beta"] == beta_b][["split_seed", "image_id", "side", "error_ref_px"]]
    return a.merge(b, on=["split_seed", "image_id", "side"], suffixes=("_a", "_b"))


def test_wilcoxon_csv_matches_scipy(beta_exp, beta_report):
    w = pd.read_csv(beta_report / "tables" / "wilcoxon.csv", keep_default_na=False)
    assert list(w.columns) == ["config_a", "config_b", "side", "n_pairs", "statistic", "p_value", "p_adjusted",
                               "better"]
    assert len(w) == 3 * 3  # C(3, 2) pairs x three sides
    for ba, bb in itertools.combinations(BETAS, 2):
        m = _pairs(beta_exp, ba, bb)
        for side in SIDES:
            sub = m if side == "both" else m[m["side"] == side]
            ref = wilcoxon(sub["error_ref_px_a"], sub["error_ref_px_b"])
            r = w[(w["config_a"] == f"β={ba:g}") & (w["config_b"] == f"β={bb:g}") & (w["side"] == side)].iloc[0]
            assert r["n_pairs"] == len(sub) == (3 * 12 * (2 if side == "both" else 1))
            assert float(r["p_value"]) == pytest.approx(float(ref.pvalue), rel=1e-8)
            assert float(r["p_adjusted"]) == float(r["p_value"])  # no --holm
            lower_a = np.median(sub["error_ref_px_a"] - sub["error_ref_px_b"]) < 0
            if float(r["p_value"]) <= 0.05:
                assert r["better"] == (f"β={ba:g}" if lower_a else f"β={bb:g}")
            else:
                assert r["better"] == ""


def test_wilcoxon_holm_adjusts_over_the_whole_matrix(beta_report, beta_report_holm):
    raw = pd.read_csv(beta_report / "tables" / "wilcoxon.csv")
    adj = pd.read_csv(beta_report_holm / "tables" / "wilcoxon.csv")
    p = raw["p_value"].to_numpy()
    m = p.size
    order = np.argsort(p)
    expected = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):  # Holm by hand
        running = max(running, min(1.0, (m - k) * p[i]))
        expected[i] = running
    np.testing.assert_allclose(adj["p_adjusted"].to_numpy(), expected, rtol=1e-9)
    assert "Holm correction applied" in (beta_report_holm / "report.md").read_text()
    assert "Holm correction not applied" in (beta_report / "report.md").read_text()


def test_identical_error_vectors_give_p_one(beta_exp, tmp_path):
    d = tmp_path / "same"
    shutil.copytree(beta_exp, d)
    t = pd.read_parquet(d / schema.TRIALS_FILE)
    lm = pd.read_parquet(d / schema.LANDMARK_FILE)
    src = t[t["config/loss.beta"] == BETAS[0]].set_index("split_seed")["trial_id"]
    dst = t[t["config/loss.beta"] == BETAS[1]].set_index("split_seed")["trial_id"]
    for seed in src.index:
        a = lm[lm["trial_id"] == src[seed]].set_index(["image_id", "side"])["error_ref_px"]
        rows = lm["trial_id"] == dst[seed]
        lm.loc[rows, "error_ref_px"] = [a[(i, s)] for i, s in zip(lm.loc[rows, "image_id"], lm.loc[rows, "side"])]
    lm.to_parquet(d / schema.LANDMARK_FILE)
    out = build_report([d], tmp_path / "rep", ReportOptions(qualitative=False, gradcam=False))
    w = pd.read_csv(out / "tables" / "wilcoxon.csv", keep_default_na=False)
    r = w[(w["config_a"] == f"β={BETAS[0]:g}") & (w["config_b"] == f"β={BETAS[1]:g}")]
    assert (r["p_value"] == 1.0).all() and (r["better"] == "").all()
    assert "| β=10 | = | ≈ / ≈ / ≈ |" in (out / "report.md").read_text()


def test_pairing_refuses_different_split_hash(beta_exp):
    es = load_experiments([beta_exp])
    trials = replicate_trials(es).copy()
    victim = trials.index[(trials["configuration"] == "β=50") & (trials["split_seed"] == 2)][0]
    trials.loc[victim, "split_hash"] = "deadbeef" * 8
    with pytest.raises(ReportError) as exc:
        paired_errors(es.landmarks, trials, "β=10", "β=50")
    msg = str(exc.value)
    assert "split seed 2" in msg and trials.loc[victim, "trial_id"] in msg and "cannot be paired" in msg


def test_lambda_tables(lambda_exp, tmp_path):
    out = build_report([lambda_exp], tmp_path / "rep", ReportOptions())
    acc = pd.read_csv(out / "tables" / "accuracy_lambda.csv")
    assert len(acc) == len(LAMBDAS) * 3 * 4
    expected = _expected_accuracy(lambda_exp, ["loss.lambda_hem", "loss.lambda_segm"])
    for (cfg, side, div), (mean, std, _) in expected.items():
        label = f"λ_hem={cfg[0]:g}, λ_segm={cfg[1]:g}"
        r = acc[(acc["configuration"] == label) & (acc["side"] == side) & (acc["divisor"] == div)].iloc[0]
        assert r["accuracy_mean_pct"] == pytest.approx(mean) and r["accuracy_std_pct"] == pytest.approx(std)
    dice = pd.read_csv(out / "tables" / "segmentation.csv")
    assert list(dice["metric"]) == ["dice"] * len(LAMBDAS)
    t = pd.read_parquet(lambda_exp / schema.TRIALS_FILE)
    seg = pd.read_parquet(lambda_exp / schema.SEGMENTATION_FILE)
    for (lh, ls), trials in t.groupby(["config/loss.lambda_hem", "config/loss.lambda_segm"]):
        per_seed = [seg.loc[seg["trial_id"] == tid, "dice"].mean() for tid in trials["trial_id"]]
        r = dice[dice["configuration"] == f"λ_hem={lh:g}, λ_segm={ls:g}"].iloc[0]
        assert r["mean"] == pytest.approx(np.mean(per_seed)) and r["std"] == pytest.approx(np.std(per_seed, ddof=1))
    md = (out / "report.md").read_text()
    assert "| λ_hem | λ_segm | Side | R | R/2 | R/5 | R/10 |" in md
    assert "| λ_hem | λ_segm | Dice |" in md
    # Dice shown with 4 decimals
    mean = dice["mean"].iloc[0]
    assert f"{mean:.4f} ± " in md


def test_tasks_tables(tasks_exps, tmp_path):
    out = build_report(tasks_exps, tmp_path / "rep", ReportOptions())
    acc = pd.read_csv(out / "tables" / "accuracy_tasks.csv")
    assert sorted(acc["configuration"].unique()) == ["task=heatmap", "task=multi"]  # segmentation-only: no landmarks
    seg = pd.read_csv(out / "tables" / "segmentation.csv")
    assert sorted(seg["configuration"].unique()) == ["task=multi", "task=segmentation"]
    assert sorted(seg["metric"].unique()) == sorted(schema.SEGMENTATION_METRICS)
    rows = []
    for d in tasks_exps:
        t = pd.read_parquet(d / schema.TRIALS_FILE)
        s = pd.read_parquet(d / schema.SEGMENTATION_FILE)
        rows.append(s.merge(t[["trial_id", "config/loss.task"]], on="trial_id"))
    s = pd.concat(rows)
    md = (out / "report.md").read_text()
    for task, g in s.groupby("config/loss.task"):
        for m in schema.SEGMENTATION_METRICS:
            per_seed = g.groupby("trial_id")[m].mean().to_numpy()
            r = seg[(seg["configuration"] == f"task={task}") & (seg["metric"] == m)].iloc[0]
            assert r["mean"] == pytest.approx(per_seed.mean()) and r["std"] == pytest.approx(np.std(per_seed, ddof=1))
            assert f"{100 * per_seed.mean():.2f} ± {100 * np.std(per_seed, ddof=1):.2f}" in md  # percent
    assert "| task | Dice (%) | Jaccard (%) | AUC (%) | Accuracy (%) | Precision (%) | Recall (%) |" in md
    w = pd.read_csv(out / "tables" / "wilcoxon.csv")
    assert set(zip(w["config_a"], w["config_b"])) == {("task=heatmap", "task=multi")}


def _spearman_numpy(x, y):
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rx, ry)[0, 1])


def test_sweep_leaderboard_and_importance(sweep_exp, tmp_path):
    out = build_report([sweep_exp], tmp_path / "rep", ReportOptions())
    t = pd.read_parquet(sweep_exp / schema.TRIALS_FILE)
    lb = pd.read_csv(out / "tables" / "leaderboard.csv")
    assert list(lb["trial_id"]) == list(t.sort_values("test/err_ref_mean")["trial_id"])
    assert {"config/optim.lr", "config/loss.beta"} <= set(lb.columns)
    assert "config/loss.task" not in lb.columns  # not varied
    imp = pd.read_csv(out / "tables" / "importance.csv")
    assert set(imp["parameter"]) == {"optim.lr", "loss.beta"}
    for _, r in imp.iterrows():
        ref = _spearman_numpy(t[f"config/{r['parameter']}"].to_numpy(), t["test/err_ref_mean"].to_numpy())
        assert r["spearman_rho"] == pytest.approx(ref) and r["abs_rho"] == pytest.approx(abs(ref))
    assert imp["abs_rho"].is_monotonic_decreasing
    assert (out / "figures" / "objective_vs_params.png").stat().st_size > 5000


def test_single_runs_grouped_by_the_analysis_key(tmp_path):
    """Folders of `python -m raysearch.train` have group_by [] ("single-run"); --analysis beta groups by loss.beta."""
    from .conftest import write_experiment

    runs = [write_experiment(tmp_path, f"run_{int(b)}", "single-run", [], [{"loss.beta": b}], noise_seed=9)
            for b in (25.0, 100.0)]
    auto = build_report(runs, tmp_path / "auto", ReportOptions(qualitative=False, gradcam=False))
    assert "| Analysis | sweep |" in (auto / "report.md").read_text()
    out = build_report(runs, tmp_path / "beta", ReportOptions(analysis="beta", qualitative=False, gradcam=False))
    acc = pd.read_csv(out / "tables" / "accuracy_beta.csv")
    assert sorted(acc["configuration"].unique()) == ["β=100", "β=25"]
    w = pd.read_csv(out / "tables" / "wilcoxon.csv")
    assert len(w) == 3 and (w["n_pairs"] == [36, 36, 72]).all()  # 3 seeds x 12 images per side


def test_large_search_draws_only_the_best_curves(sweep_exp, tmp_path):
    """The Optuna-like fixture has ten configurations; curves keep the 8 best, the leaderboard all ten."""
    out = build_report([sweep_exp], tmp_path / "r", ReportOptions(qualitative=False, gradcam=False))
    md = (out / "report.md").read_text()
    assert "Curves show the 8 best of 10 configurations by test/err_ref_mean" in md
    assert len(pd.read_csv(out / "tables" / "leaderboard.csv")) == 10
