"""Shared pytest setup: make helper modules in tests/ importable, and point at the real data.

The real data sets live in ``$ARTYLYZE_DATA`` (default: ``../shared/datasets`` beside the
repository, where CI has them); a test that needs one fails with a message naming the path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))

REPO = TESTS_DIR.parent
DATA = Path(os.environ.get("ARTYLYZE_DATA") or REPO.parent / "shared" / "datasets")
WIKIART = DATA / "wikiart11"


def dataset(name: str) -> Path:
    """``$ARTYLYZE_DATA/name``, or a test failure that says where it was looked for."""
    path = DATA / name
    if not (path / "labels.csv").is_file():
        pytest.fail(f"data set {name!r} not found at {path} (no labels.csv): set ARTYLYZE_DATA "
                    "to the folder that holds wikiart11/ and styles7/ (default "
                    "../shared/datasets beside the repository)")
    return path


@pytest.fixture(scope="session")
def wikiart() -> Path:
    """The real wikiart11 data set (9,922 WikiArt paintings, 224 px, labels.csv)."""
    return dataset("wikiart11")
