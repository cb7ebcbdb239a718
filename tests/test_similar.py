"""similar / influence against a real tiny bundle: stored vectors, embedded queries, refusals,
and the HTML page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from test_index_support import tag_images, write_images
from tiny_bundle import make_tiny_bundle

from artylyze.index import search as search_module
from artylyze.index.build import BuildOptions, build
from artylyze.index.errors import IndexStoreError, ModelMismatchError
from artylyze.index.html import similar_page
from artylyze.index.influence import influence
from artylyze.index.search import Gallery
from artylyze.model.bundle import BundleError

SCRIPT_NAME = "<script>x.png"


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("coll")
    root = tmp / "images"
    rels = write_images(root, n=24)
    Image.open(root / rels[7]).rotate(90).save(root / SCRIPT_NAME)
    rels.append(SCRIPT_NAME)
    bundle = make_tiny_bundle(tmp / "bundle", seed=0)
    other = make_tiny_bundle(tmp / "other", seed=1)
    meta = tag_images(bundle, root, rels, tmp / "meta.parquet")
    build(meta, tmp / "idx", BuildOptions(gmm_k=3, kmeans_k=3, bundle_dir=bundle))
    return {"tmp": tmp, "root": root, "bundle": bundle, "other": other, "idx": tmp / "idx",
            "meta": meta}


def _near_copy(src: Path, dst: Path) -> Path:
    """Same pixels, different bytes (a PNG text chunk), so it is embedded, not looked up.
    (The tiny bundle's features are not smooth, so only equal pixels embed alike.)"""
    info = PngImagePlugin.PngInfo()
    info.add_text("note", "a copy")
    Image.open(src).save(dst, "PNG", pnginfo=info)
    return dst


def test_a_path_in_the_index_uses_its_stored_vector(collection: dict[str, Path]) -> None:
    gallery = Gallery.open(collection["idx"])
    rel = "Cubism/artist-1_painting-1-1851.png"
    (query,) = gallery.queries([rel])
    assert query.source == "index" and query.row == 1
    results = gallery.similar(query, k=5)
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert rel not in [r["path"] for r in results]
    assert results[0]["score"] >= results[-1]["score"]
    assert results[0]["title"] and "style" in results[0]


def test_a_copy_elsewhere_is_found_by_content(collection: dict[str, Path],
                                             tmp_path: Path) -> None:
    copy = tmp_path / "copy.png"
    shutil.copy(collection["root"] / "Baroque/artist-3_painting-3-1853.png", copy)
    (query,) = Gallery.open(collection["idx"]).queries([str(copy)])
    assert query.source == "index" and query.row == 3


def test_a_new_image_is_embedded_and_finds_its_original(collection: dict[str, Path],
                                                       tmp_path: Path) -> None:
    gallery = Gallery.open(collection["idx"])
    q1 = _near_copy(collection["root"] / "Impressionism/artist-0_painting-5-1855.png",
                    tmp_path / "q1.png")
    q2 = _near_copy(collection["root"] / "Baroque/artist-4_painting-9-1859.png",
                    tmp_path / "q2.png")
    answers = gallery.queries([str(q1), str(q2)])
    assert [q.source for q in answers] == ["embedded", "embedded"]
    assert set(answers[0].predicted) == {"style", "genre"}
    assert len(answers[0].predicted["style"]) == 3
    top = [gallery.similar(q, k=3)[0] for q in answers]
    assert [t["path"] for t in top] == ["Impressionism/artist-0_painting-5-1855.png",
                                        "Baroque/artist-4_painting-9-1859.png"]
    assert top[0]["score"] > 0.99


def test_a_bundle_of_another_model_is_refused(collection: dict[str, Path],
                                              tmp_path: Path) -> None:
    q = _near_copy(collection["root"] / "Cubism/artist-1_painting-1-1851.png", tmp_path / "q.png")
    gallery = Gallery.open(collection["idx"], bundle_dir=collection["other"])
    with pytest.raises(ModelMismatchError, match=r"other is model 'tiny@\w+', but the index "
                                                 r"was built with model 'tiny@"):
        gallery.queries([str(q)])
    with pytest.raises(ModelMismatchError, match="the query was embedded by model 'other@1'"):
        gallery.search_embeddings(np.ones((1, 16), np.float32), "other@1")


def test_no_bundle_found_says_what_to_pass(collection: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    meta_only = tmp_path / "idx"
    build(collection["meta"], meta_only, BuildOptions(gmm_k=3, kmeans_k=3))
    monkeypatch.setattr(search_module, "DEFAULT_BUNDLE_DIR", tmp_path / "absent")
    q = _near_copy(collection["root"] / "Cubism/artist-1_painting-1-1851.png", tmp_path / "q.png")
    with pytest.raises(BundleError, match="pass --bundle DIR"):
        Gallery.open(meta_only).queries([str(q)])


def test_an_unknown_name_is_a_clear_error(collection: dict[str, Path]) -> None:
    with pytest.raises(IndexStoreError, match="nope.jpg: no such image file, and no such path"):
        Gallery.open(collection["idx"]).queries(["nope.jpg"])


def test_html_has_an_img_per_result_and_escapes_names(collection: dict[str, Path],
                                                     tmp_path: Path) -> None:
    gallery = Gallery.open(collection["idx"])
    evil = tmp_path / SCRIPT_NAME
    _near_copy(collection["root"] / SCRIPT_NAME, evil)
    answers = []
    for q in gallery.queries([str(evil), "Cubism/artist-1_painting-1-1851.png"]):
        answers.append({"query": q.name, "source": q.source, "file": q.file,
                        "predicted": q.predicted, "results": gallery.similar(q, k=6)})
    assert answers[0]["results"][0]["path"] == SCRIPT_NAME
    text = similar_page(answers, gallery.index)
    assert len(re.findall(r"<img ", text)) == 2 + 12
    assert "<script" not in text
    assert "&lt;script&gt;x.png" in text
    assert text.count('src="data:image/jpeg;base64,') == 14


def test_influence_is_a_distribution_over_clusters(collection: dict[str, Path],
                                                   tmp_path: Path) -> None:
    gallery = Gallery.open(collection["idx"])
    q = _near_copy(collection["root"] / "Cubism/artist-1_painting-1-1851.png", tmp_path / "q.png")
    for query in gallery.queries([str(q), "Cubism/artist-1_painting-1-1851.png"]):
        result = influence(gallery, query, top=2)
        shares = [p["share"] for p in result["posterior"]]
        assert len(shares) == 3
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)
        assert shares == sorted(shares, reverse=True)
        assert result["top"][0]["cluster"] == result["posterior"][0]["cluster"]
        assert set(result["top"][0]["labels"]) == {"style", "genre"}
    assert result["source"] == "index"
    assert result["predicted"]["style"][0]["label"] in ("Baroque", "Cubism", "Impressionism",
                                                       "Pop_Art")


def test_query_side_never_imports_torch_or_sklearn() -> None:
    import subprocess
    import sys

    code = ("import sys, artylyze.index.search, artylyze.index.influence, artylyze.index.html, "
            "artylyze.cli.similar, artylyze.cli.index, artylyze.index.build, "
            "artylyze.index.report; print(sorted(m for m in ('torch', 'sklearn', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
