"""index build: reading meta.parquet, PCA, FAISS index types, the index directory on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_index_support import GENRES, STYLES, planted, planted_meta, write_meta
from tiny_bundle import make_tiny_bundle

from artylyze.errors import ArtyLyzeError
from artylyze.index.build import BuildOptions, build
from artylyze.index.entries import parse_file_name, read_meta
from artylyze.index.errors import IndexBuildError, IndexStoreError
from artylyze.index.faiss_index import build_index, choose_factory, reconstruct, search
from artylyze.index.labels import join_labels, period_of
from artylyze.index.reduce import fit_pca
from artylyze.index.store import FAISS_FILE, MANIFEST_FILE, ROWS_FILE, load_index_dir


def test_file_names_give_artist_title_and_year() -> None:
    assert parse_file_name("Impressionism/claude-monet_water-lilies-1916.jpg") == (
        "claude-monet", "Water lilies", 1916)
    assert parse_file_name("scan_0001.tif") == (None, None, None)  # no title in it
    assert parse_file_name("untitled.png") == (None, None, None)  # not a WikiArt name


def test_period_uses_bundle_ranges_or_half_centuries() -> None:
    assert period_of(1887) == "1850-1899"
    assert period_of(1900, ("1850-1899", "1900-1949")) == "1900-1949"
    assert period_of(1500, ("before 1600", "1600-1700")) == "before 1600"
    assert period_of(None) is None


def test_only_ok_rows_are_indexed(tmp_path: Path) -> None:
    x, styles, genres = planted(n_per=4)
    status = ["ok"] * 10 + ["error"] * 2
    write_meta(tmp_path / "m.parquet", [f"a/p{i}.jpg" for i in range(12)], x, {"style": styles},
               {"style": STYLES}, "m@1", tmp_path, status=status)
    entries = read_meta(tmp_path / "m.parquet")
    assert entries.count == 10 and entries.rows_error == 2 and entries.rows_total == 12
    assert entries.rows.column("path").to_pylist() == [f"a/p{i}.jpg" for i in range(10)]
    np.testing.assert_allclose(np.linalg.norm(entries.vectors, axis=1), 1.0, rtol=1e-5)


def test_a_parquet_mixing_models_is_refused(tmp_path: Path) -> None:
    x, styles, _ = planted(n_per=2)
    write_meta(tmp_path / "m.parquet", [f"p{i}.jpg" for i in range(6)], x, {"style": styles},
               {"style": STYLES}, "a@1", tmp_path, models=["a@1"] * 3 + ["b@2"] * 3)
    with pytest.raises(IndexBuildError, match=r"different models: 'a@1' \(3 rows\), 'b@2'"):
        read_meta(tmp_path / "m.parquet")


def test_a_dataset_directory_of_parts_is_read_whole(tmp_path: Path) -> None:
    x, styles, _ = planted(n_per=4)
    (tmp_path / "meta").mkdir()
    for part in range(2):
        sl = slice(6 * part, 6 * part + 6)
        write_meta(tmp_path / "meta" / f"part-{part:05d}.parquet",
                   [f"p{i}.jpg" for i in range(12)][sl], x[sl], {"style": styles[sl]},
                   {"style": STYLES}, "m@1", tmp_path)
    entries = read_meta(tmp_path / "meta")
    assert entries.count == 12 and entries.rows.column("path").to_pylist()[6] == "p6.jpg"


def test_not_a_parquet_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "m.parquet").write_text("hello")
    with pytest.raises(IndexBuildError, match="not a readable Parquet"):
        read_meta(tmp_path / "m.parquet")


def test_labels_csv_joins_on_path_even_from_another_root(tmp_path: Path) -> None:
    meta = planted_meta(tmp_path, n_per=2)
    paths = pq.read_table(meta).column("path").to_pylist()
    lines = ["path,style,artist,year,nationality,split"]
    lines += [f"images/{p},{STYLES[i // 2]},painter-{i},{1850 + 30 * i},French,train"
              for i, p in enumerate(paths[:4])]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    # The Parquet's paths are relative to images/; the CSV's carry the folder: a suffix join.
    (tmp_path / "labels2.csv").write_text("\n".join(
        [lines[0]] + [ln.replace("images/", "") for ln in lines[1:]]) + "\n")
    entries = join_labels(read_meta(meta), tmp_path / "labels2.csv")
    assert entries.rows.column("true_artist").to_pylist()[:5] == [
        "painter-0", "painter-1", "painter-2", "painter-3", None]
    assert entries.rows.column("year").to_pylist()[:2] == [1850, 1880]
    with pytest.raises(IndexBuildError, match="no path matches"):
        join_labels(read_meta(meta), tmp_path / "labels.csv")


def test_pca_is_applied_the_same_to_index_and_queries(tmp_path: Path) -> None:
    x, _, _ = planted(n_per=40, dim=24)
    pca = fit_pca(x, variance=0.9)
    assert pca.explained_variance_ratio.sum() >= 0.9
    y = pca.transform(x)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pca.transform(x[:3]), y[:3], rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexBuildError, match="either"):
        fit_pca(x, n_components=4, variance=0.9)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat", "HNSW16,Flat", "SQfp16"])
def test_exact_and_approximate_indexes_find_a_planted_neighbour(factory: str) -> None:
    """The neighbour is planted; every index type must rank it first, and give back stored
    vectors (queries by a path already in the index use them)."""
    x = _clustered(3000, 32, seed=1)
    rng = np.random.default_rng(2)
    query = x[1234] + 0.01 * rng.normal(size=32).astype(np.float32)
    query /= np.linalg.norm(query)
    built = build_index(x, factory, n_queries=200)
    scores, ids = search(built.index, query[None], 5)
    assert ids[0, 0] == 1234
    assert scores[0, 0] > 0.99
    assert built.recall >= 0.95
    assert built.recall_queries == (0 if factory == "Flat" else 200)
    np.testing.assert_allclose(reconstruct(built.index, [1234, 7]), x[[1234, 7]], atol=1e-3)


def test_index_type_is_chosen_by_size() -> None:
    assert choose_factory(9_922, 256) == "Flat"
    assert choose_factory(1_000_000, 256) == "IVF4000,Flat"


def test_a_bad_factory_string_is_a_clear_error() -> None:
    with pytest.raises(IndexBuildError, match="cannot make index type 'Nope12'"):
        build_index(_clustered(100, 8, 0), "Nope12")


def test_build_writes_a_complete_index_directory(tmp_path: Path) -> None:
    meta = planted_meta(tmp_path)
    result = build(meta, tmp_path / "idx", BuildOptions(pca=8, gmm_k=3))
    man = json.loads((tmp_path / "idx" / MANIFEST_FILE).read_text())
    assert man["model_id"] == "synthetic@000000000000"
    assert (man["count"], man["dim"], man["index_dim"]) == (90, 16, 8)
    assert man["index_type"] == "Flat" and man["clusters"]["gmm_k"] == 3
    again = load_index_dir(tmp_path / "idx")
    assert again.index.ntotal == 90 and again.pca is not None
    assert again.rows.column("title").to_pylist()[0] == "Work number 0"
    assert result.index_dir.themes["label_sources"] == {"style": "predicted",
                                                        "genre": "predicted"}


def test_themes_use_ground_truth_when_given(tmp_path: Path) -> None:
    meta = planted_meta(tmp_path, n_per=20)
    paths = pq.read_table(meta).column("path").to_pylist()
    # Ground truth disagrees with the predictions on purpose: themes must follow the truth.
    truth = [GENRES[(i // 20 + 1) % 3] for i in range(60)]
    rows = [f"{p},{g},{1700 + (i // 20) * 100}" for i, (p, g) in enumerate(
        zip(paths, truth, strict=True))]
    (tmp_path / "labels.csv").write_text("path,genre,year\n" + "\n".join(rows) + "\n")
    result = build(meta, tmp_path / "idx", BuildOptions(gmm_k=3, labels=tmp_path / "labels.csv"))
    doc = result.index_dir.themes
    assert doc["label_sources"] == {"style": "predicted", "genre": "ground truth",
                                    "period": "ground truth"}
    by_style = {t["labels"]["style"]["top"][0]["label"]: t for t in doc["themes"]}
    assert by_style["Baroque"]["labels"]["genre"]["top"][0] == {
        "label": "landscape", "share": 1.0, "count": 20}
    assert by_style["Cubism"]["labels"]["period"]["top"][0]["label"] == "1800-1849"
    assert by_style["Baroque"]["name"] == "Baroque · landscape · 1700-1749"


def test_a_bundle_of_another_model_is_refused_at_build(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    with pytest.raises(IndexBuildError, match=r"bundle .* is model 'tiny@\w+', but the "
                                              "collection was tagged with 'synthetic@"):
        build(planted_meta(tmp_path), tmp_path / "idx", BuildOptions(bundle_dir=bundle))


def test_pca_options_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(IndexBuildError, match="not both"):
        build(planted_meta(tmp_path), tmp_path / "idx", BuildOptions(pca=4, pca_variance=0.9))


@pytest.fixture()
def built_dir(tmp_path: Path) -> Path:
    build(planted_meta(tmp_path), tmp_path / "idx", BuildOptions(gmm_k=3, kmeans_k=3))
    return tmp_path / "idx"


def test_a_corrupt_faiss_file_gives_a_clear_error(built_dir: Path) -> None:
    data = bytearray((built_dir / FAISS_FILE).read_bytes())
    data[40:60] = b"\xff" * 20
    (built_dir / FAISS_FILE).write_bytes(bytes(data))
    with pytest.raises(IndexStoreError, match=r"vectors.faiss: content does not match"):
        load_index_dir(built_dir)


def test_a_truncated_faiss_file_fails_even_without_hash_checks(built_dir: Path) -> None:
    (built_dir / FAISS_FILE).write_bytes((built_dir / FAISS_FILE).read_bytes()[:100])
    with pytest.raises(IndexStoreError, match="not a readable FAISS index"):
        load_index_dir(built_dir, verify=False)


def test_parts_from_another_index_are_refused(built_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    build(planted_meta(other, n_per=10), tmp_path / "idx2", BuildOptions(gmm_k=3, kmeans_k=3))
    (built_dir / ROWS_FILE).write_bytes((tmp_path / "idx2" / ROWS_FILE).read_bytes())
    with pytest.raises(IndexStoreError, match="rows.parquet: size"):
        load_index_dir(built_dir)
    with pytest.raises(IndexStoreError, match="rows.parquet: 30 rows, the manifest says 90"):
        load_index_dir(built_dir, verify=False)


def test_missing_manifest_and_wrong_format_are_clear(built_dir: Path) -> None:
    man = json.loads((built_dir / MANIFEST_FILE).read_text())
    (built_dir / MANIFEST_FILE).write_text(json.dumps({**man, "format_version": 99}))
    with pytest.raises(IndexStoreError, match="index format 99 is not supported"):
        load_index_dir(built_dir)
    (built_dir / MANIFEST_FILE).unlink()
    with pytest.raises(ArtyLyzeError, match="no manifest.json"):
        load_index_dir(built_dir)


def test_the_manifest_reads_and_writes_back_the_json_it_was_given(tmp_path: Path) -> None:
    """IndexManifest is the one reader and writer of manifest.json: the shipped gallery's
    comes back key for key, keys a newer version adds survive, bad types name the file."""
    from artylyze.index.manifest import IndexManifest, read_manifest, write_manifest
    from artylyze.index.store import DEFAULT_GALLERY_DIR

    shipped = json.loads((DEFAULT_GALLERY_DIR / MANIFEST_FILE).read_text())
    assert IndexManifest.from_dict(shipped).to_dict() == shipped
    (tmp_path / "idx").mkdir()
    newer = {**shipped, "made_by": "a later ArtyLyze"}
    (tmp_path / "idx" / MANIFEST_FILE).write_text(json.dumps(newer))
    man = read_manifest(tmp_path / "idx")
    assert (man.count, man.index_type, man.tasks[0]) == (shipped["count"], "SQfp16", "style")
    write_manifest(tmp_path / "idx", man)
    assert json.loads((tmp_path / "idx" / MANIFEST_FILE).read_text()) == newer
    with pytest.raises(IndexStoreError, match=r"manifest.json: 'count' is str, not int"):
        IndexManifest.from_dict({**shipped, "count": "9"}, tmp_path / "idx" / MANIFEST_FILE)
