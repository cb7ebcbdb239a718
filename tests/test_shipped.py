"""What ships works on a fresh machine: every file a shipped manifest names is tracked by git,
no manifest points at the machine that built it, and `similar` / `influence` answer on the
shipped gallery from a wheel installed outside the source tree.

The gallery's rows.parquet once lived only on the machine that built it (``*.parquet`` was
ignored), so the headline command failed in every fresh clone; these tests catch that.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from PIL import Image

ASSETS = REPO / "artylyze" / "assets"
EXAMPLE = REPO / "examples" / "marc-chagall_red-jew-1915.jpg"


def git_files(*args: str) -> list[str]:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail(f"{REPO} is not a git checkout: these tests check what a clone holds")
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", *args], capture_output=True,
                         text=True, check=True)
    return out.stdout.splitlines()


def shipped_manifests() -> list[Path]:
    return sorted(ASSETS.glob("*/manifest.json"))


def named_files(manifest: Path) -> list[Path]:
    """Every file a shipped manifest makes the code open."""
    data = json.loads(manifest.read_text())
    folder = manifest.parent
    if data.get("kind") == "artylyze-index":
        files = [folder / name for name in data["files"]]
        if data.get("bundle_dir"):
            files.append((folder / data["bundle_dir"] / "manifest.json").resolve())
        return files
    reference = ((data.get("calibration") or {}).get("novelty") or {}).get("file")
    return [folder / "model.onnx", *([folder / reference] if reference else [])]


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_both_assets_ship_a_manifest() -> None:
    assert [m.parent.name for m in shipped_manifests()] == ["bundle", "gallery"]


def test_every_file_a_shipped_manifest_names_is_tracked_by_git() -> None:
    tracked = set(git_files("artylyze/assets"))
    for manifest in shipped_manifests():
        assert manifest.relative_to(REPO).as_posix() in tracked
        for file in named_files(manifest):
            assert file.is_file(), f"{manifest} names {file}, which does not exist"
            rel = file.relative_to(REPO).as_posix()
            assert rel in tracked, f"{manifest} names {rel}, which git does not track"


def test_shipped_manifests_hold_no_path_of_the_build_machine() -> None:
    for manifest in shipped_manifests():
        for text in strings(json.loads(manifest.read_text())):
            assert not os.path.isabs(text), f"{manifest}: absolute path {text!r}"
            assert not text.startswith("../../"), f"{manifest}: {text!r} leaves the assets"


def test_assets_stay_small() -> None:
    """The package carries the bundle and the gallery; tens of MB at most together."""
    size = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert size < 60e6, f"artylyze/assets is {size / 1e6:.1f} MB"


def see_dependencies(py: Path) -> None:
    """Let the venv at ``py`` import what this interpreter imports, venv or not.

    ``system_site_packages`` would show it the *base* Python's packages, not those of the venv
    running the tests. A ``.pth`` file listing this interpreter's site folders comes after the
    venv's own site-packages, and the ``.pth`` files inside those folders are not run, so an
    editable install of the source tree stays out of sight.
    """
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(py), "-c", ask], capture_output=True, text=True,
                             check=True).stdout.strip()
    (Path(purelib) / "_test_dependencies.pth").write_text("\n".join(sites) + "\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the files git would clone (tracked + not ignored), installed into a
    new venv; the venv sees the test interpreter's dependencies but only the wheel's artylyze."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in git_files("--cached", "--others", "--exclude-standard"):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], check=True)
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    see_dependencies(py)
    wheel = next((tmp / "dist").glob("artylyze-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    where = subprocess.run([str(py), "-c", "import artylyze; print(artylyze.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp).stdout
    assert where.startswith(str(env_dir)), f"imported {where.strip()} instead of the wheel's"
    return env_dir / "bin" / "artylyze"


def run_cli(cli: Path, *args: str) -> str:
    out = subprocess.run([str(cli), *args], capture_output=True, text=True,
                         cwd=cli.parents[2])  # the temp dir: not the source tree
    assert out.returncode == 0, out.stderr
    return out.stdout


def decoded_images(page: str) -> list[Image.Image]:
    uris = page.split('src="data:image/jpeg;base64,')[1:]
    return [Image.open(io.BytesIO(base64.b64decode(u.split('"', 1)[0]))) for u in uris]


@pytest.mark.slow
def test_similar_and_influence_work_from_an_installed_wheel(installed: Path,
                                                            tmp_path: Path) -> None:
    answers = json.loads(run_cli(installed, "similar", str(EXAMPLE), "--json", "-k", "10",
                                 "--html", str(tmp_path / "out.html")))
    results = answers[0]["results"]
    assert len(results) == 10 and all(r["path"] for r in results)
    # titles only from WikiArt names (docs/file-names.md): never "Eta" from eta-1011.jpg
    assert all(bool(r["title"]) == ("_" in Path(r["path"]).name) for r in results)
    images = decoded_images((tmp_path / "out.html").read_text())
    assert len(images) == 11  # the query and its 10 results
    for img in images[1:]:  # packed thumbnails, not grey "missing" tiles
        colours = img.convert("RGB").getcolors(maxcolors=100_000)
        assert colours is None or len(colours) > 50
    [result] = json.loads(run_cli(installed, "influence", str(EXAMPLE), "--json"))
    shares = [p["share"] for p in result["posterior"]]
    assert abs(sum(shares) - 1.0) < 1e-4 and result["top"]
