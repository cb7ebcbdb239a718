"""Titles, artists and years come from a file name only where its shape says so: WikiArt
slugs with a plausible year, or the user's ``--filename-pattern``; an index built by the
old parser is read again on load, so the shipped gallery needs no rebuild."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from test_index_support import planted_meta
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.index.build import BuildOptions, build
from artylyze.index.errors import IndexBuildError
from artylyze.index.filenames import FileNames, Parsed, reparse
from artylyze.index.store import DEFAULT_GALLERY_DIR, load_index_dir

NEXT_YEAR = dt.date.today().year + 1


@pytest.mark.parametrize(("name", "expected"), [
    ("Impressionism/claude-monet_water-lilies-1916.jpg",
     Parsed("claude-monet", "Water lilies", 1916)),
    ("rembrandt_a-beggar-1634.jpg", Parsed("rembrandt", "A beggar", 1634)),
    ("marcel-duchamp_the-bush.jpg", Parsed("marcel-duchamp", "The bush")),
    ("eta-1011.jpg", Parsed()),  # not "Eta", 1011
    ("inv-2003-117_recto.tif", Parsed()),  # not by "Inv 2003 117"
    ("wam-193503.jpg", Parsed()),
    ("scan_0001.tif", Parsed()),  # no title in it
    ("IMG_1234.JPG", Parsed()),
    ("untitled.png", Parsed()),
    ("a-painter_untitled-0999.jpg", Parsed("a-painter", "Untitled 0999")),  # not a year
    ("artist-1_painting-1-1851.png", Parsed("artist-1", "Painting 1", 1851)),
    ("artist-1_painting-1.png", Parsed()),  # digits in the artist part need a real year
    ("1-artist_painting-1851.png", Parsed()),
    ("m.-h.-maxy_ferma.jpg", Parsed("m.-h.-maxy", "Ferma")),
    ("brice-marden_10-2011.jpg", Parsed("brice-marden", "10", 2011)),
    (f"a-painter_untitled-{NEXT_YEAR}.jpg", Parsed("a-painter", f"Untitled {NEXT_YEAR}")),
])
def test_only_wikiart_names_with_plausible_years_are_read(name, expected):
    assert FileNames().parse(name) == expected


def test_a_users_pattern_reads_accession_numbers_and_falls_back_to_wikiart():
    names = FileNames(r"inv-(?P<accession>\d{4}-\d+)_(?P<title>[a-z]+)")
    assert names.parse("scans/inv-2003-117_recto.tif") == Parsed(None, "Recto", None,
                                                                 "2003-117")
    assert names.parse("claude-monet_water-lilies-1916.jpg").artist == "claude-monet"
    years = FileNames(r"(?P<artist>[A-Z][a-z]+)_(?P<year>\d+)")
    assert years.parse("Monet_1916.jpg") == Parsed("Monet", None, 1916)
    assert years.parse("Monet_0042.jpg") == Parsed("Monet", None, None)  # implausible year


@pytest.mark.parametrize("pattern", ["(unclosed", "no-groups-here", r"(?P<other>\d+)"])
def test_a_bad_pattern_is_refused_before_any_work(pattern, tmp_path):
    with pytest.raises(IndexBuildError, match="filename-pattern"):
        FileNames(pattern)
    result = CliRunner().invoke(app, ["index", "build", str(planted_meta(tmp_path)),
                                      "--out", str(tmp_path / "ix"),
                                      "--filename-pattern", pattern])
    assert result.exit_code != 0 and "filename-pattern" in result.output
    assert not (tmp_path / "ix").exists()


def test_index_build_records_the_pattern_and_fills_record_id(tmp_path):
    meta = planted_meta(tmp_path, n_per=4)
    pattern = r"painter-(?P<artist>[a-g])_work-number-(?P<accession>\d+)-(?P<year>\d{4})"
    out = tmp_path / "ix"
    build(meta, out, BuildOptions(filename_pattern=pattern, kmeans_k=2, gmm_k=2))
    index = load_index_dir(out)
    assert index.manifest.extra["file_names"] == {"parser": 2, "pattern": pattern}
    rows = index.rows.to_pylist()
    assert rows[0]["artist_slug"] == "a" and rows[0]["year"] == 1800
    assert rows[0]["title"] is None and rows[0]["record_id"] == "0"
    plain = load_index_dir(out, names=FileNames())  # serve --filename-pattern: read again
    assert plain.rows.column("artist_slug")[0].as_py() == "painter-a"
    assert plain.rows.column("title")[0].as_py() == "Work number 0"


def test_an_old_index_is_read_again_but_titles_from_a_labels_csv_stay():
    rows = pa.table({"path": ["eta-1011.jpg", "eta-1012.jpg", "claude-monet_lilies-1916.jpg"],
                     "title": ["Eta", "Spring (from labels.csv)", "Lilies"],
                     "artist_slug": [None, None, "claude-monet"],
                     "year": pa.array([1011, 1012, 1916], pa.int32())})
    again = reparse(rows, None, None).to_pylist()  # no "file_names": parser 1 built it
    assert again[0] == {"path": "eta-1011.jpg", "title": None, "artist_slug": None,
                        "year": None}
    assert again[1]["title"] == "Spring (from labels.csv)" and again[1]["year"] is None
    assert again[2]["title"] == "Lilies" and again[2]["year"] == 1916
    assert reparse(rows, {"parser": 2, "pattern": None}, None) is rows  # current: as it is


def test_the_shipped_gallery_has_no_invented_titles_or_years():
    index = load_index_dir(DEFAULT_GALLERY_DIR)
    rows = index.rows.select(["path", "title", "artist_slug", "year"]).to_pylist()
    eta = [r for r in rows if Path(r["path"]).name.startswith(("eta-", "wam-"))]
    assert eta and all(r["title"] is None and r["year"] is None and r["artist_slug"] is None
                       for r in eta)
    monet = [r for r in rows if Path(r["path"]).name.startswith("claude-monet_")]
    assert monet and all(r["artist_slug"] == "claude-monet" and r["title"] for r in monet)
    assert min(r["year"] for r in rows if r["year"] is not None) > 1000


def test_serve_refuses_a_bad_pattern_and_passes_a_good_one_to_its_workers(monkeypatch):
    from artylyze.serve.errors import ServeConfigError
    from artylyze.serve.options import ENV_VAR, ServeOptions

    with pytest.raises(ServeConfigError, match="filename-pattern"):
        ServeOptions(filename_pattern="(?P<title>").check()
    good = ServeOptions(filename_pattern=r"(?P<accession>\d+)")
    good.check()
    monkeypatch.setenv(ENV_VAR, good.to_env())
    assert ServeOptions.from_env().filename_pattern == r"(?P<accession>\d+)"
