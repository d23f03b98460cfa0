"""best.pt checkpoints: weights-only round trip, config checks, clear errors."""

from __future__ import annotations

import pytest
import torch
import yaml

from raysearch.config import RunConfig, scale_preset
from raysearch.model import TwoHeadUNet
from raysearch.schema import CHECKPOINT_FILE, CONFIG_FILE
from raysearch.training.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint


def _cfg(**overrides) -> RunConfig:
    return scale_preset("smoke").with_overrides({"model.heatmap_channels": "per_landmark", **overrides})


def _model(cfg: RunConfig) -> TwoHeadUNet:
    torch.manual_seed(1)
    model = TwoHeadUNet(cfg.model, cfg.loss.task)
    with torch.no_grad():  # make the weights differ from a fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_round_trip_is_weights_only_and_exact(tmp_path):
    cfg = _cfg(**{"model.batch_norm": True, "loss.beta": 50.0})
    model = _model(cfg)
    x = torch.rand(2, 1, cfg.data.input_size, cfg.data.input_size)
    model.eval()
    with torch.no_grad():
        want = model(x)
    path = save_checkpoint(tmp_path / "run", model, cfg, epoch=3, metrics={"val/loss_joint": 0.25, "note": "x"})
    assert path == tmp_path / "run" / CHECKPOINT_FILE
    assert RunConfig.from_dict(yaml.safe_load((path.parent / CONFIG_FILE).read_text())) == cfg

    payload = torch.load(path, weights_only=True)  # plain containers only: no pickled code
    assert payload["format"] == FORMAT and payload["epoch"] == 3
    assert payload["config"] == cfg.to_dict()
    assert payload["metrics"] == {"val/loss_joint": 0.25}  # non-numbers are dropped

    for where in (path, path.parent):  # a file or its folder
        loaded = load_checkpoint(where, expected=cfg)
        assert loaded.config == cfg and loaded.epoch == 3 and loaded.metrics == {"val/loss_joint": 0.25}
        assert not loaded.model.training
        with torch.no_grad():
            got = loaded.model(x)
        for key in ("heatmap", "seg_logits"):
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    assert not list(path.parent.glob(".ckpt-*"))  # no temporary file left behind


def test_expected_config_mismatch_names_the_key(tmp_path):
    cfg = _cfg()
    path = save_checkpoint(tmp_path, _model(cfg), cfg, epoch=0, metrics={})
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, expected=_cfg(**{"model.base_width": 8}))
    assert "model.base_width: checkpoint 4 vs requested 8" in str(exc.value)
    with pytest.raises(CheckpointError, match="loss.task: checkpoint 'multi' vs requested 'heatmap'"):
        load_checkpoint(path, expected=_cfg(**{"loss.task": "heatmap"}))
    # training-only keys may differ
    assert load_checkpoint(path, expected=_cfg(**{"optim.lr": 0.5, "loss.beta": 10.0})).epoch == 0


def test_weights_that_do_not_fit_the_config(tmp_path):
    cfg = _cfg()
    path = save_checkpoint(tmp_path, _model(cfg), cfg, epoch=0, metrics={})
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["base_width"] = 8
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_corrupt_missing_and_foreign_files(tmp_path):
    cfg = _cfg()
    path = save_checkpoint(tmp_path / "a", _model(cfg), cfg, epoch=0, metrics={})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        load_checkpoint(tmp_path / "nowhere")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a raysearch checkpoint"):
        load_checkpoint(other)
    bad_cfg = tmp_path / "b" / "best.pt"
    save_checkpoint(bad_cfg, _model(cfg), cfg, epoch=0, metrics={})
    payload = torch.load(bad_cfg, weights_only=True)
    payload["config"]["loss"]["lamda_hem"] = 1.0
    torch.save(payload, bad_cfg)
    with pytest.raises(CheckpointError, match="stored config is invalid.*Did you mean 'loss.lambda_hem'"):
        load_checkpoint(bad_cfg)
