"""``--engine ray``: the same rows and on-disk state as the local engine, incremental (sha256
reuse included), on a 2-CPU local Ray.

Real wikiart11 paintings, one corrupt JPEG, one file that is not an image, a real tiny ONNX
bundle. Inference is counted through the summary, never timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray  # the [ray] extra: CI installs it; a missing one must fail, not skip
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.model.bundle import load_bundle
from artylyze.tagging.engine import TagError, TagOptions, TagSummary, tag_collection
from artylyze.tagging.ray_engine import RayOptions, plan_actors, shard_count, tag_with_ray

PAINTINGS = {"Baroque": 3, "Cubism": 2, "Pop_Art": 2}  # style folder -> paintings taken
EXPECTED_ERRORS = {"broken/corrupt.jpg": "truncated", "notes.jpg": "not an image"}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One local Ray for the module: starting it costs seconds."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), size=32)


def paintings(wikiart: Path) -> list[Path]:
    found = []
    for style, n in PAINTINGS.items():
        found += sorted((wikiart / "images" / style).glob("*.jpg"))[:n]
    return found


def make_collection(root: Path, wikiart: Path) -> list[str]:
    """Seven real paintings in subfolders, a JPEG cut in half and a text file named .jpg."""
    rels = []
    for src in paintings(wikiart):
        rel = f"{src.parent.name}/{src.name}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
        rels.append(rel)
    data = (root / rels[0]).read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.jpg").write_text("not a painting\n")
    return rels


def rows_by_path(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out).to_pylist()
    assert len({r["path"] for r in rows}) == len(rows), "one row per file"
    return {r["path"]: r for r in rows}


def labels(top: list[dict] | None) -> list[str]:
    return [t["label"] for t in top or ()]


def parts(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_ray_rows_equal_the_local_engine_rows(tmp_path: Path, wikiart: Path,
                                              bundle_dir: Path) -> None:
    rels = make_collection(tmp_path / "col", wikiart)
    local = tag_collection(tmp_path / "col", tmp_path / "local.parquet",
                           load_bundle(bundle_dir), TagOptions(batch_size=4))
    s = tag_with_ray(tmp_path / "col", tmp_path / "out", bundle_dir, TagOptions(batch_size=4))
    assert isinstance(s, TagSummary) and (s.engine, s.executor) == ("ray", "ray")
    assert (s.files_seen, s.tagged, s.errors, s.images_inferred) == (9, 7, 2, 7)
    assert (local.tagged, local.errors) == (7, 2)
    assert s.errors_by_kind == local.errors_by_kind == {"truncated": 1, "not_image": 1}
    assert s.workers == 1 and s.inference_calls >= 2  # one actor, batches of 4
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part-00000.parquet"]
    a, b = rows_by_path(tmp_path / "local.parquet"), rows_by_path(tmp_path / "out")
    assert sorted(b) == sorted([*rels, *EXPECTED_ERRORS])
    for path, err in EXPECTED_ERRORS.items():
        assert b[path]["status"] == "error" and err in b[path]["error"]
    same = ("status", "error", "size", "mtime_ns", "sha256", "width", "height", "model",
            "style", "genre")
    for path, row in b.items():
        assert {k: row[k] for k in same} == {k: a[path][k] for k in same}, path
        assert labels(row["style_top"]) == labels(a[path]["style_top"]), path
        if row["status"] == "ok":
            np.testing.assert_allclose(row["embedding"], a[path]["embedding"], atol=1e-5)
            assert row["style_score"] == pytest.approx(a[path]["style_score"], abs=1e-5)
        else:
            assert row["embedding"] is None and a[path]["embedding"] is None
    local_schema = pq.read_schema(tmp_path / "local.parquet")
    for part in (tmp_path / "out").iterdir():
        assert pq.read_schema(part).equals(local_schema, check_metadata=True)

    # same content under a new name or a new mtime: reused by sha256, not inferred again
    os.rename(tmp_path / "col" / rels[0], tmp_path / "col" / "renamed.jpg")
    os.utime(tmp_path / "col" / rels[1], ns=(1, 1))
    for out, run in ((tmp_path / "local.parquet", lambda o: tag_collection(
            tmp_path / "col", o, load_bundle(bundle_dir), TagOptions(batch_size=4))),
                     (tmp_path / "out", lambda o: tag_with_ray(
            tmp_path / "col", o, bundle_dir, TagOptions(batch_size=4)))):
        again = run(out)
        assert (again.reused, again.images_inferred, again.tagged) == (2, 0, 0), out
        assert (again.unchanged, again.missing_kept) == (7, 1), out
        rows = rows_by_path(out)
        assert rows["renamed.jpg"]["sha256"] == a[rels[0]]["sha256"]
        np.testing.assert_allclose(rows["renamed.jpg"]["embedding"], a[rels[0]]["embedding"],
                                   atol=1e-5)
        assert rows[rels[1]]["mtime_ns"] == 1 and rows[rels[1]]["style"] == a[rels[1]]["style"]


def test_unchanged_files_are_skipped_and_new_or_changed_ones_tagged(
        tmp_path: Path, wikiart: Path, bundle_dir: Path) -> None:
    col, out = tmp_path / "col", tmp_path / "out"
    rels = make_collection(col, wikiart)
    tag_with_ray(col, out, bundle_dir, TagOptions(batch_size=4))
    first, before = parts(out), rows_by_path(out)

    again = tag_with_ray(col, out, bundle_dir, TagOptions(batch_size=4))
    assert (again.tagged, again.images_inferred, again.unchanged) == (0, 0, 9)
    assert again.errors == 2 and again.output_unchanged and again.workers == 0
    assert again.address == ""  # nothing to do: Ray was not even asked
    assert parts(out) == first

    extra = sorted((wikiart / "images" / "Cubism").glob("*.jpg"))[5]
    shutil.copyfile(extra, col / "new.jpg")
    shutil.copyfile(col / rels[1], col / rels[0])  # rels[0] now holds another painting
    s = tag_with_ray(col, out, bundle_dir, TagOptions(batch_size=4))
    # rels[0] now holds rels[1]'s content: its predictions are reused, not inferred
    assert (s.tagged, s.reused, s.images_inferred, s.unchanged, s.errors) == (1, 1, 1, 8, 2)
    assert not s.output_unchanged and len(parts(out)) == 1  # merged into one dataset file
    rows = rows_by_path(out)  # asserts one row per file across the parts
    assert len(rows) == 10 and rows["new.jpg"]["status"] == "ok"
    assert rows[rels[0]]["sha256"] == before[rels[1]]["sha256"] != before[rels[0]]["sha256"]
    assert rows[rels[1]]["tagged_at"] == before[rels[1]]["tagged_at"]  # not touched

    (col / rels[2]).unlink()
    kept = tag_with_ray(col, out, bundle_dir, TagOptions(batch_size=4))
    assert (kept.missing_kept, kept.images_inferred, kept.output_unchanged) == (1, 0, True)
    pruned = tag_with_ray(col, out, bundle_dir, TagOptions(batch_size=4, prune=True))
    assert (pruned.pruned, pruned.images_inferred, pruned.output_unchanged) == (1, 0, False)
    assert rels[2] not in rows_by_path(out) and len(rows_by_path(out)) == 9

    full = tag_with_ray(col, out, bundle_dir, TagOptions(batch_size=4, full=True))
    assert (full.tagged + full.reused, full.errors) == (7, 2)
    assert len(parts(out)) == 1 and len(rows_by_path(out)) == 9


def test_cli_engine_ray_prints_the_summary(tmp_path: Path, wikiart: Path,
                                           bundle_dir: Path) -> None:
    make_collection(tmp_path / "col", wikiart)
    runner = CliRunner()
    args = ["tag", str(tmp_path / "col"), "--out", f"{tmp_path}/out/", "--model",
            str(bundle_dir), "--engine", "ray", "--batch-size", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"wrote 9 rows to {tmp_path / 'out'} in" in text and "files/s)" in text
    assert "files seen 9: tagged 7, reused 0 (same content), unchanged 0, errors 2 (" in text
    assert "truncated 1" in text and "not_image 1" in text
    assert "7 images on 1 Ray actors x 1 threads at " in text and "images/s)" in text
    up_to_date = runner.invoke(app, args)
    assert up_to_date.exit_code == 0, up_to_date.output
    assert "is up to date (9 rows)" in up_to_date.output and "unchanged 9" in up_to_date.output
    assert "Ray not needed" in up_to_date.output
    bad = runner.invoke(app, [*args, "--engine", "spark"])
    assert bad.exit_code == 2 and "must be local or ray" in bad.output


def test_missing_ray_says_what_to_install(tmp_path: Path, wikiart: Path, bundle_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_collection(tmp_path / "col", wikiart)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = CliRunner().invoke(app, ["tag", str(tmp_path / "col"), "--out",
                                      str(tmp_path / "out"), "--model", str(bundle_dir),
                                      "--engine", "ray"])
    assert result.exit_code == 2
    assert "pip install 'artylyze[ray]'" in result.output


def test_ray_is_imported_only_when_the_ray_engine_runs() -> None:
    code = ("import sys, artylyze.cli.main, artylyze.tagging.ray_engine; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.strip() == "[]"


def test_actors_and_shards_fit_the_cluster() -> None:
    cpu, gpu = {"CPU": 16.0}, {"CPU": 16.0, "GPU": 2.0}
    assert plan_actors(cpu, RayOptions()) == (15, 1, 0)  # one CPU left to the driver
    assert plan_actors(cpu, RayOptions(threads=4)) == (3, 4, 0)
    assert plan_actors({"CPU": 2.0}, RayOptions()) == (1, 1, 0)
    assert plan_actors(gpu, RayOptions(device="cuda")) == (2, 1, 1)
    assert plan_actors(gpu, RayOptions(device="auto", actors=1)) == (1, 1, 1)
    assert plan_actors(cpu, RayOptions(device="auto")) == (15, 1, 0)
    with pytest.raises(TagError, match="the Ray cluster has no GPU"):
        plan_actors(cpu, RayOptions(device="cuda"))
    assert shard_count(2000, 32, 15) == 60  # four per actor
    assert shard_count(1_000_000, 32, 15) == 3907  # eight batches each
    assert (shard_count(9, 4, 1), shard_count(1, 32, 8)) == (3, 1)
