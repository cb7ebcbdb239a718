"""Every output honours people: a human label from the review store shows in CSV, JSON lines,
XMP sidecars (read back by ExifTool) and the report's labels, survives `tag --full`, and
follows a file that was moved or renamed (reviews are keyed by sha256)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tagged_examples import RENOIR, copy_examples, tag
from test_sidecar import exiftool, items
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata.metafile import open_meta
from artylyze.review import ReviewStore, review_path

OTHER = "marc-chagall_red-jew-1915.jpg"


def run(*args: str) -> str:
    result = CliRunner().invoke(app, [*args])
    assert result.exit_code == 0, result.output
    return result.output


def another_style(row: dict) -> str:
    """A style label the model did not give this row (a real class of the shipped model)."""
    top = [x["label"] for x in row["style_top"]]
    from artylyze.model.bundle import load_bundle

    classes = load_bundle().manifest.labels("style")
    return next(c for c in classes if c not in top)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The examples tagged, one style corrected and one confirmed by CSV import."""
    tmp = tmp_path_factory.mktemp("reviewed")
    collection = tmp / "collection"
    copy_examples(collection)
    meta = tmp / "meta.parquet"
    tag(collection, meta)
    rows = {r["path"]: r for r in pq.read_table(meta).to_pylist()}
    corrected = another_style(rows[RENOIR])
    labels = tmp / "labels.csv"
    labels.write_text("path,task,label\n"
                      f"{RENOIR},style,{corrected}\n"
                      f"{OTHER},style,{rows[OTHER]['style']}\n"
                      f"{OTHER},object_type,painting\n")
    out = run("review", "import", str(labels), "--meta", str(meta), "--reviewer", "Ann Curator")
    assert "imported 3 labels (1 confirm, 1 correct, 1 set)" in out
    return {"tmp": tmp, "collection": collection, "meta": meta, "rows": rows,
            "corrected": corrected}


def flat(meta: Path, tmp: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    run("write", str(meta), "--csv", str(tmp / "out.csv"), "--jsonl", str(tmp / "out.jsonl"))
    with open(tmp / "out.csv", newline="") as f:
        as_csv = {r["path"]: r for r in csv.DictReader(f)}
    as_json = {}
    for line in (tmp / "out.jsonl").read_text().splitlines():
        r = json.loads(line)
        as_json[r["path"]] = r
    return as_csv, as_json


def test_csv_and_jsonl_carry_the_human_label_and_its_source(reviewed: dict) -> None:
    as_csv, as_json = flat(reviewed["meta"], reviewed["tmp"])
    machine = reviewed["rows"][RENOIR]
    for out in (as_csv[RENOIR], as_json[RENOIR]):
        assert out["style"] == reviewed["corrected"]
        assert out["style_source"] == "human"
        assert out["style_reviewer"] == "Ann Curator"
        assert float(out["style_score"]) == pytest.approx(machine["style_score"], abs=1e-6)
        assert out["genre_source"] == "model"
    assert as_json[OTHER]["object_type"] == "painting"
    assert as_json[OTHER]["object_type_source"] == "human"
    untouched = next(p for p in as_json if p not in (RENOIR, OTHER))
    assert as_json[untouched]["style_source"] == "model"
    assert as_json[untouched]["style"] == reviewed["rows"][untouched]["style"]
    assert as_csv[untouched]["object_type"] == ""  # null: nobody said


def test_xmp_holds_the_human_label_whatever_its_score(reviewed: dict) -> None:
    run("write", str(reviewed["meta"]), "--xmp", "--sidecar-dir",
        str(reviewed["tmp"] / "xmp"))
    renoir, = exiftool(reviewed["tmp"] / "xmp" / f"{RENOIR}.xmp")
    shown = reviewed["corrected"].replace("_", " ")
    assert items(renoir.get("XMP-iptcExt:ArtworkStylePeriod")) == [shown]
    assert shown in items(renoir.get("XMP-dc:Subject"))
    assert renoir["XMP-artylyze:Style"] == reviewed["corrected"]
    assert renoir["XMP-artylyze:StyleSource"] == "human"
    assert renoir["XMP-artylyze:StyleReviewedBy"] == "Ann Curator"
    assert renoir["XMP-artylyze:StyleReviewedAt"].startswith("20")
    assert renoir["XMP-artylyze:GenreSource"] == "model"
    assert str(renoir["XMP-artylyze:MachineGenerated"]) == "True"  # genre is still the model's
    other, = exiftool(reviewed["tmp"] / "xmp" / f"{OTHER}.xmp")
    assert other["XMP-artylyze:Object_type"] == "painting"
    assert other["XMP-artylyze:Object_typeSource"] == "human"


def test_the_report_reads_human_labels(reviewed: dict) -> None:
    from artylyze.index.collection import with_reviews
    from artylyze.index.entries import read_meta

    entries = with_reviews(read_meta(reviewed["meta"]), review_path(reviewed["meta"]))
    styles = dict(zip(entries.rows.column("path").to_pylist(),
                      entries.rows.column("style").to_pylist(), strict=True))
    assert styles[RENOIR] == reviewed["corrected"]


def test_a_human_label_survives_retagging_moves_and_renames(reviewed: dict) -> None:
    collection, meta = reviewed["collection"], reviewed["meta"]
    tag(collection, meta, "--full")
    assert pq.read_table(meta, columns=["style"]).num_rows == len(reviewed["rows"])
    # the machine's own file says the machine's label; the review store is separate
    machine = {r["path"]: r["style"] for r in pq.read_table(meta).to_pylist()}
    assert machine[RENOIR] == reviewed["rows"][RENOIR]["style"]
    (collection / "moved").mkdir()
    (collection / RENOIR).rename(collection / "moved" / "bather-renamed.jpg")
    tag(collection, meta, "--prune")
    _, as_json = flat(meta, reviewed["tmp"])
    assert RENOIR not in as_json
    moved = as_json["moved/bather-renamed.jpg"]
    assert moved["style"] == reviewed["corrected"]
    assert moved["style_source"] == "human"


def test_without_a_store_outputs_are_the_model_alone(tmp_path: Path, reviewed: dict) -> None:
    meta = open_meta(reviewed["meta"], review=None)
    assert "style_source" not in meta.names and meta.humans is None
    assert open_meta(reviewed["meta"]).review == review_path(reviewed["meta"])


def test_review_status_and_export(reviewed: dict) -> None:
    out = run("review", "status", "--meta", str(reviewed["meta"]))
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert lines["style"][1:5] == ["2", "1", "1", "0"]
    assert lines["style"][-1] == "50.0%"
    assert lines["object_type"][1:5] == ["1", "0", "0", "1"]
    target = reviewed["tmp"] / "export.csv"
    run("review", "export", "--meta", str(reviewed["meta"]), "--csv", str(target))
    with open(target, newline="") as f:
        exported = list(csv.DictReader(f))
    assert {(r["path"], r["task"], r["label"]) for r in exported} >= {
        (RENOIR, "style", reviewed["corrected"]), (OTHER, "object_type", "painting")}
    assert all(r["reviewer"] == "Ann Curator" for r in exported)


def test_a_bad_import_is_refused_whole(reviewed: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    good = reviewed["rows"][OTHER]["style"]
    bad.write_text(f"path,task,label\n{OTHER},style,{good}\nnope.jpg,style,Cubism\n"
                   f"{OTHER},style,Not_A_Style\n")
    with ReviewStore.open(review_path(reviewed["meta"])) as s:
        before = s.count()
    result = CliRunner().invoke(app, ["review", "import", str(bad), "--meta",
                                      str(reviewed["meta"]), "--reviewer", "x"])
    assert result.exit_code == 2
    assert "2 rows cannot be imported, nothing was" in result.output
    assert "line 3: no tagged work with path 'nope.jpg'" in result.output
    assert "'Not_A_Style' is not a style label" in result.output
    with ReviewStore.open(review_path(reviewed["meta"])) as s:
        assert s.count() == before


def test_write_review_names_another_store(reviewed: dict, tmp_path: Path) -> None:
    other_store, labels = tmp_path / "other.sqlite", tmp_path / "labels.csv"
    label = another_style(reviewed["rows"][OTHER])
    labels.write_text(f"path,task,label\n{OTHER},style,{label}\n")
    run("review", "import", str(labels), "--meta", str(reviewed["meta"]), "--reviewer", "Cy",
        "--review", str(other_store))
    run("write", str(reviewed["meta"]), "--jsonl", str(tmp_path / "out.jsonl"), "--review",
        str(other_store))
    rows = {r["path"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text()
                                      .splitlines())}
    assert rows[OTHER]["style"] == label and rows[OTHER]["style_reviewer"] == "Cy"
    assert "object_type" not in rows[OTHER]  # that one is only in the store beside meta
