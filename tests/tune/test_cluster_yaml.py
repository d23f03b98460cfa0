"""cluster.yaml validates with Ray's own autoscaler schema (the check ``ray up`` runs)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_validates():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    _validate(config)
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] == 1 and workers["resources"]["CPU"] >= 4
    assert config["available_node_types"]["head"]["resources"]["CPU"] == 0  # no trials on the head
    assert any("raysearch" in c for c in config["setup_commands"])


def test_a_broken_cluster_yaml_is_rejected():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["available_node_types"]["gpu_worker"]["max_wrkers"] = 3  # misspelt key
    from jsonschema.exceptions import ValidationError  # what Ray's schema check raises

    with pytest.raises(ValidationError, match="max_wrkers"):
        _validate(config)
