"""The collection report: its numbers (cross tables, memberships, the clusters' tree), the
page on a tagged folder and on the shipped gallery, rendered in headless Chromium with no
broken image and no console message, and clear refusals."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from browser import CHROMIUM, render
from test_index_support import planted_meta
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.index.build import BuildOptions, build
from artylyze.index.collection import (
    chronological,
    closest_pairs,
    cluster_tree,
    crosstab,
    distinct_works,
    entropy,
    keep_top_columns,
    mean_membership,
    ordered,
)
from artylyze.index.collection_report import (
    ReportError,
    collection_report,
    copies_note,
    domain_note,
)
from artylyze.index.errors import ModelMismatchError
from artylyze.index.store import DEFAULT_GALLERY_DIR

PER_STYLE = 24
EVIL = "<em>Ukiyo-e</em>"  # a style name with markup, from a labels table
CHARTS = ["journey.png", "style_period.png", "style_nationality.png", "affinity_tree.png",
          "influences.png"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(.ci/run installs it)")


@pytest.fixture(scope="module")
def tagged(wikiart: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of real paintings (three styles, several periods) tagged by the shipped
    bundle, and an index built on it with the wikiart11 labels."""
    tmp = tmp_path_factory.mktemp("tagged")
    root = tmp / "collection"
    taken: dict[str, int] = {}
    with open(wikiart / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            style = row["style"]
            if style in ("Baroque", "Impressionism", "Ukiyo_e") and taken.get(style, 0) < \
                    PER_STYLE:
                taken[style] = taken.get(style, 0) + 1
                (root / style).mkdir(parents=True, exist_ok=True)
                shutil.copy(wikiart / "images" / row["path"], root / row["path"])
    meta = tmp / "meta.parquet"
    result = CliRunner().invoke(app, ["tag", str(root), "--out", str(meta), "--quiet"])
    assert result.exit_code == 0, result.output
    build(meta, tmp / "idx", BuildOptions(gmm_k=6, kmeans_k=4, labels=wikiart / "labels.csv"))
    return {"tmp": tmp, "root": root, "meta": meta, "idx": tmp / "idx"}


def _check_page(out: Path, works: int | None = None) -> str:
    html = (out / "index.html").read_text()
    for chart in CHARTS:
        assert (out / chart).stat().st_size > 10_000, chart
        assert f'src="{chart}"' in html
    if works is not None:
        assert f"{works:,} works" in html
    if CHROMIUM is not None:
        seen = render(out / "index.html")
        assert seen["broken"] == [] and seen["console"] == [], seen
        assert seen["images"] >= len(CHARTS) + 2
    return html


def test_report_on_a_tagged_folder_with_predicted_labels(tagged, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(tagged["meta"]), "--index",
                                      str(tagged["idx"]), "--out", str(out), "--cases", "3"])
    assert result.exit_code == 0, result.output
    assert "style: predicted" in result.output and "3 case studies" in result.output
    html = _check_page(out, works=3 * PER_STYLE)
    assert html.count('class="case"') == 3


def test_report_with_a_labels_table_uses_ground_truth(tagged, wikiart, tmp_path):
    labels = tmp_path / "labels.csv"
    with open(wikiart / "labels.csv", newline="") as f, open(labels, "w", newline="") as g:
        rows = csv.DictReader(f)
        out = csv.DictWriter(g, fieldnames=["path", "style", "year"], extrasaction="ignore")
        out.writeheader()
        for row in rows:
            if row["style"] == "Ukiyo_e":
                row["style"] = EVIL
            out.writerow(row)
    result = collection_report(tagged["meta"], tmp_path / "r", index=tagged["idx"],
                               labels=labels, cases=2)
    assert result["sources"]["style"] == "ground truth"
    assert result["sources"]["period"] == "ground truth"  # from the years, as index build does
    assert result["sources"]["genre"] == "predicted"  # not in this table
    html = _check_page(tmp_path / "r")
    assert "<em>" not in html and "&lt;em&gt;Ukiyo-e&lt;/em&gt;" in html


def test_report_on_an_index_describes_its_own_works(tagged, tmp_path):
    result = collection_report(tagged["idx"], tmp_path / "r", cases=4)
    assert result["works"] == 3 * PER_STYLE and result["cases"] == 4
    html = _check_page(tmp_path / "r")
    assert "the index's own works" in html


@pytest.mark.skipif(not (DEFAULT_GALLERY_DIR / "manifest.json").is_file(),
                    reason="the reference gallery is not installed")
def test_report_on_the_shipped_gallery(tmp_path):
    result = CliRunner().invoke(app, ["report", str(DEFAULT_GALLERY_DIR), "--out",
                                      str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    html = _check_page(tmp_path / "g")
    assert html.count('class="case"') == 6
    # the gallery's rows say what v6 takes each scan for: a few paintings pass as photographs
    note = re.search(r'<span class="domains">([^<]*)</span>', html)
    assert note and "for something other than an artwork (photograph" in note.group(1)


def test_the_domain_note_counts_what_is_not_an_artwork():
    assert domain_note(["artwork", None, "artwork"]) == ""
    assert domain_note(["photograph", "artwork", "document", "photograph"]) == (
        "The model takes 3 works for something other than an artwork (photograph 2, "
        "document 1); none of their predicted labels is confident.")


def _section_html(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start:html.index("</section>", start)]


def test_an_exact_copy_of_a_file_is_counted_once(tagged, tmp_path):
    """The same painting scanned twice (same bytes, another name) is one work: the counts,
    the clusters' table and the styles' table are those of the collection without the copy,
    and the page says one file was folded."""
    table = pq.read_table(tagged["meta"])
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    original = ok.slice(0, 1)
    path = Path(original.column("path")[0].as_py())
    copy_path = path.with_name(f"copy of {path.name}")
    shutil.copy(tagged["root"] / path, tagged["root"] / copy_path)
    twin = pa.Table.from_pylist([{**original.to_pylist()[0], "path": str(copy_path)}],
                                schema=table.schema)
    doubled = pa.concat_tables([table, twin])
    pq.write_table(doubled, tmp_path / "copies.parquet")

    plain = collection_report(tagged["meta"], tmp_path / "plain", index=tagged["idx"], cases=2)
    result = collection_report(tmp_path / "copies.parquet", tmp_path / "r",
                               index=tagged["idx"], cases=2)
    assert (result["works"], result["files"], result["folded"]) == (
        3 * PER_STYLE, 3 * PER_STYLE + 1, 1)
    assert plain["folded"] == 0 and plain["works"] == 3 * PER_STYLE
    html = _check_page(tmp_path / "r", works=3 * PER_STYLE)
    assert "1 file is a copy of another work and is counted once" in html
    assert "is a copy" not in (tmp_path / "plain" / "index.html").read_text()
    before = (tmp_path / "plain" / "index.html").read_text()
    for anchor in ("journey", "style-period", "influences", "clusters"):
        assert _section_html(html, anchor) == _section_html(before, anchor), anchor
    assert str(copy_path) not in _section_html(html, "cases")  # a copy is never a case


def test_distinct_works_link_copies_by_bytes_and_duplicate_group():
    rows = pa.table({"sha256": ["a", "b", "a", "c", "d", None, "e", ""],
                     "dup_group": [None, 7.0, None, 7.0, float("nan"), None, 9.0, 9.0]})
    # 2 is 0's bytes; 3 is 1's group; 4's NaN group is no group; 5 and 7 have no bytes known
    assert distinct_works(rows).tolist() == [True, True, False, False, True, True, True, False]
    chained = pa.table({"sha256": ["x", "y", "y"], "dup_group": [None, None, 1]})
    assert distinct_works(chained).tolist() == [True, True, False]
    linked = pa.table({"sha256": ["x", "y", "x"], "dup_group": [None, 1, 1]})
    assert distinct_works(linked).tolist() == [True, False, False]  # 1 joins 0 through 2
    assert distinct_works(pa.table({"path": ["p", "q"]})).tolist() == [True, True]
    assert copies_note(0, 5, False) == ""
    assert copies_note(3, 10, True) == ("3 files are copies of other works and are counted "
                                        "once (10 files in all; same bytes or the same "
                                        "duplicate group).")


def test_refusals_are_clear(tagged, tmp_path):
    with pytest.raises(ReportError, match="--index goes with a meta.parquet"):
        collection_report(tagged["idx"], tmp_path / "x", index=tagged["idx"])
    with pytest.raises(ReportError, match="--labels goes with a meta.parquet"):
        collection_report(tagged["idx"], tmp_path / "x", labels=tagged["meta"])
    other = planted_meta(tmp_path)
    with pytest.raises(ModelMismatchError, match="synthetic@000000000000"):
        collection_report(other, tmp_path / "x", index=tagged["idx"])
    result = CliRunner().invoke(app, ["report", str(other), "--index", str(tagged["idx"]),
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "error:" in result.output


def test_a_collection_without_periods_or_places_skips_those_sections(tmp_path):
    meta = planted_meta(tmp_path)  # style and genre only; its files do not exist
    build(meta, tmp_path / "idx", BuildOptions(gmm_k=3, kmeans_k=3))
    result = collection_report(tmp_path / "idx", tmp_path / "r", cases=2)
    assert result["charts"] == ["affinity_tree.png", "influences.png"]
    html = (tmp_path / "r" / "index.html").read_text()
    assert 'id="journey"' not in html and html.count('class="case"') == 2
    if CHROMIUM is not None:  # missing files are drawn as grey tiles, never broken images
        seen = render(tmp_path / "r" / "index.html")
        assert seen["broken"] == [] and seen["console"] == [], seen


def test_cross_tables_keep_unknowns_out_and_fold_the_tail():
    styles = ["A", "A", "B", None, "B", "A"]
    places = ["x", "y", "x", "x", None, "z"]
    counts = crosstab(styles, places, ["A", "B"], ["x", "y", "z"])
    assert counts.tolist() == [[1, 1, 1], [1, 0, 0]]
    folded, names = keep_top_columns(counts, ["x", "y", "z"], limit=2)
    assert names == ["x", "other (2)"] and folded.tolist() == [[1, 2], [1, 0]]
    assert ordered(["b", "a", "b", None, "c"], preferred=("c", "zz")) == ["c", "b", "a"]
    assert chronological({"1900-1949", "1550-1599", "unknown", "1850-1899"}) == [
        "1550-1599", "1850-1899", "1900-1949", "unknown"]


def test_membership_entropy_and_the_clusters_tree():
    post = np.array([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(entropy(post), [0.0, 1.0, 0.5], atol=1e-6)
    mean, sizes = mean_membership(["A", "B", "A"], ["A", "B"], post)
    np.testing.assert_allclose(mean[0], [0.75, 0.25, 0, 0])
    assert sizes.tolist() == [2, 1]
    # two blocks of related clusters, interleaved in id order: the tree puts blocks together
    aff = np.full((4, 4), 0.1)
    aff[np.ix_([0, 2], [0, 2])] = 0.9
    aff[np.ix_([1, 3], [1, 3])] = 0.8
    np.fill_diagonal(aff, 1.0)
    order, tree = cluster_tree(aff, [0, 1, 2, 3])
    assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({0, 2}),
                                                            frozenset({1, 3})}
    assert tree.shape == (3, 4)
    assert closest_pairs(aff, [0, 1, 2, 3], 2) == [(0, 2, pytest.approx(0.1)),
                                                  (1, 3, pytest.approx(0.2))]


@needs_chromium
def test_the_render_check_sees_broken_images_and_console_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><img src="missing.png"><script>console.error("x")</script>')
    seen = render(bad)
    assert seen["broken"] == ["missing.png"] and len(seen["console"]) == 1
