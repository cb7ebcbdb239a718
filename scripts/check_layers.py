"""Check the import layers written in pyproject.toml ([tool.importlinter]) with import-linter.

import-linter reads a package from one folder, but ``artylyze.cli``, ``.index`` and ``.export``
live in ``cli/``, ``index/`` and ``export/`` and are mapped in by the build config. So the
package is first laid out as it installs, in a temporary folder (sources only), and checked
there. ``extra`` adds modules to that copy: the tests plant an upward import to prove the
check fails on one. Exit status 0 when every contract holds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"cli": "artylyze/cli", "index": "artylyze/index", "export": "artylyze/export"}


def lay_out(dest: Path) -> None:
    """Copy the package's sources into ``dest`` as they install (mapped folders included)."""
    ignore = shutil.ignore_patterns("__pycache__", "assets", "static", "*.pyc")
    shutil.copytree(REPO / "artylyze", dest / "artylyze", ignore=ignore)
    for src, target in MAPPED.items():
        shutil.copytree(REPO / src, dest / target, ignore=ignore)


def check(extra: dict[str, str] | None = None) -> int:
    """Run import-linter's contracts on the laid-out package; ``extra`` maps file -> text."""
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory(prefix="artylyze-layers-") as tmp:
        lay_out(Path(tmp))
        for rel, text in (extra or {}).items():
            (Path(tmp) / rel).write_text(text)
        sys.path.insert(0, tmp)
        here = os.getcwd()
        os.chdir(tmp)  # import-linter puts the working folder first on sys.path
        stale = [m for m in sys.modules if m == "artylyze" or m.startswith("artylyze.")]
        saved = {m: sys.modules.pop(m) for m in stale}
        try:
            return lint_imports(config_filename=str(REPO / "pyproject.toml"),
                                no_cache=True, show_timings=False)
        finally:
            os.chdir(here)
            sys.path.remove(tmp)
            for m in [m for m in sys.modules if m == "artylyze" or m.startswith("artylyze.")]:
                del sys.modules[m]
            sys.modules.update(saved)


if __name__ == "__main__":
    sys.exit(check())
