"""`similar` shows a work once, not once per copy: same bytes, or embeddings of one work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_index_support import GENRES, STYLES, planted, write_meta

from artylyze.index.build import BuildOptions, build
from artylyze.index.copies import collapse
from artylyze.index.search import Gallery

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "marc-chagall_red-jew-1915.jpg"


def test_collapse_joins_same_bytes_and_near_identical_vectors() -> None:
    v = np.eye(4, dtype=np.float32)
    vectors = np.stack([v[0], v[1], v[0] * 0.99 + v[2] * 0.05, v[1], v[3]])
    shown = collapse([10, 11, 12, 13, 14], vectors, ["a", "b", "c", "d", "e"],
                     group=[None, None, None, None, 7])
    assert shown == [(10, [12]), (11, [13]), (14, [])]
    by_bytes = collapse([1, 2, 3], np.eye(3, dtype=np.float32), ["x", "y", "x"])
    assert by_bytes == [(1, [3]), (2, [])]
    assert collapse([1, 2], np.eye(2, dtype=np.float32), ["q", "y"], query_sha="q") == [(2, [])]


def test_similar_shows_copies_once(tmp_path: Path) -> None:
    _, styles, genres = planted(n_per=20, dim=16, seed=4)
    x = np.random.default_rng(4).normal(size=(60, 16)).astype(np.float32)  # no two alike
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[1] = x[0]  # a rescan: other bytes, the same embedding
    x[3] = x[2]  # an exact copy: the same bytes
    sha = [f"{i:064x}" for i in range(len(x))]
    sha[3] = sha[2]
    paths = [f"{s}/painter_work-{i}.jpg" for i, s in enumerate(styles)]
    meta = write_meta(tmp_path / "meta.parquet", paths, x, {"style": styles, "genre": genres},
                      {"style": STYLES, "genre": GENRES}, "synthetic@000000000000", tmp_path,
                      sha256=sha)
    build(meta, tmp_path / "idx", BuildOptions(gmm_k=2, kmeans_k=2))
    gallery = Gallery.open(tmp_path / "idx")
    query = gallery.stored_query(5)
    results = gallery.similar(query, k=60)
    shown = [r["path"] for r in results]
    assert len(shown) == len(set(shown)) == 57  # 60 rows less the query and 2 copies
    copies = {r["path"]: r["copies"] for r in results if r["copies_count"]}
    assert sorted(tuple(sorted([p, *c])) for p, c in copies.items()) == \
        [(paths[0], paths[1]), (paths[2], paths[3])]
    raw = gallery.similar(query, k=60, collapse_copies=False)
    assert {paths[0], paths[1], paths[2], paths[3]} <= {r["path"] for r in raw}


def test_the_readme_chagall_example_holds_no_work_twice() -> None:
    """The shipped gallery files some paintings under two styles (Magnelli's "Man smoking"
    in Cubism and in Fauvism): a work shows once, however deep the list."""
    gallery = Gallery.open()
    (query,) = gallery.queries([str(EXAMPLE)])

    def works(results: list[dict]) -> list[str]:  # wikiart11 names a file artist_title-year
        return [Path(r["path"]).name for r in results if r["path"].startswith("wikiart11/")]

    for k in (10, 40):
        results = gallery.similar(query, k=k)
        assert len(results) == k and len(works(results)) == len(set(works(results)))
    pearls = "wikiart11/images/Abstract_Expressionism/richard-tuttle_20-pearls-2-2003.jpg"
    (query,) = gallery.queries([pearls])  # "20 pearls" 6 and 9 are filed under two styles
    raw = works(gallery.similar(query, k=10, collapse_copies=False))
    assert len(raw) > len(set(raw)), "the gallery's copies no longer reach this list"
    shown = gallery.similar(query, k=10)
    assert len(works(shown)) == len(set(works(shown))) == 10
    assert sum(r["copies_count"] for r in shown) >= 2
    magnelli = "wikiart11/images/Cubism/alberto-magnelli_man-smoking-1914.jpg"
    (man_smoking,) = gallery.queries([magnelli])
    near = gallery.similar(man_smoking, k=10)  # its Fauvism copy is the query, not a result
    assert "man-smoking" not in " ".join(r["path"] for r in near), near[:2]


def test_the_service_lists_duplicate_groups_and_counts_copies() -> None:
    from fastapi.testclient import TestClient

    from artylyze.serve.app import create_app
    from artylyze.serve.options import ServeOptions
    from artylyze.serve.service import Service

    service = Service.open(ServeOptions())
    client = TestClient(create_app(service))
    page = client.get("/duplicates")
    assert page.status_code == 200 and "img-src data:" in page.headers["content-security-policy"]
    # one group of 2 files, each named in its caption and its alt text
    assert page.text.count("alberto-magnelli_man-smoking-1914.jpg") == 4
    assert "<script" not in page.text
    pearls = service.gallery.find_row(
        "wikiart11/images/Abstract_Expressionism/richard-tuttle_20-pearls-2-2003.jpg")
    answer = client.get(f"/v1/works/{pearls}/similar").json()
    assert sum(r["copies"] for r in answer["results"]) >= 2
    service.close()


def test_report_neighbours_hold_no_copy_of_the_work_or_each_other(tmp_path: Path) -> None:
    from artylyze.index.collection import from_index

    _, styles, genres = planted(n_per=20, dim=16, seed=4)
    x = np.random.default_rng(5).normal(size=(60, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[1] = x[0]  # a copy of the work itself, filed under another name
    x[3] = x[2]  # two copies of another work
    paths = [f"{s}/painter_work-{i}.jpg" for i, s in enumerate(styles)]
    meta = write_meta(tmp_path / "meta.parquet", paths, x, {"style": styles, "genre": genres},
                      {"style": STYLES, "genre": GENRES}, "synthetic@000000000000", tmp_path)
    build(meta, tmp_path / "idx", BuildOptions(gmm_k=2, kmeans_k=2))
    rows = [row for row, _ in from_index(tmp_path / "idx").neighbours(0, 60)]
    assert 0 not in rows and 1 not in rows and not {2, 3} <= set(rows)
    assert len(rows) == len(set(rows)) == 57
