"""Shared pytest fixtures. Ray fixtures live in tests/tune/conftest.py (one session-scoped local Ray)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

JSRT_DIR = REPO.parent / "shared" / "data" / "jsrt_scr_lm"


@pytest.fixture(scope="session")
def jsrt_dir() -> Path:
    """The real JSRT/SCR dataset folder; skips the test when it is not on this machine."""
    if not (JSRT_DIR / "manifest.csv").exists():
        pytest.skip(f"real dataset not present at {JSRT_DIR}")
    return JSRT_DIR


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray for the whole test session: 2 logical CPUs and 1 logical GPU (for packing tests).

    The logical GPU lets Ray schedule fractional-GPU trials exactly as on a GPU node (it sets
    ``CUDA_VISIBLE_DEVICES`` and ``ray.get_gpu_ids()``); torch still trains on the CPU.
    """
    import os
    import tempfile

    import ray

    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600")
    tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # Unix socket paths must stay short
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small phantom dataset folder (30 images at 128 px), shared by the slow tests."""
    from raysearch.data.phantom import write_phantom_dataset

    return Path(write_phantom_dataset(tmp_path_factory.mktemp("tiny") / "phantoms", n=30, size=128, seed=3))
