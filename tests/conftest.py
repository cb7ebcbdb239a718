"""Shared pytest setup: make helper modules in tests/ importable, and point at the real data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))

WIKIART = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "wikiart11"


@pytest.fixture(scope="session")
def wikiart() -> Path:
    """The real wikiart11 data set beside the repository (CI has it there too)."""
    if not (WIKIART / "labels.csv").is_file():
        pytest.fail(f"wikiart11 not found at {WIKIART}; tests need ../shared/datasets/wikiart11")
    return WIKIART
