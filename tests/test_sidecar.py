"""``artylyze write --xmp``: sidecars read back with ExifTool, a reader no one here wrote.

The example paintings are tagged by the shipped model; what a sidecar must say is worked
out from each row of meta.parquet, so the tests hold for any model. ExifTool comes from
Debian's libimage-exiftool-perl (``.ci/run`` installs it); a missing one fails, not skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tagged_examples import RENOIR, copy_examples, tag
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata.sidecar import SidecarOptions, readable, write_sidecars
from artylyze.metadata.xmp import DC, RDF, Packet, XmpError, q, values
from artylyze.model.bundle import Manifest, Task
from artylyze.model.predict import predictions
from artylyze.store import build_row, decode_path, make_schema, rows_to_table

MIN_SCORE, CREATOR_MIN, DATE_MAX_WIDTH = 0.5, 0.8, 40  # the defaults of `artylyze write`


def exiftool(*files: Path | bytes, args: tuple[str, ...] = ()) -> list[dict]:
    """ExifTool's reading of each file (``-G1``: keys like ``XMP-iptcExt:ArtworkCreator``)."""
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool not found: apt-get install libimage-exiftool-perl (.ci/run does)")
    done = subprocess.run(["exiftool", "-json", "-G1", *args, *map(os.fsencode, files)],
                          capture_output=True, check=True)
    return json.loads(done.stdout)


def items(value: object) -> list[str]:
    """ExifTool writes a one-item list as a plain value."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def exiftool_edit(file: Path, *assignments: str) -> None:
    """Change a sidecar the way a curator's tool would."""
    subprocess.run(["exiftool", "-q", "-overwrite_original", *assignments, str(file)],
                   check=True)


def write(meta: Path, *extra: str) -> CliRunner:
    return CliRunner().invoke(app, ["write", str(meta), "--xmp", *extra])


@pytest.fixture()
def tagged(tmp_path: Path) -> tuple[Path, Path]:
    """(collection, meta.parquet) of the example paintings, in a fresh temp folder."""
    collection = tmp_path / "collection"
    copy_examples(collection)
    meta = tmp_path / "meta.parquet"
    tag(collection, meta)
    return collection, meta


def rows(meta: Path) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(meta).to_pylist()}


def sure(row: dict, task: str, threshold: float = MIN_SCORE) -> bool:
    """The writing policy: score at the threshold, and the model's own confident flag where it
    has one (v2)."""
    if row[task] is None or row[f"{task}_score"] < threshold:
        return False
    return f"{task}_confident" not in row or bool(row[f"{task}_confident"])


def sidecar(collection: Path, path: str) -> Path:
    return collection / (decode_path(path) + ".xmp")


def test_exiftool_reads_the_artwork_fields_keywords_and_scores(tagged):
    collection, meta = tagged
    originals = {p.name: p.read_bytes() for p in collection.iterdir()}
    result = write(meta)
    assert result.exit_code == 0, result.output
    assert "wrote 12 XMP sidecars" in result.output
    table = rows(meta)
    files = [sidecar(collection, p) for p in table]
    read = exiftool(*files)
    structs = exiftool(*files, args=("-struct",))  # lists of structures as JSON lists
    for (path, row), tags, struct in zip(table.items(), read, structs, strict=True):
        assert tags["XMP-artylyze:MachineGenerated"] is True  # JSON true
        assert tags["XMP-artylyze:Model"] == row["model"]
        assert tags["XMP-artylyze:Style"] == row["style"]
        assert float(tags["XMP-artylyze:StyleScore"]) == pytest.approx(row["style_score"],
                                                                       abs=5e-5)
        assert [(t["Label"], t["Score"]) for t in struct["XMP-artylyze:StyleTop"]] == [
            (t["label"], round(t["score"], 4)) for t in row["style_top"]]
        style = readable("style", row["style"])
        assert items(tags.get("XMP-iptcExt:ArtworkStylePeriod")) == (
            [style] if sure(row, "style") else []), path
        assert "XMP-iptcExt:ArtworkCreator" not in tags, "never without --suggest-creator"
        circa = ([] if not sure(row, "period") else [f"{row['year_low']}-{row['year_high']}"]
                 if row.get("year_low") is not None else [row["period"]])  # v2: the interval
        dated = sure(row, "period") and row["year_high"] - row["year_low"] <= DATE_MAX_WIDTH
        assert items(tags.get("XMP-iptcExt:ArtworkDateCreated")) == (
            [str(row["year"])] if dated else []), path
        assert items(tags.get("XMP-iptcExt:ArtworkCircaDateCreated")) == circa, path
        keywords = [readable(t, row[t]) for t in ("style", "genre") if sure(row, t)]
        assert items(tags.get("XMP-dc:Subject")) == keywords
        assert "XMP-xmp:MetadataDate" in tags
    renoir = read[list(table).index(RENOIR)]
    assert renoir["XMP-iptcExt:ArtworkStylePeriod"] == "Impressionism"  # 0.97 by the shipped model
    assert "Impressionism" in items(renoir["XMP-dc:Subject"])
    assert {p.name: p.read_bytes() for p in collection.iterdir() if p.suffix != ".xmp"} == \
        originals, "originals are never touched"
    assert write(meta, "--suggest-creator").exit_code == 0
    for (path, row), tags in zip(table.items(), exiftool(*files), strict=True):
        creator = sure(row, "artist", CREATOR_MIN)
        assert items(tags.get("XMP-iptcExt:ArtworkCreator")) == (
            [readable("artist", row["artist"])] if creator else []), path


def test_only_changed_rows_are_rewritten(tagged):
    collection, meta = tagged
    assert write(meta).exit_code == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in collection.glob("*.xmp")}
    again = write(meta)
    assert again.exit_code == 0
    assert "wrote 0 XMP sidecars" in again.output and "12 up to date" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in collection.glob("*.xmp")} == stamps

    table = pq.read_table(meta)
    changed = pc.if_else(pc.equal(table.column("path"), RENOIR), "Rococo", table.column("style"))
    table = table.set_column(table.schema.get_field_index("style"), "style", changed)
    edited = meta.with_name("edited.parquet")
    pq.write_table(table, edited)
    third = write(edited)
    assert "wrote 1 XMP sidecars" in third.output and "11 up to date" in third.output
    assert exiftool(collection / f"{RENOIR}.xmp")[0]["XMP-artylyze:Style"] == "Rococo"
    forced = write(edited, "--force")
    assert "wrote 12 XMP sidecars" in forced.output


def test_other_tools_fields_survive_and_their_edits_win(tagged, tmp_path):
    collection, meta = tagged
    target = collection / f"{RENOIR}.xmp"
    subprocess.run(["exiftool", "-q", "-o", str(target), "-XMP-dc:Subject=landscape",
                    "-XMP-iptcExt:ArtworkCreator=Claude Monet",
                    "-XMP-iptcExt:ArtworkTitle=Bather",
                    "-XMP-xmp:Rating=3", "-XMP-photoshop:Credit=Museum of Tests"], check=True)
    assert write(meta).exit_code == 0
    tags = exiftool(target)[0]
    assert tags["XMP-xmp:Rating"] == 3
    assert tags["XMP-photoshop:Credit"] == "Museum of Tests"
    assert tags["XMP-iptcExt:ArtworkTitle"] == "Bather"
    assert tags["XMP-iptcExt:ArtworkCreator"] == "Claude Monet", "a creator entered is kept"
    assert tags["XMP-iptcExt:ArtworkStylePeriod"] == "Impressionism"
    assert items(tags["XMP-dc:Subject"])[:2] == ["landscape", "Impressionism"]

    # a curator adds a keyword and corrects the style period; then the model's label changes
    exiftool_edit(target, "-XMP-dc:Subject+=checked",
                  "-XMP-iptcExt:ArtworkStylePeriod=Post-Impressionism")
    table = pq.read_table(meta)
    changed = pc.if_else(pc.equal(table.column("path"), RENOIR), "Rococo", table.column("style"))
    edited = tmp_path / "edited.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("style"), "style", changed),
                   edited)
    assert write(edited).exit_code == 0
    tags = exiftool(target)[0]
    subject = items(tags["XMP-dc:Subject"])
    assert "landscape" in subject and "checked" in subject
    assert "Rococo" in subject and "Impressionism" not in subject, "ArtyLyze's old keyword goes"
    assert tags["XMP-iptcExt:ArtworkStylePeriod"] == "Post-Impressionism", "the curator wins"
    assert tags["XMP-artylyze:Style"] == "Rococo"
    assert tags["XMP-xmp:Rating"] == 3 and tags["XMP-iptcExt:ArtworkTitle"] == "Bather"


def test_a_sidecar_that_is_not_xmp_is_left_alone(tagged):
    collection, meta = tagged
    broken = collection / f"{RENOIR}.xmp"
    broken.write_bytes(b"<not xmp")
    result = write(meta)
    assert result.exit_code == 1
    assert RENOIR in result.output and "left as it was" in result.output
    assert broken.read_bytes() == b"<not xmp"
    assert len(list(collection.glob("*.xmp"))) == 12


def test_sidecar_dir_mirrors_the_collection_and_leaves_it_alone(tagged, tmp_path):
    collection, meta = tagged
    out = tmp_path / "sidecars"
    result = CliRunner().invoke(app, ["write", str(meta), "--sidecar-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert not list(collection.glob("*.xmp"))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p}.xmp" for p in rows(meta))


def test_odd_file_names_get_sidecars_exiftool_reads(tmp_path):
    collection = tmp_path / "odd"
    collection.mkdir()
    src = copy_examples(tmp_path / "src")[0]
    names = [b"caf\xe9 (latin-1).jpg", b"comma, and \"quotes\".jpg", b"new\nline.jpg"]
    for name in names:
        shutil.copyfile(tmp_path / "src" / src, os.path.join(os.fsencode(collection), name))
    meta = tmp_path / "odd.parquet"
    tag(collection, meta)
    assert write(meta).exit_code == 0
    files = [os.path.join(os.fsencode(collection), n + b".xmp") for n in names]
    styles = {r["style"] for r in rows(meta).values()}  # three copies of one painting
    assert len(styles) == 1
    assert [t["XMP-artylyze:Style"] for t in exiftool(*files)] == [styles.pop()] * 3


DECADES = tuple(str(y) for y in range(1800, 1900, 10))


def v2_meta(collection: Path, out: Path, names: list[str]) -> Path:
    """meta.parquet rows as the store makes them for a Model v2 bundle (a year head, confident
    thresholds, novelty), for images in ``collection``: the first sure of its style, the
    second not."""
    man = Manifest(name="v2", backbone="cnn3", input_size=32, resize="stretch",
                   tasks=(Task("style", ("Impressionism", "Rococo")),
                          Task("year", DECADES, "year", 10)),
                   embedding_dim=4, model_sha256="0" * 64, extra={"calibration": {
                       "confident": {"style": 0.8, "period": 0.5},
                       "novelty": {"method": "centroid", "centres": [[1, 0, 0, 0]]}}})
    year = np.zeros((2, len(DECADES)), np.float32)
    year[:, 8] = 1.0  # all mass in the 1880s
    outputs = {"embedding": np.eye(2, 4, dtype=np.float32),
               "style": np.array([[0.9, 0.1], [0.7, 0.3]], np.float32), "year": year}
    now = datetime.now(timezone.utc)
    rows = [build_row(name, 1, 1, sha256="0" * 64, model=man.model_id, tagged_at=now,
                      prediction=p)
            for name, p in zip(names, predictions(outputs, man, 2), strict=True)]
    pq.write_table(rows_to_table(rows, make_schema(man, str(collection))), out)
    return out


def test_model_v2_dates_and_confident_flags_fill_their_iptc_fields(tagged, tmp_path):
    collection, _ = tagged
    pissarro = "camille-pissarro_flock-of-sheep-in-a-field-after-the-harvest-1889.jpg"
    meta = v2_meta(collection, tmp_path / "v2.parquet", [RENOIR, pissarro])
    row = rows(meta)[RENOIR]
    assert row["style_confident"] and not rows(meta)[pissarro]["style_confident"]
    assert write(meta, "--min-score", "0.5").exit_code == 0
    sure, unsure = exiftool(collection / f"{RENOIR}.xmp", collection / f"{pissarro}.xmp")
    assert str(sure["XMP-iptcExt:ArtworkDateCreated"]) == str(row["year"])
    assert sure["XMP-iptcExt:ArtworkCircaDateCreated"] == f"{row['year_low']}-{row['year_high']}"
    assert sure["XMP-iptcExt:ArtworkStylePeriod"] == "Impressionism"
    assert sure["XMP-artylyze:Period"] == row["period"] == "1850-1899"
    assert sure["XMP-artylyze:StyleConfident"] is True
    assert sure["XMP-artylyze:Novelty"] == pytest.approx(row["novelty"], abs=1e-6)
    assert "ArtyLyze|period|1850-1899" in items(sure["XMP-lr:HierarchicalSubject"])
    assert "XMP-iptcExt:ArtworkStylePeriod" not in unsure, "0.7 >= --min-score, yet not sure"
    assert unsure["XMP-artylyze:StyleConfident"] is False


def test_record_ids_go_into_the_source_inventory_number(tagged, tmp_path):
    collection, meta = tagged
    (tmp_path / "records.csv").write_text(f"id,file\n1985.52.1,{RENOIR}\n")
    tag(collection, meta, "--records", str(tmp_path / "records.csv"))
    assert write(meta).exit_code == 0
    tags = exiftool(collection / f"{RENOIR}.xmp")[0]
    assert str(tags["XMP-iptcExt:ArtworkSourceInventoryNo"]) == "1985.52.1"
    assert str(tags["XMP-artylyze:RecordId"]) == "1985.52.1"


def test_error_rows_and_missing_images_get_no_sidecar(tagged):
    collection, meta = tagged
    (collection / RENOIR).unlink()
    (collection / "broken.jpg").write_bytes(b"not a jpeg")
    tag(collection, meta)
    report = write_sidecars(meta, SidecarOptions())
    assert (report.not_ok, report.missing, report.written) == (1, 1, 11)
    assert not (collection / "broken.jpg.xmp").exists()


PACKET = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:my="http://example.org/my/1/">
  <rdf:Description rdf:about="" my:rating="5" dc:format="image/jpeg">
    <my:place><rdf:Description my:city="Paris"/></my:place>
    <dc:subject><rdf:Bag><rdf:li>a</rdf:li><rdf:li>b</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
</rdf:RDF>"""


def test_packets_of_other_shapes_keep_their_properties_and_prefixes():
    packet = Packet.parse(PACKET)
    desc = packet.description()
    assert values(desc, q(DC, "subject")) == ["a", "b"]
    assert values(desc, q(DC, "format")) == ["image/jpeg"]
    data = packet.to_bytes()
    assert b'xmlns:my="http://example.org/my/1/"' in data and b'my:rating="5"' in data
    again = Packet.parse(data)
    place = again.description().find(q("http://example.org/my/1/", "place"))
    assert place.find(q(RDF, "Description")).get(q("http://example.org/my/1/", "city")) == "Paris"
    with pytest.raises(XmpError, match="DOCTYPE"):
        Packet.parse(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    with pytest.raises(XmpError, match="not an XMP packet"):
        Packet.parse(b"<html/>")
