"""``artylyze write --csv/--jsonl``: round trips through real readers (the csv module,
pandas, polars, DuckDB), with file names that break naive exports: bytes that are not
UTF-8, commas, quotes, newlines, a carriage return, a backslash, a tab."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from tagged_examples import EXAMPLES, RENOIR, tag
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.store import decode_path

ODD_NAMES = [b"caf\xe9 latin-1.jpg", b"comma, name.jpg", b'say "cheese".jpg', b"new\nline.jpg",
             b"carriage\rreturn.jpg", b"back\\slash.jpg", b"tab\tname.jpg",
             "ünïcode ✓.jpg".encode(), b"=SUM(A1).jpg"]


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pq.ParquetFile]:
    """(collection, meta.parquet, its table) with odd names, a real painting behind each,
    one corrupt file and one in a subfolder."""
    tmp = tmp_path_factory.mktemp("flat")
    root = tmp / "collection"
    (root / "sub dir").mkdir(parents=True)
    paintings = sorted(EXAMPLES.glob("*.jpg"))
    for name, src in zip(ODD_NAMES, paintings, strict=False):
        shutil.copyfile(src, os.path.join(os.fsencode(root), name))
    shutil.copyfile(EXAMPLES / RENOIR, root / "sub dir" / RENOIR)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really")
    meta = tmp / "meta.parquet"
    tag(root, meta)
    return root, meta, pq.read_table(meta)


def export(meta: Path, out: Path, *extra: str) -> Path:
    option = "--csv" if out.suffix == ".csv" else "--jsonl"
    result = CliRunner().invoke(app, ["write", str(meta), option, str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def on_disk(root: Path) -> set[bytes]:
    found = set()
    for dirpath, _, files in os.walk(os.fsencode(root)):
        rel = os.path.relpath(dirpath, os.fsencode(root))
        found |= {f if rel == b"." else os.path.join(rel, f) for f in files}
    return found


def safe(text: str) -> str:
    """What the default CSV holds for a text cell (formula starts neutralised)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def test_csv_round_trips_names_and_values(odd, tmp_path):
    root, meta, table = odd
    out = export(meta, tmp_path / "meta.csv", "--csv-raw")  # exact values, for scripts
    with open(out, newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["path"] for r in read] == table.column("path").to_pylist()
    assert {os.fsencode(decode_path(r["path"])) for r in read} == on_disk(root), \
        "every path leads back to its file"
    assert "embedding" not in read[0] and "style_top" not in read[0]
    rows = table.to_pylist()
    for got, want in zip(read, rows, strict=True):
        assert got["status"] == want["status"]
        assert got["error"] == (want["error"] or "")
        assert got["style"] == (want["style"] or "")
        if want["style_score"] is not None:  # the shortest decimal of the float32, exactly
            assert np.float32(got["style_score"]) == np.float32(want["style_score"])
        assert int(got["mtime_ns"]) == want["mtime_ns"]
        assert pd.Timestamp(got["tagged_at"]) == pd.Timestamp(want["tagged_at"])
    bad = next(r for r in read if r["path"] == "corrupt.jpg")
    assert bad["status"] == "error" and bad["error"] and bad["style"] == ""


def test_pandas_polars_and_duckdb_read_the_csv_back(odd, tmp_path):
    _, meta, table = odd
    out = export(meta, tmp_path / "meta.csv")
    paths = table.column("path").to_pylist()
    scores = table.column("style_score").to_numpy(zero_copy_only=False)
    frames = {
        "pandas": pd.read_csv(out, dtype={"path": str}),
        "polars": pl.read_csv(out).to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM read_csv('{out}')").df(),
    }
    for reader, df in frames.items():  # the default CSV: a formula-like name starts with '
        assert df["path"].tolist() == [safe(p) for p in paths], reader
        assert "'=SUM(A1).jpg" in df["path"].tolist(), reader
        assert list(df.columns) == [c for c in table.column_names
                                    if c != "embedding" and not c.endswith("_top")], reader
        got = df["style_score"].to_numpy(dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(got, scores.astype(np.float32), err_msg=reader)


def test_jsonl_round_trips_with_top_lists_and_embeddings(odd, tmp_path):
    root, meta, table = odd
    out = export(meta, tmp_path / "meta.jsonl", "--top", "--embedding")
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == table.num_rows + 1, "one object per line"
    read = [json.loads(line) for line in lines[:-1]]
    assert {os.fsencode(decode_path(r["path"])) for r in read} == on_disk(root)
    for got, want in zip(read, table.to_pylist(), strict=True):
        assert got["path"] == want["path"] and got["status"] == want["status"]
        if want["embedding"] is None:
            assert got["embedding"] is None and got["style_top"] is None
            continue
        np.testing.assert_array_equal(np.float32(got["embedding"]), want["embedding"])
        assert [t["label"] for t in got["style_top"]] == [t["label"] for t in want["style_top"]]
        assert [np.float32(t["score"]) for t in got["style_top"]] == [
            np.float32(t["score"]) for t in want["style_top"]]
    for reader, paths in (
        ("pandas", pd.read_json(out, lines=True, dtype={"path": str})["path"].tolist()),
        ("polars", pl.read_ndjson(out)["path"].to_list()),
        ("duckdb", [r[0] for r in duckdb.sql(f"SELECT path FROM read_json('{out}')").fetchall()]),
    ):
        assert paths == table.column("path").to_pylist(), reader


def test_csv_with_nested_columns_holds_json_text(odd, tmp_path):
    _, meta, table = odd
    out = export(meta, tmp_path / "nested.csv", "--top", "--embedding")
    with open(out, newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    for got, want in zip(read, table.to_pylist(), strict=True):
        if want["embedding"] is None:
            assert got["embedding"] == ""
            continue
        np.testing.assert_array_equal(np.float32(json.loads(got["embedding"])), want["embedding"])
        assert [t["label"] for t in json.loads(got["genre_top"])] == [
            t["label"] for t in want["genre_top"]]


def test_write_without_a_target_or_meta_is_refused(odd, tmp_path):
    _, meta, _ = odd
    result = CliRunner().invoke(app, ["write", str(meta)])
    assert result.exit_code == 2 and "--xmp" in result.output
    result = CliRunner().invoke(app, ["write", str(tmp_path), "--csv", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "without .parquet files" in result.output
    assert not (tmp_path / "x.csv").exists()
