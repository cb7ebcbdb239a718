"""``artylyze tag`` end to end: odd inputs, incremental runs, outputs, exit codes.

Real files made with Pillow, a real tiny ONNX bundle; inference is counted, never timed.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.model.bundle import load_bundle
from artylyze.store import OutputLock, OutputTarget, file_path
from artylyze.tagging.engine import TagOptions, TagSummary, tag_collection


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), size=16)


def picture(seed: int, size: tuple[int, int] = (16, 16), mode: str = "RGB") -> Image.Image:
    """Four flat quadrants of seeded colours: the tiny model tells such images apart."""
    rng = np.random.default_rng(seed)
    quads = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    w, h = size
    pixels = np.repeat(np.repeat(quads, (h + 1) // 2, axis=0), (w + 1) // 2, axis=1)[:h, :w]
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB").convert(mode)


def write_pictures(root: Path, n: int, start: int = 0, sub: str = "") -> list[str]:
    rels = []
    for i in range(start, start + n):
        rel = f"{sub}img{i:03d}.png" if i % 2 else f"{sub}img{i:03d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        picture(i).save(root / rel, quality=95)
        rels.append(rel)
    return rels


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (with a valid CRC) but holds almost no data."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def odd_collection(root: Path) -> dict[str, str | None]:
    """Every odd and broken input; value: expected error kind text, None when it must tag."""
    root.mkdir(parents=True)
    write_pictures(root, 2)
    jpeg = io.BytesIO()
    picture(7, (64, 64)).save(jpeg, "JPEG")
    (root / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    png = io.BytesIO()
    picture(8, (32, 32)).save(png, "PNG")
    data = bytearray(png.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 4:idat + 40] = b"\xff" * 36
    (root / "corrupt.png").write_bytes(bytes(data))
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_bytes(b"this is not an image at all\n")
    (root / "huge.png").write_bytes(png_claiming(100_000, 100_000))
    picture(9, (80, 80)).save(root / "big.png")  # 6,400 pixels > --max-pixels 5000
    picture(10).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 250).save(
        root / "gray16.png")
    picture(11, mode="RGBA").save(root / "rgba.png")
    picture(12).convert("P").save(root / "palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 40x20, shown 20x40
    picture(13, (40, 20)).save(root / "rotated.jpg", exif=exif)
    return {"img000.jpg": None, "img001.png": None, "truncated.jpg": "truncated",
            "corrupt.png": "corrupt", "empty.jpg": "empty", "text.jpg": "not an image",
            "huge.png": "exceeds the limit", "big.png": "exceeds the limit", "cmyk.jpg": None,
            "gray16.png": None, "rgba.png": None, "palette.gif": None, "rotated.jpg": None}


def tag_cli(*args: str | os.PathLike[str]):
    return CliRunner().invoke(app, ["tag", *map(str, args)])


def run(root: Path, out: Path | str, bundle_dir: Path, **options) -> TagSummary:
    options.setdefault("batch_size", 4)
    return tag_collection(root, out, load_bundle(bundle_dir), TagOptions(**options))


def rows_by_path(out: Path | str) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(out).to_pylist()}


def predictions_of(row: dict) -> tuple:
    return (row["status"], row["error"], row["style"], row["style_score"], row["genre"],
            tuple(row["embedding"] or ()), row["sha256"], row["width"], row["height"])


def test_every_odd_or_broken_file_gets_a_row_and_the_run_completes(tmp_path: Path,
                                                                   bundle_dir: Path) -> None:
    expected = odd_collection(tmp_path / "col")
    out = tmp_path / "meta.parquet"
    result = tag_cli(tmp_path / "col", "--out", out, "--model", bundle_dir,
                     "--max-pixels", 5000, "--batch-size", 3)
    assert result.exit_code == 0, result.output
    rows = rows_by_path(out)
    assert set(rows) == set(expected)
    for path, error in expected.items():
        row = rows[path]
        if error is None:
            assert (row["status"], row["error"]) == ("ok", None), path
            assert row["style"] in ("Baroque", "Cubism", "Impressionism", "Pop_Art")
            assert len(row["embedding"]) == 16 and len(row["style_top"]) == 3
        else:
            assert row["status"] == "error", path
            assert error in row["error"], (path, row["error"])
            assert row["embedding"] is None and row["style"] is None
    assert (rows["rotated.jpg"]["width"], rows["rotated.jpg"]["height"]) == (20, 40)
    assert rows["empty.jpg"]["size"] == 0
    assert "errors 6" in result.output and "too_large 2" in result.output
    strict = tag_cli(tmp_path / "col", "--out", out, "--model", bundle_dir,
                     "--max-pixels", 5000, "--strict", "--quiet")
    assert strict.exit_code == 1
    assert "6 files could not be tagged (--strict)" in strict.output


def test_parquet_schema_reads_in_pyarrow_and_pandas(tmp_path: Path, bundle_dir: Path) -> None:
    rels = write_pictures(tmp_path / "col", 5)
    out = tmp_path / "meta.parquet"
    run(tmp_path / "col", out, bundle_dir, top_k=2)
    table = pq.read_table(out)
    assert table.schema.names == [
        "path", "size", "mtime_ns", "sha256", "width", "height", "status", "error",
        "style", "style_score", "style_top", "genre", "genre_score", "genre_top",
        "embedding", "model", "tagged_at"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    assert table.schema.field("tagged_at").type == pa.timestamp("us", tz="UTC")
    meta = table.schema.metadata
    manifest = json.loads(meta[b"artylyze.bundle"])
    assert manifest["model_id"] == load_bundle(bundle_dir).model_id
    assert meta[b"artylyze.root"].decode() == str(tmp_path / "col")
    assert meta[b"artylyze.schema_version"] == b"1"
    df = pd.read_parquet(out)
    assert sorted(df["path"]) == rels
    assert (df["status"] == "ok").all() and df["model"].nunique() == 1
    first = df.iloc[0]
    assert len(first["style_top"]) == 2 and first["style_top"][0]["label"] == first["style"]
    assert first["style_top"][0]["score"] == pytest.approx(first["style_score"])
    norms = np.linalg.norm(np.stack(df["embedding"].to_numpy()), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    assert str(df["tagged_at"].dt.tz) == "UTC"
    assert pq.ParquetFile(out).metadata.num_row_groups == 1


def test_unchanged_collection_runs_no_inference(tmp_path: Path, bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 6)
    (tmp_path / "col" / "bad.jpg").write_bytes(b"junk")
    out = tmp_path / "meta.parquet"
    first = run(tmp_path / "col", out, bundle_dir)
    assert (first.tagged, first.errors, first.images_inferred) == (6, 1, 6)
    before = out.read_bytes()
    again = run(tmp_path / "col", out, bundle_dir)
    assert (again.inference_calls, again.images_inferred) == (0, 0)
    assert (again.unchanged, again.tagged, again.reused, again.errors) == (7, 0, 0, 1)
    assert again.errors_by_kind == {"unchanged": 1}
    assert again.output_unchanged and out.read_bytes() == before  # not even rewritten
    retry = run(tmp_path / "col", out, bundle_dir, retry_errors=True)
    assert (retry.unchanged, retry.errors, retry.images_inferred) == (6, 1, 0)
    assert retry.errors_by_kind == {"not_image": 1}
    assert rows_by_path(out).keys() == {r["path"] for r in pq.read_table(out).to_pylist()}


def test_changed_new_touched_renamed_and_deleted_files(tmp_path: Path, bundle_dir: Path) -> None:
    col = tmp_path / "col"
    write_pictures(col, 6)
    out = tmp_path / "meta.parquet"
    run(col, out, bundle_dir)
    before = rows_by_path(out)
    picture(100).save(col / "img000.jpg")  # content changed
    write_pictures(col, 1, start=50)  # new: img050.jpg
    st = os.stat(col / "img001.png")
    os.utime(col / "img001.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched only
    os.rename(col / "img002.jpg", col / "renamed.jpg")
    (col / "img003.png").unlink()  # deleted
    s = run(col, out, bundle_dir)
    assert (s.images_inferred, s.tagged, s.reused, s.unchanged) == (2, 2, 2, 2)
    assert s.missing_kept == 2  # img002.jpg (renamed away) and img003.png: kept without --prune
    rows = rows_by_path(out)
    assert rows["img000.jpg"]["sha256"] != before["img000.jpg"]["sha256"]
    assert predictions_of(rows["renamed.jpg"]) == predictions_of(before["img002.jpg"])
    assert predictions_of(rows["img001.png"]) == predictions_of(before["img001.png"])
    assert rows["img001.png"]["mtime_ns"] == st.st_mtime_ns + 10**9
    assert "img003.png" in rows and "img002.jpg" in rows
    pruned = run(col, out, bundle_dir, prune=True)
    assert (pruned.pruned, pruned.images_inferred) == (2, 0)
    assert sorted(rows_by_path(out)) == ["img000.jpg", "img001.png", "img004.jpg",
                                         "img005.png", "img050.jpg", "renamed.jpg"]


def test_another_model_or_full_retags_everything(tmp_path: Path, bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 4)
    out = tmp_path / "meta.parquet"
    run(tmp_path / "col", out, bundle_dir)
    assert run(tmp_path / "col", out, bundle_dir, full=True).images_inferred == 4
    other = make_tiny_bundle(tmp_path / "other", size=16, seed=1, name="other")
    s = run(tmp_path / "col", out, other)
    assert s.images_inferred == 4 and "every file is tagged again" in s.warnings[0]
    assert {r["model"] for r in rows_by_path(out).values()} == {load_bundle(other).model_id}
    assert run(tmp_path / "col", out, bundle_dir, top_k=1).images_inferred == 4


def test_dataset_output_writes_part_files(tmp_path: Path, bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 5)
    result = tag_cli(tmp_path / "col", "--out", f"{tmp_path}/meta/", "--model", bundle_dir,
                     "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()) == ["part-00000.parquet"]
    assert pq.read_table(tmp_path / "meta").num_rows == 5
    write_pictures(tmp_path / "col", 2, start=5)
    s = run(tmp_path / "col", tmp_path / "meta", bundle_dir)  # existing dir: a dataset again
    assert (s.images_inferred, s.unchanged) == (2, 5)
    assert pd.read_parquet(tmp_path / "meta")["path"].nunique() == 7
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no work dir left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not ours to delete")
    refused = tag_cli(tmp_path / "col", "--out", f"{tmp_path}/mine/", "--model", bundle_dir)
    assert refused.exit_code == 2 and "holds other files (notes.txt)" in refused.output
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_odd_file_names_round_trip_to_the_real_file(tmp_path: Path, bundle_dir: Path) -> None:
    col = tmp_path / "col"
    col.mkdir()
    names = [b"caf\xe9.jpg", "naïve ✓.png".encode(), b"back\\slash.jpg", b"new\nline.jpg"]
    for i, name in enumerate(names):
        buf = io.BytesIO()
        picture(i).save(buf, "PNG")
        with open(os.fsencode(col) + b"/" + name, "wb") as f:
            f.write(buf.getvalue())
    out = tmp_path / "meta.parquet"
    run(col, out, bundle_dir)
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    found = {os.fsencode(os.path.basename(file_path(col, r["path"]))) for r in rows}
    assert found == set(names)
    assert all(os.path.isfile(file_path(col, r["path"])) for r in rows)
    assert run(col, out, bundle_dir).images_inferred == 0


def test_exit_codes_when_nothing_can_be_done(tmp_path: Path, bundle_dir: Path) -> None:
    out = tmp_path / "meta.parquet"
    missing = tag_cli(tmp_path / "nope", "--out", out, "--model", bundle_dir)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    empty = tag_cli(tmp_path / "empty", "--out", out, "--model", bundle_dir)
    assert empty.exit_code == 2 and "no image files found" in empty.output
    assert not out.exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"nope")
    all_bad = tag_cli(tmp_path / "bad", "--out", out, "--model", bundle_dir)
    assert all_bad.exit_code == 1 and "none of the 1 files could be tagged" in all_bad.output
    assert pq.read_table(out).column("status").to_pylist() == ["error"]


def test_a_second_run_on_a_locked_output_exits_and_leaves_it_intact(tmp_path: Path,
                                                                     bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 3)
    out = tmp_path / "meta.parquet"
    run(tmp_path / "col", out, bundle_dir)
    before = out.read_bytes()
    write_pictures(tmp_path / "col", 1, start=3)
    with OutputLock(OutputTarget.resolve(out)):  # what a concurrent run holds
        result = tag_cli(tmp_path / "col", "--out", out, "--model", bundle_dir)
    assert result.exit_code == 2
    assert f"is being written by another run (pid {os.getpid()} on" in result.output
    assert out.read_bytes() == before


def test_summary_reports_counts_and_stages(tmp_path: Path, bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 3)
    (tmp_path / "col" / "x.jpg").write_bytes(b"")
    result = tag_cli(tmp_path / "col", "--out", tmp_path / "m.parquet", "--model", bundle_dir,
                     "--workers", 1, "--threads", 1)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "tag: 4 files to process" in text  # plain progress lines: not a terminal
    assert "files seen 4: tagged 3, reused 0 (same content), unchanged 0, errors 1 (empty 1)" \
        in text
    assert "stages: walk" in text and "inference" in text and "decode wait" in text
    assert "3 images in 1 inference calls; 1 decode threads, 1 inference threads" in text


def test_decoding_in_spawned_processes_gives_the_same_rows(tmp_path: Path,
                                                           bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 4)
    (tmp_path / "col" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    threads = run(tmp_path / "col", tmp_path / "t.parquet", bundle_dir, executor="thread")
    procs = run(tmp_path / "col", tmp_path / "p.parquet", bundle_dir, executor="process",
                workers=2)
    assert (procs.tagged, procs.errors, procs.executor) == (4, 1, "process")
    a, b = rows_by_path(tmp_path / "t.parquet"), rows_by_path(tmp_path / "p.parquet")
    assert a.keys() == b.keys()
    assert all(predictions_of(a[p]) == predictions_of(b[p]) for p in a)
    assert threads.tagged == 4


def test_files_under_an_unreadable_dir_are_never_pruned(tmp_path: Path, bundle_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    col = tmp_path / "col"
    write_pictures(col, 2)
    write_pictures(col, 2, start=2, sub="locked/")
    out = tmp_path / "meta.parquet"
    run(col, out, bundle_dir)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (col / "img000.jpg").unlink()
    s = run(col, out, bundle_dir, prune=True)
    assert s.pruned == 1 and [p.kind for p in s.walk_problems] == ["unreadable_dir"]
    assert any("cannot list directory locked" in w for w in s.warnings)
    assert sorted(rows_by_path(out)) == ["img001.png", "locked/img002.jpg", "locked/img003.png"]


def test_parts_of_an_interrupted_run_with_another_model_are_discarded(
        tmp_path: Path, bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 3)
    out = tmp_path / "meta.parquet"
    run(tmp_path / "col", out, bundle_dir)
    workdir = OutputTarget.resolve(out).workdir
    workdir.mkdir()
    (workdir / "run.json").write_text(json.dumps({"key": "other@123|top_k=3", "full": False}))
    (workdir / "part-00000.parquet").write_bytes(out.read_bytes())
    s = run(tmp_path / "col", out, bundle_dir, full=True)
    assert (s.resumed, s.images_inferred) == (0, 3)
    assert not workdir.exists()


def test_rows_match_decoding_and_running_each_image_alone(tmp_path: Path,
                                                          bundle_dir: Path) -> None:
    """The engine adds nothing of its own: same pixels as load_image(path), same outputs."""
    from artylyze.imaging import load_image

    rels = write_pictures(tmp_path / "col", 5)
    picture(5, (37, 23)).convert("RGBA").save(tmp_path / "col" / "odd.png")
    out = tmp_path / "meta.parquet"
    run(tmp_path / "col", out, bundle_dir, batch_size=4)
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    rows = rows_by_path(out)
    for rel in [*rels, "odd.png"]:
        img = load_image(tmp_path / "col" / rel, size=m.input_size, resize=m.resize)
        outputs = bundle.run(img.pixels[None])
        row = rows[rel]
        assert (row["width"], row["height"]) == (img.width, img.height)
        np.testing.assert_allclose(row["embedding"], outputs["embedding"][0], rtol=1e-5,
                                   atol=1e-6)
        for task in m.task_names:
            probs = outputs[task][0]
            assert row[task] == m.labels(task)[int(np.argmax(probs))]
            assert row[f"{task}_score"] == pytest.approx(float(probs.max()), rel=1e-5)


def test_the_tagging_modules_never_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, artylyze.tagging.engine, artylyze.cli.tag; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_threads_default_to_all_cores_and_stop_spinning_when_shared(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import artylyze.tagging.engine as engine

    monkeypatch.setattr(engine, "usable_cores", lambda: 4)
    assert engine.plan_threads(TagOptions(), "cpu") == (4, 4, False)
    assert engine.plan_threads(TagOptions(workers=1, threads=3), "cpu") == (1, 3, True)
    write_pictures(tmp_path / "col", 2)
    sessions = []
    real = engine.Bundle

    def spy(*args, **kwargs):
        sessions.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "Bundle", spy)
    for options, spin in (({}, False), ({"workers": 1, "threads": 3}, True)):
        bundle = load_bundle(bundle_dir)
        summary = tag_collection(tmp_path / "col", tmp_path / f"{spin}.parquet", bundle,
                                 TagOptions(batch_size=4, **options))
        assert summary.tagged == 2
        assert sessions.pop()["spin"] is spin  # decided before the run's session is made
        assert (bundle.threads, bundle.spin, bundle._session) == (None, True, None)  # as given


def test_python_dash_m_is_the_same_command_line() -> None:
    """`python -m artylyze.cli.main` (cron jobs, another venv's interpreter) answers as
    `artylyze`."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "artylyze.cli.main", "tag", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--out" in done.stdout and "Usage:" in done.stdout
