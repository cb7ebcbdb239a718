"""``artylyze write`` on hostile and unlucky input (issue #24): whatever sits at a sidecar's
path, names with terminal escapes, a wrong --root, broken path escapes, formula cells for
spreadsheets, deep or huge JSON in the metadata; and records whose names start with a tab.
Each case ends in a per-file failure line or a clear refusal, never "internal error"."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_index_support import write_meta
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata.records import RecordSpec, load_records
from artylyze.store import BadPathError, decode_path

STYLES = ("Baroque", "Cubism")
OSC = "\x1b]0;pwned\x07"  # retitles a terminal
FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "@SUM(1)", "-1+1", "\tTAB",
            "\rCR"]


def collection(tmp: Path, names: list[str], extra: dict | None = None,
               bundle: dict | None = None) -> Path:
    """Real images named ``names`` under tmp/c, and a meta.parquet of them (sure labels)."""
    root = tmp / "c"
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 30, 30)).save(path, "PNG")
    vectors = np.eye(len(names), 4, dtype=np.float32) + 0.1
    styles = [STYLES[i % 2] for i in range(len(names))]
    return write_meta(tmp / "meta.parquet", names, vectors, {"style": styles},
                      {"style": STYLES}, "m@1", root, extra=extra, bundle=bundle)


def run(*args: str) -> object:
    result = CliRunner().invoke(app, list(args))
    assert "internal error" not in result.output, result.output
    return result


@pytest.mark.parametrize("what", ["fifo", "dev_zero", "sparse_3gb", "folder"])
def test_only_a_regular_sidecar_of_sane_size_is_read(tmp_path, what):
    meta = collection(tmp_path, ["a.png", "b.png"])
    target = tmp_path / "c" / "a.png.xmp"
    if what == "fifo":
        os.mkfifo(target)  # reading it would wait for a writer forever
    elif what == "dev_zero":
        target.symlink_to("/dev/zero")
    elif what == "sparse_3gb":
        with open(target, "wb") as f:
            f.truncate(3 * 1024**3)  # no disk used, but read_bytes() would need 3 GB
    else:
        target.mkdir()
    result = run("write", str(meta), "--xmp")
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "a.png.xmp" in lines[0] and "left as it was" in lines[0], lines
    assert (tmp_path / "c" / "b.png.xmp").is_file(), "the run went on"
    assert "wrote 1 XMP sidecars" in result.stdout


def test_failure_lines_escape_names_one_line_each(tmp_path):
    names = [f"t{OSC}itle.png", "new\nline.png"]
    meta = collection(tmp_path, names)
    for name in names:
        os.mkfifo(tmp_path / "c" / (name + ".xmp"))
    result = run("write", str(meta), "--xmp")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(ln.startswith("error: ") for ln in lines), lines
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\\x1b]0;pwned\\x07" in result.stderr and "new\\nline.png" in result.stderr


def test_a_wrong_root_is_refused_not_silently_empty(tmp_path):
    meta = collection(tmp_path, ["a.png", "b.png"])
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    result = run("write", str(meta), "--xmp", "--root", str(wrong))
    assert result.exit_code == 2
    assert "none of the 2 tagged images is under" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(wrong.rglob("*.xmp"))


@pytest.mark.parametrize("bad", ["bad\\xZZ.png", "trailing\\x", "\\x00.png", "half\\x4"])
def test_broken_escapes_are_one_failure_line_each(tmp_path, bad):
    meta = collection(tmp_path, ["a.png", bad])  # the file exists under the literal name
    result = run("write", str(meta), "--xmp")
    assert result.exit_code == 1, result.output
    assert "broken \\xHH escape" in result.stderr and len(result.stderr.splitlines()) == 1
    assert (tmp_path / "c" / "a.png.xmp").is_file()
    for path in ("bad\\xZZ.png", "trailing\\x", "\\x00.png", "half\\x4"):
        with pytest.raises(BadPathError):
            decode_path(path)
    assert decode_path("ok\\xe9\\\\.png") == os.fsdecode(b"ok\xe9\\.png")


def test_csv_cells_that_spreadsheets_would_evaluate_are_neutralised(tmp_path):
    names = [f"{f}.png" if not f.startswith(("\t", "\r")) else f"{f[0]}x{f[1:]}.png"
             for f in FORMULAS]
    ids = [*FORMULAS[:-1], "id\x00nul"]
    meta = collection(tmp_path, names, extra={"record_id": ids})
    safe, raw, jsonl = tmp_path / "safe.csv", tmp_path / "raw.csv", tmp_path / "all.jsonl"
    assert run("write", str(meta), "--csv", str(safe), "--jsonl", str(jsonl)).exit_code == 0
    assert run("write", str(meta), "--csv", str(raw), "--csv-raw").exit_code == 0
    with open(safe, newline="", encoding="utf-8") as f:
        cells = list(csv.DictReader(f))
    for row, name, rid in zip(cells, names, ids, strict=True):
        for got, want in ((row["path"], name), (row["record_id"], rid)):
            if want[0] in "=+-@\t\r":
                assert got == "'" + want.replace("\x00", "\\x00")
            else:
                assert got == want.replace("\x00", "\\x00")
            assert got[0] not in "=+-@\t\r"
    assert "\x00" not in safe.read_text(encoding="utf-8")
    with open(raw, newline="", encoding="utf-8") as f:
        exact = list(csv.DictReader(f))
    assert [r["path"] for r in exact] == names and [r["record_id"] for r in exact] == ids
    objects = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [o["path"] for o in objects] == names and [o["record_id"] for o in objects] == ids


@pytest.mark.parametrize("bundle", ["[" * 100_000 + "]" * 100_000, '{"n": ' + "9" * 5000 + "}"],
                         ids=["deep", "long_number"])
def test_hostile_bundle_json_in_the_metadata(tmp_path, bundle):
    meta = collection(tmp_path, ["a.png"])
    table = pq.read_table(meta)
    md = dict(table.schema.metadata)
    md[b"artylyze.bundle"] = bundle.encode()
    pq.write_table(table.replace_schema_metadata(md), meta)
    result = run("write", str(meta), "--xmp", "--csv", str(tmp_path / "x.csv"))
    assert result.exit_code == 0, result.output  # the tasks are read from the columns
    result = run("index", "build", str(meta), "--out", str(tmp_path / "idx"))
    assert result.exit_code == 2 and "artylyze.bundle metadata" in result.stderr, result.output


def test_a_stopped_write_says_to_run_write_again(tmp_path, monkeypatch):
    meta = collection(tmp_path, ["a.png"])

    def stop(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("artylyze.metadata.sidecar.write_sidecars", stop)
    result = run("write", str(meta), "--xmp")
    assert result.exit_code == 130
    assert "run `write` again" in result.stderr and "`tag` resumes" not in result.stderr


def test_a_record_file_name_may_start_with_a_tab(tmp_path):
    table = tmp_path / "records.csv"
    table.write_text('id,file\nR1,"\tleading-tab.jpg"\nR2,plain.jpg\nR3, padded.jpg \n',
                     encoding="utf-8")
    records = load_records(RecordSpec(table))
    assert records.lookup("\tleading-tab.jpg") == "R1"
    assert records.lookup("leading-tab.jpg") == "R1"  # a stripped name still finds it
    assert records.lookup("plain.jpg") == "R2" and records.lookup("padded.jpg") == "R3"
    assert records.unmatched == 0


@pytest.mark.parametrize("line", ["[" * 100_000 + "]" * 100_000,
                                  '{"id": ' + "9" * 5000 + ', "file": "a.jpg"}'],
                         ids=["deep", "long_number"])
def test_hostile_json_lines_in_records_are_a_clear_refusal(tmp_path, line):
    from artylyze.metadata.records import RecordsError

    table = tmp_path / "records.jsonl"
    table.write_text('{"id": "R1", "file": "b.jpg"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(RecordsError, match="line 2: not usable JSON"):
        load_records(RecordSpec(table))


def test_running_out_of_memory_is_a_clear_refusal(tmp_path, monkeypatch):
    meta = collection(tmp_path, ["a.png"])

    def too_big(*_args: object, **_kw: object) -> None:
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr("artylyze.metadata.sidecar.write_sidecars", too_big)
    result = run("write", str(meta), "--xmp")
    assert result.exit_code == 2 and "out of memory (std::bad_alloc)" in result.stderr
