"""Streaming index builds (Parquet dataset directories, chunked reads, IVF-PQ) and merging
shard indexes that share one trained index."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from test_index_support import STYLES, write_meta
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.index.build import BuildOptions, build
from artylyze.index.errors import IndexBuildError
from artylyze.index.faiss_index import choose_factory, set_params
from artylyze.index.merge import IndexMergeError, merge_indexes
from artylyze.index.recall import exact_neighbours, recall_at
from artylyze.index.sources import ParquetSource, embedding_bytes, should_stream
from artylyze.index.store import load_index_dir
from artylyze.progress import Progress

N, DIM, PARTS = 2000, 16, 4
OPTS = BuildOptions(index_type="Flat", gmm_k=3, kmeans_k=3)
STREAM = BuildOptions(stream=True)
runner = CliRunner()


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 20 fixed centres (the same centres for every seed)."""
    centres = np.random.default_rng(0).normal(size=(20, DIM))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_dataset(root: Path) -> tuple[np.ndarray, Path, Path]:
    """The same N rows twice: PARTS part files in ``ds/``, and one ``all.parquet``.
    Every 50th row is an error row (no embedding)."""
    x = clustered(N, seed=1)
    paths = [f"{STYLES[i % 3]}/painter-{i % 7}_work-{i}.jpg" for i in range(N)]
    status = ["error" if i % 50 == 49 else "ok" for i in range(N)]
    cols = {"style": [STYLES[i % 3] for i in range(N)]}
    sha = [f"{i:064x}" for i in range(N)]
    (root / "ds").mkdir()
    step = N // PARTS
    for p in range(PARTS):
        sl = slice(p * step, (p + 1) * step)
        write_meta(root / "ds" / f"part-{p:05d}.parquet", paths[sl], x[sl],
                   {"style": cols["style"][sl]}, {"style": STYLES}, "m@1", root,
                   status=status[sl], sha256=sha[sl])
    write_meta(root / "all.parquet", paths, x, cols, {"style": STYLES}, "m@1", root,
               status=status, sha256=sha)
    ok = np.array([s == "ok" for s in status])
    return x[ok], root / "ds", root / "all.parquet"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The dataset, its in-memory and streamed Flat indexes, a trained base and two shards
    built from it (each fit on a sample costs ~2 s of KMeans sweep: built once)."""
    root = tmp_path_factory.mktemp("stream")
    x, ds, single = write_dataset(root)
    build(single, root / "mem", OPTS)
    build(ds, root / "flat", replace(OPTS, stream=True, chunk_rows=300))
    build(ds, root / "trained", BuildOptions(index_type="IVF16,Flat", gmm_k=3, kmeans_k=3,
                                             stream=True, train_only=True))
    shards = []
    for name, parts in (("shard_a", (0, 1)), ("shard_b", (2, 3))):
        (root / name).mkdir()
        for p in parts:
            shutil.copy(ds / f"part-{p:05d}.parquet", root / name)
        build(root / name, root / f"idx_{name}", replace(STREAM, trained=root / "trained",
                                                         chunk_rows=200))
        shards.append(root / name)
    return {"root": root, "x": x, "ds": ds, "single": single, "shards": shards}


class Recorder(Progress):
    """Keeps the size of every chunk the build reports."""

    def __init__(self) -> None:
        self.total, self.chunks = 0, []

    def start(self, total: int, skipped: int = 0) -> None:
        self.total = total

    def advance(self, n: int, errors: int) -> None:
        self.chunks.append(n)


def assert_same_coords(a: np.ndarray, b: np.ndarray) -> None:
    """Cluster coordinates are float32 products stored as float16. Projecting a chunk and
    projecting all rows at once run different BLAS kernels, which round differently in
    float32 (~1e-7 relative); near a float16 rounding boundary that flips one float16 ulp
    (2**-10 relative, under 1e-3 absolute at these magnitudes). Anything larger is a bug."""
    assert a.dtype == b.dtype == np.float16 and a.shape == b.shape
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32),
                               rtol=2.0 ** -10, atol=2.0 ** -14)


def test_a_directory_is_counted_from_status_and_model_columns(data: dict) -> None:
    source = ParquetSource(data["ds"], chunk_rows=300)
    assert (source.count, source.rows_total, source.dim, len(source.files)) == (1960, 2000, 16, 4)
    assert embedding_bytes(data["ds"]) == 2000 * 16 * 4
    assert not should_stream(data["ds"])


def test_streaming_a_directory_equals_the_in_memory_build_of_one_file(data: dict) -> None:
    whole = load_index_dir(data["root"] / "mem")
    streamed = load_index_dir(data["root"] / "flat")
    assert streamed.rows.equals(whole.rows)  # paths, labels, KMeans and GMM clusters
    assert_same_coords(streamed.clusters.coords, whole.clusters.coords)
    assert [t["size"] for t in streamed.themes["themes"]] == \
        [t["size"] for t in whole.themes["themes"]]
    queries = clustered(40, seed=9)
    a, b = streamed.index.search(queries, 10), whole.index.search(queries, 10)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)


def test_embeddings_are_read_in_chunks_and_the_chunk_size_does_not_matter(data: dict) -> None:
    small = Recorder()
    build(data["ds"], data["root"] / "c97", replace(OPTS, stream=True, chunk_rows=97),
          progress=small)
    assert small.total == sum(small.chunks) == 1960
    assert max(small.chunks) <= 97 and len(small.chunks) >= 1960 // 97
    whole_parts = ParquetSource(data["ds"], chunk_rows=100_000).batches(["status"])
    assert [b.num_rows for b in whole_parts] == [N // PARTS] * PARTS  # one batch per part
    one, other = load_index_dir(data["root"] / "c97"), load_index_dir(data["root"] / "flat")
    assert one.rows.equals(other.rows)
    assert faiss.serialize_index(one.index).tobytes() == \
        faiss.serialize_index(other.index).tobytes()


def test_default_index_is_exact_then_sq8_then_pq_as_codes_outgrow_the_budget() -> None:
    """One rule for every build, streamed or not."""
    assert choose_factory(40_000, 256) == "Flat"
    assert choose_factory(1_000_000, 256) == "IVF4000,Flat"  # float32 codes fit 1 GiB
    assert choose_factory(3_000_000, 256) == "IVF6928,SQ8"  # 768 MB of codes
    assert choose_factory(5_000_000, 256) == "IVF8944,PQ128"
    assert choose_factory(10_000_000, 256) == "IVF12649,PQ64"
    assert choose_factory(30_000_000, 96) == "IVF21908,PQ32"


@pytest.mark.parametrize(("factory", "floor"), [("IVF16,PQ8", 0.8), ("IVF16,SQ8", 0.95)])
def test_compressed_index_recall_against_exact_search(data: dict, factory: str,
                                                      floor: float) -> None:
    """Floors set below what was measured: PQ8 on 16 dims 0.857 on new queries and 0.851
    at build time (its codes cap recall, so nprobe stops rising before the 0.95 target);
    SQ8 0.977 and 0.975."""
    out = data["root"] / factory.replace(",", "_")
    res = build(data["ds"], out, BuildOptions(index_type=factory, gmm_k=3, kmeans_k=3,
                                              stream=True, chunk_rows=250))
    index = load_index_dir(out).index
    assert index.ntotal == 1960 and res.manifest.index_type == factory
    queries = clustered(300, seed=7)  # new vectors, never in the index
    truth = exact_neighbours(data["x"], queries, 10)
    assert recall_at(index.search(queries, 10)[1], truth) >= floor
    assert res.manifest.recall_at_10 >= floor and res.manifest.recall_queries == 500


def test_merged_shards_answer_like_one_index_over_all_rows(data: dict) -> None:
    root = data["root"]
    assert load_index_dir(root / "trained").count == 0
    build(data["ds"], root / "idx_all", replace(STREAM, trained=root / "trained"))
    merged = merge_indexes(root / "merged", [root / "idx_shard_a", root / "idx_shard_b"])
    whole = load_index_dir(root / "idx_all")
    assert merged.count == whole.count == 1960
    assert merged.rows.equals(whole.rows)
    assert_same_coords(merged.clusters.coords, whole.clusters.coords)
    assert merged.themes["themes"] == whole.themes["themes"]
    for index in (merged.index, whole.index):
        set_params(index, {"nprobe": 4})
    queries = clustered(50, seed=3)
    m, w = merged.index.search(queries, 10), whole.index.search(queries, 10)
    np.testing.assert_array_equal(m[1], w[1])
    np.testing.assert_allclose(m[0], w[0], rtol=1e-6)


def test_shards_trained_apart_are_not_merged(data: dict) -> None:
    root = data["root"]
    build(data["shards"][1], root / "apart_b",
          BuildOptions(index_type="IVF16,Flat", gmm_k=3, kmeans_k=3, seed=1, stream=True))
    with pytest.raises(IndexMergeError, match="trained apart"):
        merge_indexes(root / "never", [root / "idx_shard_a", root / "apart_b"])
    assert not (root / "never").exists()


def test_streaming_refuses_mixed_models(tmp_path: Path) -> None:
    x = clustered(6, seed=0)
    write_meta(tmp_path / "m.parquet", [f"p{i}.jpg" for i in range(6)], x,
               {"style": ["Baroque"] * 6}, {"style": STYLES}, "a@1", tmp_path,
               models=["a@1"] * 4 + ["b@2"] * 2)
    for stream in (True, False):
        with pytest.raises(IndexBuildError, match=r"different models: 'a@1' \(4 rows\), 'b@2'"):
            build(tmp_path / "m.parquet", tmp_path / "idx", BuildOptions(stream=stream))


def test_streaming_takes_labels_like_the_in_memory_build(data: dict, tmp_path: Path) -> None:
    """--labels no longer depends on the collection's size: both sources join the same
    ground truth, chunk by chunk or at once, and refuse a file that matches nothing."""
    lines = ["path,artist,year"] + [f"{STYLES[i % 3]}/painter-{i % 7}_work-{i}.jpg,"
                                    f"artist-{i % 5},{1800 + i % 90}" for i in range(0, N, 2)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    opts = replace(OPTS, labels=tmp_path / "labels.csv")
    whole = build(data["single"], tmp_path / "mem", opts)
    streamed = build(data["ds"], tmp_path / "str", replace(opts, stream=True, chunk_rows=128))
    a, b = whole.index_dir, streamed.index_dir
    assert b.rows.equals(a.rows)
    assert b.rows.column("true_artist").to_pylist()[:3] == ["artist-0", None, "artist-2"]
    assert a.themes["label_sources"]["artist"] == b.themes["label_sources"]["artist"] == \
        "ground truth"
    assert b.manifest.source["labels"] == str(tmp_path / "labels.csv")
    (tmp_path / "other.csv").write_text("path,artist\nnowhere.jpg,x\n")
    for stream in (True, False):
        with pytest.raises(IndexBuildError, match="no path matches a row"):
            build(data["ds"], tmp_path / "never", BuildOptions(labels=tmp_path / "other.csv",
                                                               stream=stream))
    assert not (tmp_path / "never").exists()


def test_cli_builds_shards_from_a_trained_index_and_merges_them(data: dict,
                                                               tmp_path: Path) -> None:
    def ok(*args: str) -> str:
        res = runner.invoke(app, ["index", *args])
        assert res.exit_code == 0, res.output
        return res.output

    out = ok("build", str(data["ds"]), "--out", str(tmp_path / "base"), "--train-only",
             "--factory", "IVF16,Flat", "--gmm-k", "3", "--k", "3")
    assert "0 artworks, 16 dims, trained, empty" in out
    for shard in data["shards"]:
        out = ok("build", str(shard), "--out", str(tmp_path / shard.name), "--trained",
                 str(tmp_path / "base"), "--chunk-rows", "128")
        assert "980 artworks" in out and "IVF16,Flat (nprobe=" in out
    out = ok("merge", str(tmp_path / "all"), str(tmp_path / "shard_a"), str(tmp_path / "shard_b"))
    assert "1960 artworks from 2 shards, IVF16,Flat" in out
    res = runner.invoke(app, ["index", "merge", str(tmp_path / "bad"), str(tmp_path / "all"),
                              str(data["root"] / "mem")])
    assert res.exit_code == 2 and "trained apart" in res.output
    old = tmp_path / "old"  # an index from before builds recorded their trained parts
    shutil.copytree(data["root"] / "mem", old)
    man = json.loads((old / "manifest.json").read_text())
    del man["trained"]
    (old / "manifest.json").write_text(json.dumps(man))
    res = runner.invoke(app, ["index", "merge", str(tmp_path / "bad"), str(tmp_path / "all"),
                              str(old)])
    assert res.exit_code == 2 and "no trained fingerprint" in res.output
