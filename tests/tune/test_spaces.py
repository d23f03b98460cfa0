"""Search spaces: every file in search_spaces/ loads, resolves for every scale and samples valid configs."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from raysearch.config import ConfigError, RunConfig
from raysearch.tune.spaces import available_spaces, load_space, parse_space

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(available_spaces()))
def test_every_space_resolves_and_samples(name):
    space = load_space(name)
    assert space.description and space.metric
    for scale in ("smoke", "cpu", "paper"):
        cfg = space.base_config(scale)
        assert isinstance(cfg, RunConfig)
    # sample one value per domain (first grid/choice value, bounds of ranges) and build the trial config
    options = []
    for key, dom in space.search.items():
        kind, values = next(iter(dom.items()))
        options.append([(key, v) for v in (values if kind in ("grid", "choice") else values[:2])])
    base = space.base_config("smoke")
    for combo in itertools.islice(itertools.product(*options), 20):
        cfg = base.with_overrides(space.trial_overrides(dict(combo)))
        assert cfg.loss.lambda_hem >= 0


def test_paper_analyses_have_the_papers_grids():
    beta = load_space("beta")
    assert beta.search["loss.beta"]["grid"] == [1, 10, 25, 50, 75, 100, 125, 150, 175, 200]
    assert beta.grid_size() == 50 and beta.base["loss.task"] == "heatmap"
    lam = load_space("lambda")
    pairs = [(d["loss.lambda_hem"], d["loss.lambda_segm"]) for d in lam.search["lambda_pair"]["grid"]]
    assert pairs == [(0.1, 0.9), (0.3, 0.7), (0.5, 0.5), (0.7, 0.3), (0.9, 0.1), (0.95, 0.05), (0.975, 0.025), (0.99, 0.01)]
    assert lam.grid_size() == 40
    assert load_space("tasks").grid_size() == 15


def test_bundle_and_derived_keys_expand():
    lam = load_space("lambda")
    over = lam.trial_overrides({"lambda_pair": {"loss.lambda_hem": 0.3, "loss.lambda_segm": 0.7}, "data.split_seed": 2})
    assert over == {"loss.lambda_hem": 0.3, "loss.lambda_segm": 0.7, "data.split_seed": 2}
    opt = load_space("optuna")
    over = opt.trial_overrides({"loss.lambda_hem": 0.8, "loss.beta": 30.0})
    assert over["loss.lambda_segm"] == pytest.approx(0.2)


def test_unknown_space_lists_valid_ones():
    with pytest.raises(ConfigError, match="Did you mean 'beta'.*Valid: beta"):
        load_space("betta")


def test_misspelt_key_in_a_space_file_is_refused(tmp_path):
    bad = {"description": "x", "search": {"loss.lamda_hem": {"grid": [0.1]}}}
    with pytest.raises(ConfigError, match="Did you mean 'loss.lambda_hem'"):
        parse_space(bad, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="cannot take grid"):
        parse_space({"searcher": "optuna", "search": {"loss.beta": {"grid": [1]}}}, tmp_path / "b.yaml")


def test_cli_list_and_unknown_override():
    out = subprocess.run([sys.executable, "-m", "raysearch.tune", "--list"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    for name in ("beta", "lambda", "tasks", "optuna", "smoke"):
        assert name in out.stdout
    bad = subprocess.run([sys.executable, "-m", "raysearch.tune", "smoke", "loss.lamda_hem=0.5", "--scale", "smoke",
                          "--ray-address", "local", "--wandb", "disabled", "--storage", "/tmp/rs-never-used"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "Did you mean 'loss.lambda_hem'" in bad.stderr
