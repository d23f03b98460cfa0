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
