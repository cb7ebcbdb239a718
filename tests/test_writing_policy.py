"""The writing policy (docs/writing-policy.md): nothing the model is unsure of, no creator
unless asked, no "another artist", no date without a confident one and nothing at all for a
non-artwork ever reaches a shared XMP field; read back with ExifTool. Rows are made by the
real :func:`predictions` from chosen head outputs, so each case is exactly the one named."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_sidecar import exiftool, items
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata import policy
from artylyze.model.bundle import Manifest, Task
from artylyze.model.predict import predictions
from artylyze.store import build_row, make_schema, rows_to_table

DECADES = tuple(str(y) for y in range(1800, 1900, 10))
SHARED = ("XMP-iptcExt:ArtworkStylePeriod", "XMP-iptcExt:ArtworkCreator",
          "XMP-iptcExt:ArtworkDateCreated", "XMP-iptcExt:ArtworkCircaDateCreated",
          "XMP-dc:Subject", "XMP-lr:HierarchicalSubject")
CONFIDENT = {"style": 0.6, "genre": 0.9, "artist": 0.6, "period": 0.6, "domain": 0.5}


def meta_of(out: Path, tasks: tuple[Task, ...], outputs: dict[str, np.ndarray],
            names: list[str]) -> Path:
    """meta.parquet of ``names`` as `artylyze tag` would store these head outputs."""
    man = Manifest(name="policy", backbone="cnn3", input_size=32, resize="stretch",
                   tasks=tasks, embedding_dim=4, model_sha256="0" * 64,
                   extra={"calibration": {"confident": CONFIDENT}})
    now = datetime.now(timezone.utc)
    preds = predictions({"embedding": np.zeros((len(names), 4), np.float32), **outputs}, man, 3)
    rows = [build_row(n, 1, 1, sha256="0" * 64, model=man.model_id, tagged_at=now,
                      prediction=p) for n, p in zip(names, preds, strict=True)]
    pq.write_table(rows_to_table(rows, make_schema(man, str(out.parent))), out)
    return out


def write(meta: Path, folder: Path, *extra: str) -> dict[str, dict]:
    result = CliRunner().invoke(app, ["write", str(meta), "--sidecar-dir", str(folder), *extra])
    assert result.exit_code == 0, result.output
    names = [r["path"] for r in pq.read_table(meta, columns=["path"]).to_pylist()]
    return dict(zip(names, exiftool(*(folder / f"{n}.xmp" for n in names)), strict=True))


def years(*mass: tuple[int, float]) -> np.ndarray:
    """Year-head probabilities: (decade index, mass) pairs."""
    p = np.zeros(len(DECADES), np.float32)
    for i, m in mass:
        p[i] = m
    return p


CASES = ("sure", "unsure", "below_min", "wide_date")


@pytest.fixture()
def cases(tmp_path: Path) -> Path:
    """One row per case. sure: every label confident, the date 1880s. unsure: genre 0.85 above
    --min-score yet under its confident bar, "Another artist" at 0.95, the period at 0.5.
    below_min: style, artist and period confident (0.65 >= 0.6) but under --min-score 0.7.
    wide_date:
    the period is confident (0.75) but the year interval spans most of the century."""
    tasks = (Task("style", ("Impressionism", "Rococo")), Task("genre", ("portrait", "landscape")),
             Task("artist", ("claude-monet", "Another_artist")), Task("year", DECADES, "year", 10))
    outputs = {
        "style": np.array([[0.95, 0.05], [0.55, 0.45], [0.65, 0.35], [0.95, 0.05]], np.float32),
        "genre": np.array([[0.95, 0.05], [0.85, 0.15], [0.55, 0.45], [0.95, 0.05]], np.float32),
        "artist": np.array([[0.9, 0.1], [0.05, 0.95], [0.65, 0.35], [0.9, 0.1]], np.float32),
        "year": np.stack([years((8, 1.0)), years(*((i, 0.1) for i in range(10))),
                          years((0, 0.35), (8, 0.65)),
                          years((0, 0.25), *((i, 0.15) for i in range(5, 10)))]),
    }
    return meta_of(tmp_path / "meta.parquet", tasks, outputs, [f"{c}.jpg" for c in CASES])


def test_only_confident_labels_at_min_score_reach_shared_fields(cases, tmp_path):
    rows = {r["path"]: r for r in pq.read_table(cases).to_pylist()}
    assert rows["unsure.jpg"]["artist"] == "Another_artist" and rows["unsure.jpg"][
        "artist_confident"], "the case needs a confident 'another artist'"
    below_min = rows["below_min.jpg"]
    assert below_min["style_confident"] and below_min["artist_confident"]
    assert below_min["period_confident"]
    assert rows["wide_date.jpg"]["period_confident"]
    tags = write(cases, tmp_path / "xmp", "--min-score", "0.7", "--suggest-creator")
    sure, unsure, below, wide = (tags[f"{c}.jpg"] for c in CASES)
    assert sure["XMP-iptcExt:ArtworkStylePeriod"] == "Impressionism"
    assert sure["XMP-iptcExt:ArtworkCreator"] == "Claude Monet"
    assert str(sure["XMP-iptcExt:ArtworkDateCreated"]) == str(rows["sure.jpg"]["year"])
    assert items(sure["XMP-dc:Subject"]) == ["Impressionism", "portrait"]
    for field in SHARED:
        assert field not in unsure, f"unsure row: {field} = {unsure.get(field)}"
        assert field not in below, f"below --min-score: {field} = {below.get(field)}"
    assert unsure["XMP-artylyze:Artist"] == "Another_artist"  # the namespace keeps everything
    assert below["XMP-artylyze:StyleConfident"] is True
    assert "XMP-iptcExt:ArtworkDateCreated" not in wide
    high, low = rows["wide_date.jpg"]["year_high"], rows["wide_date.jpg"]["year_low"]
    assert high - low > 40
    assert wide["XMP-iptcExt:ArtworkCircaDateCreated"] == f"{low}-{high}"
    assert wide["XMP-iptcExt:ArtworkCreator"] == "Claude Monet"


def test_no_creator_unless_asked_and_a_wider_date_when_allowed(cases, tmp_path):
    tags = write(cases, tmp_path / "xmp", "--min-score", "0.7", "--date-max-width", "100")
    assert all("XMP-iptcExt:ArtworkCreator" not in t for t in tags.values())
    wide = tags["wide_date.jpg"]
    assert "XMP-iptcExt:ArtworkDateCreated" in wide


def test_min_score_holds_for_a_model_without_confident_flags(tmp_path):
    tasks = (Task("style", ("Impressionism", "Rococo")),)
    man_out = {"style": np.array([[0.9, 0.1], [0.6, 0.4]], np.float32)}
    meta = meta_of(tmp_path / "meta.parquet", tasks, man_out, ["a.jpg", "b.jpg"])
    table = pq.read_table(meta)
    table = table.drop_columns([c for c in table.column_names if c.endswith("_confident")])
    pq.write_table(table, meta)
    tags = write(meta, tmp_path / "xmp", "--min-score", "0.7")
    assert tags["a.jpg"]["XMP-iptcExt:ArtworkStylePeriod"] == "Impressionism"
    assert "XMP-iptcExt:ArtworkStylePeriod" not in tags["b.jpg"]


def test_a_non_artwork_gets_nothing_shared_and_no_confident_flag_in_csv(tmp_path):
    tasks = (Task("domain", ("artwork", "photograph")), Task("style", ("Impressionism", "Rococo")))
    outputs = {"domain": np.array([[0.99, 0.01], [0.02, 0.98]], np.float32),
               "style": np.array([[0.97, 0.03], [0.97, 0.03]], np.float32)}
    meta = meta_of(tmp_path / "meta.parquet", tasks, outputs, ["painting.jpg", "cat.jpg"])
    table = pq.read_table(meta)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert rows["cat.jpg"]["domain"] == "photograph" and not rows["cat.jpg"]["style_confident"], \
        "predict clears every confident flag of a non-artwork"
    # the writers hold the line on their own too (a meta.parquet made by other code):
    # the photograph's style flagged confident anyway
    flags = pa.array([True] * table.num_rows)
    pq.write_table(table.set_column(table.schema.get_field_index("style_confident"),
                                    "style_confident", flags), meta)
    tags = write(meta, tmp_path / "xmp")
    assert tags["painting.jpg"]["XMP-iptcExt:ArtworkStylePeriod"] == "Impressionism"
    assert "ArtyLyze|domain|artwork" not in items(
        tags["painting.jpg"].get("XMP-lr:HierarchicalSubject"))
    for field in SHARED:
        assert field not in tags["cat.jpg"], f"photograph: {field}"
    assert tags["cat.jpg"]["XMP-artylyze:Style"] == "Impressionism"
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(app, ["write", str(meta), "--csv", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as f:
        cells = {r["path"]: r for r in csv.DictReader(f)}
    assert cells["cat.jpg"]["style_confident"] == "false"
    assert cells["cat.jpg"]["domain"] == "photograph" and "domain_confident" not in cells["cat.jpg"]
    assert cells["painting.jpg"]["style_confident"] == "true"


@pytest.mark.parametrize("label", ["Another_artist", "another artist", "ANOTHER-ARTIST",
                                   "Other", "unknown", "Unknown artist", ""])
def test_labels_that_name_no_one(label):
    assert policy.unknown_artist(label)


@pytest.mark.parametrize("label", ["claude-monet", "Otherwise Jones", "anotherartist-x"])
def test_named_artists_are_names(label):
    assert not policy.unknown_artist(label)


def test_a_persons_label_always_passes_and_the_models_never_on_a_non_artwork():
    row = {"style": "Cubism", "style_score": 0.2, "style_confident": True, "style_source": "human",
           "artist": "pablo-picasso", "artist_score": 0.1, "artist_confident": True,
           "artist_source": "human", "genre": "portrait", "genre_score": 0.99,
           "genre_confident": True, "genre_source": "model", "domain": "photograph"}
    assert policy.passes(row, "style", 0.5)  # a reviewer's label, whatever the score
    assert policy.creator(row, 0.5, 0.8, suggest=False)  # a person's creator is no suggestion
    assert not policy.passes(row, "genre", 0.5)  # the model's, on a photograph
    assert not policy.creator({**row, "artist": "Another_artist"}, 0.5, 0.8, suggest=True)
    model = {**row, "artist_source": "model", "domain": "artwork", "artist_score": 0.95}
    assert not policy.creator(model, 0.5, 0.8, suggest=False)
    assert policy.creator(model, 0.5, 0.8, suggest=True)
