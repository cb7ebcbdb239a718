"""artylyze duplicates: exact and near groups, the second check on real paintings, the keeper
rule, chunked search, and copies shown once in `similar`."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter
from test_index_support import write_meta

from artylyze.duplicates.candidates import candidate_pairs
from artylyze.duplicates.find import Options, find_duplicates
from artylyze.duplicates.groups import join, pick_keeper
from artylyze.duplicates.source import Collection, DuplicatesError, open_collection
from artylyze.duplicates.synthetic import TRANSFORMS, archive_copy
from artylyze.duplicates.verify import THRESHOLD, Checker

ARTIST_WORKS = (  # one artist, one style, one period: the hard negatives
    "Cubism/juan-gris_bullfighter-1913.jpg",
    "Cubism/juan-gris_fruit-bowl-and-fruit.jpg",
    "Cubism/juan-gris_pierrot-1919.jpg",
    "Cubism/juan-gris_pierrot-1921.jpg",
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _collection(paths: list[str], vectors: np.ndarray, sha: list[str | None] | None = None,
                root: str | None = None, size: list[int] | None = None) -> Collection:
    n = len(paths)
    size = size or [224] * n
    return Collection(Path("."), root, paths, sha or [f"{i:064x}" for i in range(n)],
                      size, size, vectors.astype(np.float32))


def test_same_bytes_make_one_exact_group_without_reading_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng.normal(size=(6, 16)))
    sha = ["a" * 64, "b" * 64, "a" * 64, "c" * 64, "a" * 64, "b" * 64]
    meta = write_meta(tmp_path / "meta.parquet", [f"x/{i}.jpg" for i in range(6)], vectors,
                      {"style": ["Cubism"] * 6}, {"style": ("Cubism",)}, "m@1", tmp_path,
                      sha256=sha)
    coll = open_collection(meta)
    found = find_duplicates(coll, Options(), load=lambda i: pytest.fail("read pixels"))
    rows = found.table.to_pylist()
    assert {r["kind"] for r in rows} == {"exact"}
    members = sorted((r["group"], r["path"]) for r in rows)
    assert [p for _, p in members] == ["x/0.jpg", "x/2.jpg", "x/4.jpg", "x/1.jpg", "x/5.jpg"]
    assert found.stats == {"groups": 2, "exact_groups": 2, "near_groups": 0, "files": 5,
                           "redundant_files": 3}
    assert sum(r["keeper"] for r in rows) == 2


def _copies(wikiart: Path, seed: int = 0) -> tuple[list[str], list[Image.Image], list[int]]:
    """Three works by Juan Gris, each with archive copies (one of every transform kind
    across them); returns names, images and the work of each."""
    rng = random.Random(seed)
    kinds = sorted(TRANSFORMS)
    names, images, work = [], [], []
    for w, rel in enumerate(ARTIST_WORKS):
        img = Image.open(wikiart / "images" / rel).convert("RGB")
        names.append(rel)
        images.append(img)
        work.append(w)
        for c in range(3):
            copy, how = archive_copy(img, rng, kinds[(w * 3 + c) % len(kinds)], extra=0)
            names.append(f"{rel}.{how}.{c}.jpg")
            images.append(copy)
            work.append(w)
    return names, images, work


def test_the_check_tells_copies_from_other_works_of_the_artist(wikiart: Path) -> None:
    names, images, work = _copies(wikiart)
    checker = Checker(lambda i: images[i])
    n = len(images)
    same = [checker.score(i, j) for i in range(n) for j in range(i + 1, n) if work[i] == work[j]]
    other = [checker.score(i, j) for i in range(n) for j in range(i + 1, n)
             if work[i] != work[j]]
    assert max(other) < THRESHOLD, "another work of the same artist passed the check"
    originals = [checker.score(i, j) for i in range(n) for j in range(i + 1, n)
                 if work[i] == work[j] and names[i] in ARTIST_WORKS]
    assert min(originals) >= THRESHOLD, "an archive copy of a work failed the check"
    assert len(same) == len(ARTIST_WORKS) * 6


def test_near_groups_hold_copies_and_not_the_artists_other_works(wikiart: Path) -> None:
    """Embeddings that cannot tell the works apart (all within cosine 0.99): every pair is a
    candidate, so the groups come from the second check alone."""
    names, images, work = _copies(wikiart)
    rng = np.random.default_rng(1)
    base = rng.normal(size=16)
    vectors = _unit(base + 0.05 * rng.normal(size=(len(names), 16)))
    coll = _collection(names, vectors, size=[im.width * im.height for im in images])
    found = find_duplicates(coll, Options(per_item=0), load=lambda i: images[i])
    assert found.candidates == len(names) * (len(names) - 1) // 2
    groups = {}
    for r in found.table.to_pylist():
        groups.setdefault(r["group"], set()).add(work[names.index(r["path"])])
        assert r["kind"] == "near"
    assert len(groups) == len(ARTIST_WORKS) and all(len(w) == 1 for w in groups.values())
    assert found.table.num_rows == len(names)


def test_keeper_is_the_largest_then_the_sharpest() -> None:
    paths = ["b.jpg", "a.jpg", "long/name.jpg", "c.jpg"]
    pixels = [100, 400, 400, 50]
    sharp = {1: 5.0, 2: 9.0}
    assert pick_keeper([0, 1, 2, 3], paths, pixels, sharp.get) == 2  # tie on pixels: sharper
    assert pick_keeper([0, 3], paths, pixels, sharp.get) == 0  # more pixels wins outright
    assert pick_keeper([1, 2], paths, pixels, lambda i: None) == 1  # then the short path


def test_keeper_in_a_real_group_is_the_original_scan(wikiart: Path) -> None:
    img = Image.open(wikiart / "images" / ARTIST_WORKS[0]).convert("RGB")
    small = img.resize((img.width // 2, img.height // 2))
    blurred = img.filter(ImageFilter.GaussianBlur(3))
    images = [small, blurred, img]
    coll = _collection(["small.jpg", "blurred.jpg", "master.jpg"],
                       _unit(np.ones((3, 8)) + np.eye(3, 8) * 0.01))
    coll.width = [im.width for im in images]
    coll.height = [im.height for im in images]
    found = find_duplicates(coll, Options(), load=lambda i: images[i])
    keeper = [r["path"] for r in found.table.to_pylist() if r["keeper"]]
    assert keeper == ["master.jpg"]  # as large as the blurred copy, and sharper


def test_chunked_search_finds_the_same_groups_as_one_pass() -> None:
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(40, 32)))
    vectors = _unit(np.repeat(centres, 5, 0) + 0.03 * rng.normal(size=(200, 32)))
    vectors = vectors[rng.permutation(200)]

    def pairs(chunk: int, block: int):
        def chunks():
            for s in range(0, len(vectors), block):
                yield vectors[s:s + block]
        return candidate_pairs(chunks, len(vectors), 32, 0.9, per_item=10, chunk=chunk)

    one = pairs(10_000, 10_000)
    many = pairs(7, 33)
    assert sorted(zip(one.a, one.b, strict=True)) == sorted(zip(many.a, many.b, strict=True))
    assert np.array_equal(join(200, one.a, one.b), join(200, many.a, many.b))
    assert len(set(join(200, many.a, many.b).tolist())) == 40


def test_a_source_that_is_not_a_meta_parquet_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), bad)
    with pytest.raises(DuplicatesError, match="no column path, embedding"):
        open_collection(bad)
    with pytest.raises(DuplicatesError, match="no such file"):
        open_collection(tmp_path / "missing.parquet")


def test_tag_reports_the_exact_copies_it_met(tmp_path: Path, wikiart: Path) -> None:
    import shutil

    from tiny_bundle import make_tiny_bundle
    from typer.testing import CliRunner

    from artylyze.cli.main import app

    root = tmp_path / "coll"
    root.mkdir()
    works = [wikiart / "images" / w for w in ARTIST_WORKS]
    for i, w in enumerate(works):
        shutil.copy(w, root / f"w{i}.jpg")
    shutil.copy(works[0], root / "again.jpg")
    shutil.copy(works[0], root / "and-again.jpg")
    shutil.copy(works[1], root / "twice.jpg")
    bundle = make_tiny_bundle(tmp_path / "bundle", size=16)
    out = tmp_path / "meta.parquet"
    done = CliRunner().invoke(app, ["tag", str(root), "--out", str(out), "--model", str(bundle)])
    assert done.exit_code == 0, done.output
    assert "3 files are exact copies of others (2 groups)" in done.output
    groups = tmp_path / "groups.parquet"
    done = CliRunner().invoke(app, ["duplicates", str(out), "--out", str(groups),
                                    "--html", str(tmp_path / "groups.html")])
    assert done.exit_code == 0, done.output
    table = pq.read_table(groups).to_pylist()
    exact = {r["group"] for r in table if r["kind"] == "exact"}
    assert len(exact) == 2 and sum(not r["keeper"] for r in table if r["group"] in exact) == 3
    page = (tmp_path / "groups.html").read_text()
    assert page.count('class="group"') == len({r["group"] for r in table})
