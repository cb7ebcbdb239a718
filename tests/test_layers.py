"""The architecture holds: pyproject's import-linter contract is kept, and it does catch a low
layer importing a high one (so a later change that breaks the layering fails CI)."""

from __future__ import annotations

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("check_layers", REPO / "scripts" / "check_layers.py")
check_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layers)


def test_the_import_layers_are_kept(capsys) -> None:
    assert check_layers.check() == 0, capsys.readouterr().out


def test_an_upward_import_breaks_the_contract(capsys) -> None:
    planted = {"artylyze/model/_upward.py": "from artylyze.serve import app\n"}
    assert check_layers.check(planted) != 0
    out = capsys.readouterr().out
    assert "BROKEN" in out and "artylyze.model._upward -> artylyze.serve" in out, out
