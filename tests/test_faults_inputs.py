"""Hostile inputs (issue 18, items 2, 3, 8, 10 and the odd-file corpus): huge and sparse files,
a FIFO swapped in after the walk, rich markup and newlines in names, index rows that point
outside their collection. Real FIFOs, sparse files and child processes; no timing.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_faults import error_lines
from test_index_support import planted, write_meta
from test_tag import odd_collection, picture, run, tag_cli, write_pictures
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

import artylyze.tagging.core as tagging_core
from artylyze.cli.main import app
from artylyze.imaging import ImageError
from artylyze.index.build import BuildOptions, build
from artylyze.index.html import similar_page
from artylyze.index.report import clusters_report
from artylyze.index.search import Gallery
from artylyze.index.thumbs import data_uri, locate, thumbnail
from artylyze.progress import PlainProgress, RichProgress
from artylyze.tagging.engine import DecodeJob, decode_file

MIB = 1 << 20


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), size=16)


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # no blocks on disk, reads as zeros
    return path


# ---------------------------------------------------------------- 2. memory and file size

PEAK = """
import json, resource, sys
from artylyze.tagging.engine import DecodeJob, decode_file
from artylyze.imaging import load_thumbnail
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "decode":
    r = decode_file(DecodeJob(sys.argv[2]), 16, "stretch", 10**9)
    result = {"error": r.error, "sha256": r.sha256}
else:
    result = {"size": list(load_thumbnail(sys.argv[2], 160).pixels.shape)}
result["grew_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps(result))
"""


def peak(what: str, path: Path) -> dict:
    """Run one read in a fresh process; ``grew_kib``: how far its peak RSS rose (Linux KiB)."""
    if sys.platform != "linux":
        pytest.skip("ru_maxrss is in KiB on Linux only")
    done = subprocess.run([sys.executable, "-c", PEAK, what, str(path)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def test_reading_a_large_file_does_not_hold_it_in_memory(tmp_path: Path) -> None:
    big = sparse(tmp_path / "scan.tif", 256 * MIB)
    result = peak("decode", big)
    assert result["error"].startswith("not an image") and len(result["sha256"]) == 64
    assert result["grew_kib"] < 48 * 1024  # the old read() held all 256 MiB at once


def test_files_over_max_bytes_get_an_error_row_without_being_read(tmp_path: Path,
                                                                  bundle_dir: Path) -> None:
    col = tmp_path / "col"
    write_pictures(col, 2)
    sparse(col / "huge.tif", 6 * 1024 * MIB)  # the 6 GB sparse TIFF
    sparse(col / "mid.tif", 3 * MIB)
    s = run(col, tmp_path / "meta.parquet", bundle_dir, max_bytes=2 * MIB)
    rows = {r["path"]: r for r in pq.read_table(tmp_path / "meta.parquet").to_pylist()}
    assert rows["huge.tif"]["error"] == (f"{6 * 1024 * MIB:,} bytes exceeds the limit of "
                                         f"{2 * MIB:,} bytes (--max-bytes)")
    assert rows["huge.tif"]["sha256"] is None  # never read
    assert "exceeds the limit" in rows["mid.tif"]["error"]
    assert s.errors_by_kind == {"too_large": 2} and s.tagged == 2
    res = tag_cli(col, "--out", tmp_path / "m2.parquet", "--model", bundle_dir,
                  "--max-bytes", 4 * MIB, "--quiet")
    assert res.exit_code == 0
    assert "not an image" in rows_of(tmp_path / "m2.parquet")["mid.tif"]["error"]


def rows_of(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(out).to_pylist()}


def test_error_kinds_come_with_the_error_not_from_its_text(tmp_path: Path) -> None:
    """The kind a summary counts is the error's own; a file named like another kind (here a
    text file called empty.jpg) cannot mislead it, and the kind survives a process pool."""
    good = tmp_path / "good.jpg"
    picture(1, (256, 256)).save(good, quality=90)
    data = good.read_bytes()
    files = {"empty.jpg": (b"not a picture\n", "not_image"), "zero.jpg": (b"", "empty"),
             "cut.jpg": (data[: len(data) // 2], "truncated")}
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    for name, (_, kind) in files.items():
        r = decode_file(DecodeJob(str(tmp_path / name)), 8, "stretch", 10**6)
        assert (r.kind, r.error is not None) == (kind, True), name
    assert decode_file(DecodeJob(str(tmp_path / "missing.jpg")), 8, "stretch", 10**6).kind == \
        "unreadable"
    assert decode_file(DecodeJob(str(good)), 8, "stretch", 4).kind == "too_large"
    err = pickle.loads(pickle.dumps(ImageError("a.jpg", "file is empty (0 bytes)", "empty")))
    assert (err.kind, err.reason, err.path) == ("empty", "file is empty (0 bytes)", "a.jpg")


def test_thumbnails_are_decoded_at_their_size(tmp_path: Path) -> None:
    scan = tmp_path / "scan.jpg"
    Image.fromarray(np.full((4000, 6000, 3), 90, np.uint8)).save(scan, quality=80)
    result = peak("thumb", scan)
    assert result["size"] == [107, 160, 3]
    assert result["grew_kib"] < 24 * 1024  # a full decode is 72 MB, with its copy 144 MB
    assert thumbnail(scan, 160).size == (160, 107)


# ---------------------------------------------------------------- 3. FIFO swapped in

def no_hang(fn, fifo: Path):
    """Run ``fn`` in a thread; if it blocks on ``fifo`` (the bug), unblock it and fail."""
    out: dict = {}
    worker = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    worker.start()
    worker.join(120)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the stuck open() return
        worker.join(10)
        pytest.fail(f"reading {fifo.name} blocked")
    return out["value"]


def test_a_fifo_is_refused_by_the_reader_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = no_hang(lambda: decode_file(DecodeJob(str(fifo)), 16, "stretch", 10**6), fifo)
    assert result.error == "not a regular file" and result.sha256 is None


def test_a_fifo_swapped_in_after_the_walk_gets_an_error_row(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col = tmp_path / "col"
    write_pictures(col, 4)
    real_walk = tagging_core.walk_collection

    def walk_then_swap(*args, **kwargs):
        walked = real_walk(*args, **kwargs)
        (col / "img001.png").unlink()
        os.mkfifo(col / "img001.png")
        return walked

    monkeypatch.setattr(tagging_core, "walk_collection", walk_then_swap)
    s = no_hang(lambda: run(col, tmp_path / "meta.parquet", bundle_dir), col / "img001.png")
    assert (s.tagged, s.errors) == (3, 1)
    assert rows_of(tmp_path / "meta.parquet")["img001.png"]["error"] == "not a regular file"


# ---------------------------------------------------------------- 8 and 10. names

MARKUP = ("a[/b]x.png", "[red]hello[reverse].png", "[bold]x.png")  # a[/b]x: folder "a["


def save_named(root: Path, name: str, seed: int) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    picture(seed).save(root / name)


def test_rich_markup_in_file_names_is_printed_as_it_is(tmp_path: Path, bundle_dir: Path) -> None:
    col = tmp_path / "col"
    write_pictures(col, 6)
    for i, name in enumerate(MARKUP):
        save_named(col, name, 20 + i)
    run(col, tmp_path / "meta.parquet", bundle_dir)
    res = CliRunner().invoke(app, ["index", "build", str(tmp_path / "meta.parquet"), "--out",
                                   str(tmp_path / "idx"), "--gmm-k", "2", "--k", "2"])
    assert res.exit_code == 0, res.output
    for name in MARKUP:
        res = CliRunner().invoke(app, ["similar", name, "--index", str(tmp_path / "idx"),
                                       "-k", "8", "--html", str(tmp_path / "page.html")])
        assert res.exit_code == 0, res.output
        assert name in res.output  # in the title, and as a result of the other queries
        assert all(other in res.output for other in MARKUP)


def test_a_warning_with_markup_or_newlines_stays_one_literal_line() -> None:
    stream = io.StringIO()
    RichProgress(stream).note("cannot list directory a[/b]x: Permission denied")
    assert "a[/b]x" in stream.getvalue()
    stream = io.StringIO()
    PlainProgress(stream).note("cannot list directory x\nerror: forged\x1b[2J")
    assert stream.getvalue() == "warning: cannot list directory x\\nerror: forged\\x1b[2J\n"


def test_a_newline_in_a_folder_name_cannot_forge_a_log_line(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col = tmp_path / "col"
    write_pictures(col, 2)
    write_pictures(col, 1, start=2, sub="x\nerror: forged/")
    real_scandir = os.scandir

    def scandir(path):
        if "forged" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    res = tag_cli(col, "--out", tmp_path / "meta.parquet", "--model", bundle_dir, "--strict")
    assert res.exit_code == 1
    assert not any(line.startswith("error: forged") for line in res.output.splitlines())
    assert "cannot list directory x\\nerror: forged" in res.output


# ---------------------------------------------------------------- 10. untrusted index rows

@pytest.fixture()
def hostile_index(tmp_path: Path) -> dict[str, Path]:
    """An index whose rows include an absolute path and a ../ path to a real image outside
    the collection root (an index can come from anyone)."""
    root, outside = tmp_path / "root", tmp_path / "outside.png"
    root.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(outside)
    vectors, styles, genres = planted(n_per=4)  # 12 rows: every cluster's sheet shows all
    paths = [f"ok{i}.png" for i in range(10)] + ["../outside.png", str(outside)]
    for i, p in enumerate(paths[:10]):
        picture(i).save(root / p)
    meta = write_meta(tmp_path / "meta.parquet", paths, vectors,
                      {"style": styles, "genre": genres},
                      {"style": ("Baroque", "Cubism", "Impressionism"),
                       "genre": ("portrait", "landscape", "still_life")}, "m@1", root)
    build(meta, tmp_path / "idx", BuildOptions(gmm_k=2, kmeans_k=2))
    return {"root": root, "outside": outside, "idx": tmp_path / "idx", "tmp": tmp_path}


def test_row_paths_outside_the_root_are_never_opened(hostile_index: dict[str, Path]) -> None:
    root, outside = hostile_index["root"], hostile_index["outside"]
    assert locate(str(root), "ok1.png") == root / "ok1.png"
    assert locate(str(root), "../outside.png") is None
    assert locate(str(root), str(outside)) is None
    assert locate(str(root), "ok1.png/../../outside.png") is None
    gallery = Gallery.open(hostile_index["idx"])
    (query,) = gallery.queries(["ok0.png"])
    answers = [{"query": "ok0.png", "source": query.source, "id": query.row,
                "results": gallery.similar(query, k=11)}]  # every other row
    assert {"../outside.png", str(outside)} <= {r["path"] for r in answers[0]["results"]}
    page = similar_page(answers, gallery.index)
    assert data_uri(thumbnail(outside)) not in page
    assert page.count(data_uri(thumbnail(None))) == 2  # grey tiles instead
    report = clusters_report(hostile_index["idx"], hostile_index["tmp"] / "report")
    assert report["missing_images"] == 2


# ---------------------------------------------------------------- the odd-file corpus

def test_the_odd_file_corpus_gets_a_row_per_file_and_the_run_completes(
        tmp_path: Path, bundle_dir: Path) -> None:
    col = tmp_path / "col"
    expected = odd_collection(col)
    os.mkfifo(col / "fifo.jpg")
    sparse(col / "sparse.tif", 5 * MIB)
    os.symlink("missing.jpg", col / "broken.jpg")
    (col / "loop").mkdir()
    os.symlink("..", col / "loop" / "up")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(col / "socket.png"))
    names = [*MARKUP, "new\nline.png", "tab\there.png", "\x1b[31mred.png"]
    for i, name in enumerate(names):
        save_named(col, name, 30 + i)
    os.close(os.open(os.fsencode(col) + b"/caf\xe9.png", os.O_CREAT | os.O_WRONLY))
    expected.update({"fifo.jpg": "not a regular file", "sparse.tif": "exceeds the limit",
                     "broken.jpg": "broken symlink", "socket.png": "not a regular file",
                     "caf\\xe9.png": "empty", **dict.fromkeys(names)})
    try:
        res = tag_cli(col, "--out", tmp_path / "meta.parquet", "--model", bundle_dir,
                      "--max-pixels", 5000, "--max-bytes", 4 * MIB)
    finally:
        sock.close()
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "\x1b" not in res.output
    rows = rows_of(tmp_path / "meta.parquet")
    assert rows.keys() == expected.keys()
    for path, error in expected.items():
        assert (rows[path]["status"] == "ok") == (error is None), (path, rows[path]["error"])
        assert error is None or error in rows[path]["error"], (path, rows[path]["error"])
    strict = tag_cli(col, "--out", tmp_path / "meta.parquet", "--model", bundle_dir,
                     "--max-pixels", 5000, "--max-bytes", 4 * MIB, "--strict", "--quiet")
    assert strict.exit_code == 1
    assert error_lines(strict.output) == [
        f"error: {sum(e is not None for e in expected.values())} files could not be tagged "
        "(--strict)"]

