"""A small real tagged collection for the tests of what reads meta.parquet: the 12 example
paintings copied into a temp folder (so sidecars beside them never land in the repository)
and tagged with the shipped bundle by the real command."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from artylyze.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RENOIR = "pierre-auguste-renoir_bather-1905.jpg"  # Impressionism 0.97, renoir 0.83 (shipped model)


def copy_examples(root: Path) -> list[str]:
    """The example paintings under ``root``; returns their names."""
    root.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    for name in names:
        shutil.copyfile(EXAMPLES / name, root / name)
    return names


def tag(collection: Path, out: Path | str, *extra: str) -> str:
    """``artylyze tag COLLECTION --out OUT -q [extra...]``; returns its output, asserts exit 0."""
    result = CliRunner().invoke(app, ["tag", str(collection), "--out", str(out), "-q", *extra])
    assert result.exit_code == 0, result.output
    return result.output
