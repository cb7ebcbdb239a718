"""Museum records joined by file name: ``tag --records``, ``dataset build --records`` and
``similar --json`` carry the museum's id (``record_id``), on the real example paintings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tagged_examples import EXAMPLES, RENOIR, copy_examples, tag
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata.records import RecordsError, RecordSpec, load_records
from artylyze.metadata.records_attach import attach_records

PISSARRO = "camille-pissarro_flock-of-sheep-in-a-field-after-the-harvest-1889.jpg"
REMBRANDT = "rembrandt_a-beggar-and-a-companion-piece-turned-to-the-right-1634.jpg"


def records_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    pd.DataFrame(rows, columns=["accession", "image"]).to_csv(path, index=False)
    return path


def spec(table: Path) -> RecordSpec:
    return RecordSpec(table, id_column="accession", file_column="image")


def test_file_names_match_from_the_most_specific_form(tmp_path):
    table = records_csv(tmp_path / "r.csv", [
        ("007", "a.jpg"),  # a bare name
        ("1985.52.10", "scans/b.jpg"),  # a relative path
        ("X-1", r"museum\scans\c.jpg"),  # from a parent folder, Windows separators
        ("X-2", "./d/e.jpg"),
        ("X-3", "one/f.jpg"), ("X-4", "two/f.jpg"),  # f.jpg alone is ambiguous
        ("", "g.jpg"), ("X-5", ""),
    ])
    records = load_records(spec(table))
    assert (records.rows, records.skipped) == (8, 2)
    assert records.lookup("deep/down/a.jpg") == "007", "zeros kept: ids are text"
    assert records.lookup("scans/b.jpg") == "1985.52.10"
    assert records.lookup("scans/c.jpg") == "X-1"
    assert records.lookup("d/e.jpg") == "X-2"
    assert records.lookup("two/f.jpg") == "X-4"
    assert records.lookup("f.jpg") is None
    assert records.lookup("b.jpg") == "1985.52.10", "the one record that ends so"
    assert records.lookup("elsewhere/b.jpg", root="/mnt/art") is None
    assert records.unmatched == 1  # one/f.jpg


def test_a_table_that_cannot_join_is_refused_with_what_it_has(tmp_path):
    clash = records_csv(tmp_path / "clash.csv", [("A", "x.jpg"), ("B", "x.jpg")])
    with pytest.raises(RecordsError, match=r"two different ids: 'x.jpg' \(A, B\)"):
        load_records(spec(clash))
    with pytest.raises(RecordsError, match="no column 'number'.*accession, image"):
        load_records(RecordSpec(clash, id_column="number", file_column="image"))
    text = tmp_path / "records.txt"
    text.write_bytes(clash.read_bytes())
    with pytest.raises(RecordsError, match="must be one of .csv, .parquet"):
        load_records(spec(text))


def test_parquet_and_json_lines_tables_give_text_ids(tmp_path):
    pq.write_table(pa.table({"accession": [12, 13], "image": ["a.jpg", "b.jpg"]}),
                   tmp_path / "r.parquet")
    (tmp_path / "r.jsonl").write_text('{"accession": 12, "image": "a.jpg"}\n'
                                      '{"accession": "1985.1", "image": "b.jpg"}\n')
    assert load_records(spec(tmp_path / "r.parquet")).lookup("a.jpg") == "12"
    assert load_records(spec(tmp_path / "r.jsonl")).lookup("b.jpg") == "1985.1"


@pytest.fixture()
def museum(tmp_path: Path) -> tuple[Path, Path]:
    """(collection, records.csv): the examples, three of them in the museum's records."""
    collection = tmp_path / "collection"
    copy_examples(collection)
    table = records_csv(tmp_path / "records.csv", [
        ("1985.52.1", RENOIR), ("2001.3", f"collection/{PISSARRO}"), ("0042", REMBRANDT),
        ("9999", "not-in-the-collection.jpg")])
    return collection, table


def tag_args(table: Path) -> tuple[str, ...]:
    return ("--records", str(table), "--id-column", "accession", "--file-column", "image")


def ids(meta: Path) -> dict[str, str | None]:
    t = pq.read_table(meta)
    return dict(zip(t.column("path").to_pylist(), t.column("record_id").to_pylist(),
                    strict=True))


def test_tag_records_the_ids_and_keeps_them_on_later_runs(museum, tmp_path):
    collection, table = museum
    meta = tmp_path / "meta.parquet"
    result = CliRunner().invoke(app, ["tag", str(collection), "--out", str(meta),
                                      *tag_args(table)])
    assert result.exit_code == 0, result.output
    assert "3 of 12 rows matched; 1 record names no file here" in result.output
    schema = pq.read_schema(meta)
    assert schema.names[:2] == ["path", "record_id"]
    assert b"artylyze.bundle" in schema.metadata, "tag's metadata is kept"
    want = {RENOIR: "1985.52.1", PISSARRO: "2001.3", REMBRANDT: "0042"}
    assert {p: i for p, i in ids(meta).items() if i} == want

    stamp = meta.stat().st_mtime_ns
    again = tag(collection, meta, *tag_args(table))
    assert meta.stat().st_mtime_ns == stamp, "nothing new: the output is not rewritten"
    assert again == "" or "record ids up to date" in again

    os.utime(collection / RENOIR)  # a touched file: the merge rewrites the output
    tag(collection, meta)  # no --records: the table the output recorded is used again
    assert {p: i for p, i in ids(meta).items() if i} == want

    records_csv(table, [("1985.52.1-a", RENOIR)])
    out = CliRunner().invoke(app, ["tag", str(collection), "--out", str(meta)])
    assert out.exit_code == 0 and "record ids from" in out.output
    assert {p: i for p, i in ids(meta).items() if i} == {RENOIR: "1985.52.1-a"}

    os.utime(collection / PISSARRO)
    table.unlink()
    gone = CliRunner().invoke(app, ["tag", str(collection), "--out", str(meta)])
    assert gone.exit_code == 0 and "records table" in gone.output and "is gone" in gone.output


def test_a_bad_records_table_fails_before_tagging(museum, tmp_path):
    collection, table = museum
    meta = tmp_path / "meta.parquet"
    result = CliRunner().invoke(app, ["tag", str(collection), "--out", str(meta),
                                      "--records", str(table), "--id-column", "number"])
    assert result.exit_code == 2 and "no column 'number'" in result.output
    assert not meta.exists()


def test_part_folders_get_ids_in_every_part(museum, tmp_path):
    collection, table = museum
    out = tmp_path / "meta"
    tag(collection, f"{out}/", *tag_args(table))
    parts = sorted(out.glob("*.parquet"))
    assert parts and all(pq.read_schema(p).names[1] == "record_id" for p in parts)
    report = attach_records(f"{out}/", load_records(spec(table)))
    assert (report.files_rewritten, report.matched) == (0, 3)


def test_dataset_build_carries_the_ids(museum, tmp_path):
    _, table = museum
    manifest = tmp_path / "manifest.parquet"
    result = CliRunner().invoke(app, [
        "dataset", "build", str(EXAMPLES), "--labels", str(EXAMPLES / "labels.csv"),
        "--out", str(manifest), "--min-count", "1", *tag_args(table)])
    assert result.exit_code == 0, result.output
    assert "record ids: 3 of 12 images matched" in result.output
    df = pd.read_parquet(manifest)
    assert df.set_index("path").loc[RENOIR, "record_id"] == "1985.52.1"
    assert df["record_id"].notna().sum() == 3


def test_similar_json_returns_the_ids(museum, tmp_path):
    collection, table = museum
    meta = tmp_path / "meta.parquet"
    tag(collection, meta, *tag_args(table))
    index = tmp_path / "index"
    built = CliRunner().invoke(app, ["index", "build", str(meta), "--out", str(index)])
    assert built.exit_code == 0, built.output
    result = CliRunner().invoke(app, ["similar", str(collection / PISSARRO), "--index",
                                      str(index), "-k", "11", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)[0]
    assert answer["record_id"] == "2001.3"
    found = {r["path"]: r.get("record_id") for r in answer["results"]}
    assert found[RENOIR] == "1985.52.1" and found[REMBRANDT] == "0042"
    assert sum(v is not None for v in found.values()) == 2
