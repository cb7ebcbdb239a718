"""Saying "I don't know" (issue #25, model side): a non-artwork gets no confident label,
``another artist`` is never a confident artist, the bundle's novelty reference set is checked
like its graph, and the shipped bundle flags real and generated non-artworks when tagging.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, REPO
from tagged_examples import copy_examples, tag
from tiny_bundle import make_tiny_bundle

from artylyze.model.bundle import BundleError, knn_novelty, load_bundle, sha256_file
from artylyze.model.manifest import (
    ARTWORK,
    DOMAIN_TASK,
    OTHER_ARTIST,
    Manifest,
    Task,
    load_manifest,
    write_manifest,
)
from artylyze.model.predict import predictions
from artylyze.store.schema import label_columns
from artylyze.train import synthetic

DOMAINS = (ARTWORK, "blank", "document", "object", "photograph")
ARTISTS = ("claude-monet", "pablo-picasso", OTHER_ARTIST)


def manifest(calibration: dict | None = None) -> Manifest:
    tasks = (Task("style", ("Baroque", "Cubism")), Task("artist", ARTISTS),
             Task(DOMAIN_TASK, DOMAINS))
    extra = {"calibration": calibration or {"confident": {"style": 0.6, "artist": 0.5}}}
    return Manifest("m", "tiny", 32, "stretch", tasks, 4, "0" * 64, extra=extra)


def outputs(domain: list[float], artist: list[float], style=(0.95, 0.05)) -> dict:
    return {"embedding": np.eye(4, dtype=np.float32)[:1],
            "style": np.array([style], np.float32), "artist": np.array([artist], np.float32),
            DOMAIN_TASK: np.array([domain], np.float32)}


def test_an_artwork_keeps_its_confident_labels() -> None:
    p = predictions(outputs([0.9, 0.05, 0.05, 0, 0], [0.8, 0.1, 0.1]), manifest(), 3)[0]
    assert p.domain == (ARTWORK, pytest.approx(0.9))
    assert p.artwork and p.confident == {"style": True, "artist": True}


def test_a_non_artwork_gets_no_confident_task() -> None:
    p = predictions(outputs([0.1, 0.0, 0.85, 0.05, 0.0], [0.8, 0.1, 0.1]), manifest(), 3)[0]
    assert p.domain == ("document", pytest.approx(0.85)) and not p.artwork
    assert p.confident == {"style": False, "artist": False}
    assert p.top["style"][0] == ("Baroque", pytest.approx(0.95))  # labels stay, unsure


def test_another_artist_is_never_a_confident_artist() -> None:
    p = predictions(outputs([1, 0, 0, 0, 0], [0.02, 0.02, 0.96]), manifest(), 3)[0]
    assert p.top["artist"][0][0] == OTHER_ARTIST
    assert p.confident == {"style": True, "artist": False}


def test_domain_is_a_gate_not_a_label() -> None:
    m = manifest()
    assert DOMAIN_TASK not in m.label_tasks and m.domain_task is not None
    cols = label_columns(m)
    assert cols[-2:] == ["domain", "domain_score"]
    assert not any(c.startswith("domain_") and c != "domain_score" for c in cols)


def with_reference(tmp_path: Path, k: int = 2) -> tuple[Path, np.ndarray]:
    bundle = make_tiny_bundle(tmp_path / "b", dim=16, size=32)
    ref = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.savez_compressed(bundle / "reference.npz", reference=ref.astype(np.float16))
    m = load_manifest(bundle)
    novelty = {"method": "knn", "k": k, "file": "reference.npz",
               "sha256": sha256_file(bundle / "reference.npz")}
    write_manifest(bundle, Manifest(**{**m.__dict__, "extra": {"calibration": {
        "novelty": novelty}}}))
    return bundle, ref.astype(np.float16).astype(np.float32)


def test_the_bundle_scores_novelty_from_its_reference_set(tmp_path: Path) -> None:
    bundle, ref = with_reference(tmp_path)
    b = load_bundle(bundle, threads=1)
    pixels = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = b.run(pixels)
    sims = np.sort(out["embedding"] @ ref.T, axis=1)[:, ::-1][:, :2]
    np.testing.assert_allclose(out["novelty"], 1 - sims.mean(1), atol=1e-5)
    rows = predictions(out, b.manifest, 2)
    assert [r.novelty for r in rows] == pytest.approx(out["novelty"].tolist())
    assert "novelty" in label_columns(b.manifest)


def test_knn_novelty_is_zero_on_the_reference_itself() -> None:
    ref = np.eye(5, dtype=np.float32)
    assert knn_novelty(ref, ref, 1) == pytest.approx(np.zeros(5))
    assert knn_novelty(ref, ref, 2) == pytest.approx(np.full(5, 0.5))


@pytest.mark.parametrize("damage", ["edit", "delete"])
def test_a_changed_or_missing_reference_set_is_refused(tmp_path: Path, damage: str) -> None:
    bundle, ref = with_reference(tmp_path)
    if damage == "edit":
        np.savez_compressed(bundle / "reference.npz", reference=(ref[:-1]).astype(np.float16))
    else:
        (bundle / "reference.npz").unlink()
    with pytest.raises(BundleError, match="reference set"):
        load_bundle(bundle)


def test_synthetic_cases_are_written_like_notart(tmp_path: Path) -> None:
    labels = synthetic.generate(tmp_path / "syn", 24, seed=3)
    df = pd.read_csv(labels)
    assert list(df.columns) == ["path", "category", "split", "source"]
    assert set(df["category"]) <= {"blank", "document"} and len(df) == 24
    assert all((tmp_path / "syn" / "images" / p).is_file() for p in df["path"])
    again = pd.read_csv(synthetic.generate(tmp_path / "again", 24, seed=3))
    assert again.equals(df)  # the split and the images are fixed by the seed


NOTART = DATA / "notart"


def non_artworks(root: Path) -> list[str]:
    """Two notart test images per category and generated pages nobody trained on."""
    df = pd.read_csv(NOTART / "labels.csv")
    test = df[df["split"] == "test"].groupby("category").head(2)
    names = []
    for p in test["path"]:
        name = "notart-" + p.replace("/", "-")
        shutil.copyfile(NOTART / "images" / p, root / name)
        names.append(name)
    rng, faces = random.Random(2026), synthetic.fonts()
    for make in (synthetic.blank_page, synthetic.text_page):
        name = f"made-{make.__name__}.jpg"
        make(rng, faces).save(root / name, quality=90)
        names.append(name)
    return names


def test_tag_gives_non_artworks_no_confident_label(tmp_path: Path) -> None:
    """The shipped bundle, through `artylyze tag`: non-artworks get domain != artwork and no
    `_confident` task; the example paintings stay artworks and keep confident labels."""
    root = tmp_path / "collection"
    paintings = copy_examples(root)
    others = non_artworks(root)
    tag(root, tmp_path / "meta.parquet")
    df = pd.read_parquet(tmp_path / "meta.parquet").set_index("path")
    flags = [c for c in df.columns if c.endswith("_confident")]
    assert flags and {"domain", "domain_score"} <= set(df.columns)
    assert (df.loc[others, "domain"] != ARTWORK).all(), df.loc[others, ["domain", "domain_score"]]
    assert not df.loc[others, flags].to_numpy().any()
    assert (df.loc[paintings, "domain"] == ARTWORK).all()
    assert df.loc[paintings, flags].to_numpy().any()


def test_the_shipped_bundle_says_what_it_learnt() -> None:
    """v5: a domain head, ``another artist``, and a reference set kept out of the manifest
    (which every meta.parquet copies)."""
    m = load_manifest(REPO / "artylyze" / "assets" / "bundle")
    assert m.domain_task is not None and OTHER_ARTIST in m.labels("artist")
    novelty = m.calibration["novelty"]
    assert novelty["file"] == "reference.npz"
    assert not any(isinstance(v, list) for v in novelty.values())
    assert len(json.dumps(m.to_dict())) < 100_000


def test_similar_and_its_page_say_when_a_query_is_not_an_artwork(tmp_path: Path) -> None:
    """`similar` against the shipped gallery: a typed document gets the notice in the table
    and on the HTML page; an example painting does not."""
    from typer.testing import CliRunner

    from artylyze.cli.main import app

    df = pd.read_csv(NOTART / "labels.csv")
    doc = NOTART / "images" / df[(df["split"] == "test") & (df["category"] == "document")][
        "path"].iloc[0]
    painting = REPO / "examples" / "marc-chagall_red-jew-1915.jpg"
    page = tmp_path / "similar.html"
    result = CliRunner().invoke(app, ["similar", str(doc), str(painting), "-k", "3",
                                      "--html", str(page)])
    assert result.exit_code == 0, result.output
    tables = result.output.split(painting.name)
    assert "Not an artwork: looks like a document" in tables[0]
    assert "Not an artwork" not in tables[1]
    html = page.read_text()
    assert html.count('class="notice"') == 1 and "looks like a document" in html

    as_json = CliRunner().invoke(app, ["similar", str(doc), "-k", "1", "--json"])
    assert json.loads(as_json.stdout)[0]["estimated"]["domain"] == "document"


def test_an_index_keeps_what_each_image_is(tmp_path: Path) -> None:
    """Index entries carry `domain` and `domain_score`, so pages built from an index (report,
    serve's browser, similar from stored rows) can say a work is not an artwork."""
    from artylyze.index.search import Gallery, not_artwork

    gallery = Gallery.open(None)
    try:
        assert {"domain", "domain_score"} <= set(gallery.index.rows.column_names)
        domains = gallery.column("domain")
        row = next(i for i, d in enumerate(domains) if d != ARTWORK)
        notice = not_artwork(gallery.stored_query(row).estimated)
        assert notice and f"looks like a {domains[row]}" in notice
        first = next(i for i, d in enumerate(domains) if d == ARTWORK)
        assert not_artwork(gallery.stored_query(first).estimated) is None
    finally:
        gallery.close()
