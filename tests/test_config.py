"""RunConfig: YAML round trip, strict overrides with suggestions, presets."""

from __future__ import annotations

import pytest
import yaml

from raysearch.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    parse_key_values,
    scale_preset,
    valid_keys,
)

SCALES = ("smoke", "cpu", "paper")


@pytest.mark.parametrize("scale", SCALES)
def test_yaml_round_trip_is_exact(tmp_path, scale):
    cfg = scale_preset(scale).with_overrides({"loss.beta": 37.5, "augment.rotation_deg": [-7, 4]})
    path = tmp_path / "config.yaml"
    cfg.to_yaml(path)
    back = RunConfig.from_yaml(path)
    assert back == cfg
    assert back.augment.rotation_deg == (-7.0, 4.0)  # tuples come back as tuples, not lists
    # The text is plain YAML (no Python tags) that a user can read and edit.
    plain = yaml.safe_load(path.read_text())
    assert plain["loss"]["beta"] == 37.5 and plain["scale"] == scale
    assert RunConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_flat_keys_are_the_override_keys():
    cfg = RunConfig()
    flat = cfg.flat()
    assert flat["loss.beta"] == 125.0 and flat["loss.lambda_hem"] == 0.95
    assert set(flat) == set(valid_keys())
    # typed values (as a search space gives them) apply unchanged
    assert apply_overrides(cfg, {k: v for k, v in flat.items() if not isinstance(v, str)}) == cfg


def test_unknown_key_suggests_the_closest_name():
    with pytest.raises(ConfigError) as exc:
        apply_overrides(RunConfig(), {"loss.lamda_hem": "0.5"})
    msg = str(exc.value)
    assert "'loss.lamda_hem'" in msg
    assert "Did you mean 'loss.lambda_hem'" in msg


def test_unknown_key_inside_a_yaml_file_is_rejected(tmp_path):
    d = RunConfig().to_dict()
    d["optim"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        RunConfig.from_dict(d)
    d = RunConfig().to_dict()
    d["trian"] = {}
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        RunConfig.from_dict(d)


@pytest.mark.parametrize("key,value,expected", [
    ("train.epochs", "three", "train.epochs must be an integer, got 'three'"),
    ("train.epochs", 2.5, "train.epochs must be an integer, got 2.5"),
    ("loss.beta", "wide", "loss.beta must be a number, got 'wide'"),
    ("loss.beta", True, "loss.beta must be a number, got True"),
    ("model.batch_norm", "1", "model.batch_norm must be true or false, got 1"),
    ("loss.task", "both", "loss.task must be one of ['multi', 'heatmap', 'segmentation'], got 'both'"),
    ("augment.rotation_deg", "5", "augment.rotation_deg must be a list, got 5"),
    ("augment.rotation_deg", "[1, 2, 3]", "augment.rotation_deg must have 2 items"),
])
def test_wrong_type_says_what_was_expected(key, value, expected):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(RunConfig(), {key: value})
    assert expected in str(exc.value)


def test_invalid_values_are_rejected_with_the_value():
    with pytest.raises(ConfigError, match="multiple of 16.*got 100"):
        apply_overrides(RunConfig(), {"data.input_size": "100"})
    with pytest.raises(ConfigError, match="loss.beta .* got -1"):
        apply_overrides(RunConfig(), {"loss.beta": "-1"})
    with pytest.raises(ConfigError, match="augment.p_flip"):
        apply_overrides(RunConfig(), {"augment.p_flip": "1.5"})


def test_string_values_are_parsed_as_yaml_scalars():
    cfg = apply_overrides(RunConfig(), {
        "optim.lr": "1e-3",              # YAML 1.1 reads this as a string; still a float here
        "loss.beta": "50",               # int -> float
        "train.epochs": "3",
        "model.batch_norm": "true",
        "augment.intensity_range": "[0.8, 1.2]",
        "eval.threshold_divisors": "[1, 4]",
        "model.heatmap_channels": "per_landmark",
    })
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.loss.beta == 50.0 and isinstance(cfg.loss.beta, float)
    assert cfg.train.epochs == 3 and cfg.model.batch_norm is True
    assert cfg.augment.intensity_range == (0.8, 1.2)
    assert cfg.eval.threshold_divisors == (1.0, 4.0)
    assert cfg.eval.thresholds_ref_px() == (100.0, 25.0)
    assert cfg.model.heatmap_channels == "per_landmark"
    # typed values are accepted as they are
    assert apply_overrides(RunConfig(), {"optim.lr": 1e-3, "augment.rotation_deg": (-3, 3)}).augment.rotation_deg == (-3.0, 3.0)


def test_parse_key_values():
    assert parse_key_values(["loss.beta=50", "data.root=/a=b"]) == {"loss.beta": "50", "data.root": "/a=b"}
    with pytest.raises(ConfigError, match="'loss.beta' must look like key=value"):
        parse_key_values(["loss.beta"])


@pytest.mark.parametrize("scale", SCALES)
def test_presets_are_valid_and_self_consistent(scale):
    cfg = scale_preset(scale)
    assert cfg.scale == scale
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.data.input_size % 16 == 0
    assert cfg.loss.task == "multi" and (cfg.loss.lambda_hem, cfg.loss.lambda_segm) == (0.95, 0.05)
    assert cfg.loss.beta == 125.0


def test_preset_specifics():
    smoke, cpu, paper = (scale_preset(s) for s in SCALES)
    # The paper's protocol: plain U-Net of width 64 at 512 px, Adam 1e-5, batch 1, 200 epochs.
    assert (paper.model.base_width, paper.data.input_size, paper.model.batch_norm) == (64, 512, False)
    assert (paper.optim.lr, paper.optim.batch_size, paper.train.epochs) == (1e-5, 1, 200)
    assert paper.augment.rotation_deg == (-30.0, 3.0)
    # cpu and smoke are smaller than the paper and normalised for stability.
    for cfg in (cpu, smoke):
        assert cfg.model.base_width < paper.model.base_width and cfg.data.input_size < paper.data.input_size
        assert cfg.model.batch_norm
    assert smoke.train.epochs * smoke.data.phantom_n < cpu.train.epochs * cpu.data.phantom_n


def test_unknown_scale():
    with pytest.raises(ConfigError, match="unknown scale 'gpu'.*smoke, cpu, paper"):
        scale_preset("gpu")
