"""``index build`` for collections whose embeddings do not fit in memory.

Three passes over the Parquet file(s), each reading only the columns it needs, one batch
of ``chunk_rows`` at a time:

1. ``status`` and ``model`` only: count the ok rows, refuse mixed models.
2. A seeded random sample of ok rows (ids drawn up front, so no reservoir is needed): their
   embeddings and metadata. Everything that *learns* is fitted on this sample: the optional
   PCA, the FAISS training (IVF centroids, PQ codebooks), the clustering-space PCA, the
   KMeans sweep, the GMM, and the themes' label shares. A few hundred thousand random rows
   estimate means, covariances and centroids as well as all rows would, and the fits are the
   ones the in-memory build already does on at most ``clusters.FIT_MAX`` rows.
3. Every ok row again: embeddings are projected, added to the index, assigned their KMeans
   and GMM cluster, and dropped; only the row metadata (path, sha256, labels: no embedding)
   and float16 clustering coordinates stay, plus exact top-10 of the recall queries,
   merged chunk by chunk, so recall is still measured against exact search.

Above ``EXACT_MAX`` rows the default index is IVF with ~4*sqrt(n) lists, its codes sized
to fit ``CODES_BUDGET`` (1 GiB): ``SQ8`` (one byte per dim, near-exact: recall@10 0.975 on
the benchmark's 256-dim vectors) while n*d bytes fit, so up to ~4M vectors of 256 dims;
beyond, ``PQ{m}`` with the most sub-quantizers that fit (PQ128: 0.82, PQ64: 0.52 on the
same data, whose neighbours are close in cosine; real embeddings are better structured).
Theme sizes count all rows; theme label shares come from the sample (``themes.json`` says
how many rows).

A trained, empty index (``train_only``) can be reused (``trained``) to build shards that
``artylyze.index.merge`` joins into one index.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from artylyze.index import clusters as cl
from artylyze.index.build import (
    BuildOptions,
    fit_clusters,
    pack_row_thumbnails,
    relative_bundle_path,
)
from artylyze.index.entries import (
    PASSTHROUGH,
    TRUE_PREFIX,
    Entries,
    check_columns,
    embedding_matrix,
    entry_rows,
    parquet_files,
    schema_metadata,
    schema_tasks,
    single_model,
)
from artylyze.index.errors import IndexBuildError
from artylyze.index.faiss_index import (
    EXACT_MAX,
    IVF_TRAIN_PER_LIST,
    RECALL_K,
    RECALL_QUERIES,
    BuiltIndex,
    ivf_of,
    make_index,
    train_index,
    tune,
    without_self,
)
from artylyze.index.labels import with_period
from artylyze.index.reduce import PCA, fit_pca
from artylyze.index.store import (
    ClusterModel,
    check_index_target,
    load_index_dir,
    write_index_dir,
)
from artylyze.progress import Progress

CHUNK_ROWS = 65_536
#: Bytes the default index's codes may take (the ids add 8 bytes per vector).
CODES_BUDGET = 1 << 30
#: Embeddings larger than this (float32 bytes) are streamed by default.
STREAM_MIN_BYTES = 1 << 30
#: Most rows the sample (training, PCA, clusters, themes) holds: 500k x 256 dims = 0.5 GB.
SAMPLE_MAX = 500_000
#: Stop raising nprobe once recall gains less than this: PQ caps recall below the target.
RECALL_PLATEAU = 0.002
READ_BUFFER = 1 << 20


def choose_stream_factory(n: int, dim: int) -> str:
    """Exact up to ``EXACT_MAX``; beyond, IVF with ~4*sqrt(n) lists and the most precise
    codes whose n codes fit ``CODES_BUDGET``: SQ8 (``dim`` bytes), else PQ with m bytes,
    m the largest divisor of ``dim`` that fits (at most dim/2: PQ on 1-dim pieces is SQ8)."""
    if n <= EXACT_MAX:
        return "Flat"
    nlist = int(4 * math.sqrt(n))
    per_vector = CODES_BUDGET // n
    if per_vector >= dim:
        return f"IVF{nlist},SQ8"
    m = max(k for k in range(1, max(1, min(per_vector, dim // 2)) + 1) if dim % k == 0)
    return f"IVF{nlist},PQ{m}"


def embedding_bytes(path: str | Path) -> int:
    """float32 bytes of all embeddings, from the Parquet footers only (no data read)."""
    total = 0
    for file in parquet_files(Path(path)):
        try:
            meta = pq.ParquetFile(file)
        except (pa.ArrowInvalid, OSError) as e:
            raise IndexBuildError(f"{file}: not a readable Parquet file ({e})") from e
        kind = meta.schema_arrow.field("embedding").type \
            if "embedding" in meta.schema_arrow.names else None
        dim = kind.list_size if kind is not None and pa.types.is_fixed_size_list(kind) else 0
        total += meta.metadata.num_rows * dim * 4
    return total


def should_stream(path: str | Path) -> bool:
    return embedding_bytes(path) > STREAM_MIN_BYTES


@dataclass(frozen=True)
class Source:
    """The Parquet file(s) of one collection, counted but not loaded."""

    path: Path
    files: list[Path]
    schema: pa.Schema
    bundle: dict[str, Any] | None
    root: str | None
    tasks: tuple[str, ...]
    model_id: str
    dim: int
    count: int  # rows with status ok
    rows_total: int
    chunk_rows: int

    def columns(self) -> list[str]:
        """What rows.parquet and the embeddings need; never the ``*_top`` lists."""
        names = self.schema.names
        want = ["path", "sha256", "status", "embedding",
                *self.tasks, *(f"{t}_score" for t in self.tasks),
                *(f"{t}_confident" for t in self.tasks), "year", "year_low", "year_high",
                "novelty", *(n for n in names if n.startswith(TRUE_PREFIX) or n in PASSTHROUGH)]
        return [n for n in dict.fromkeys(want) if n in names]

    def batches(self, columns: list[str]) -> Iterator[pa.Table]:
        """Batches of at most ``chunk_rows`` rows; a buffered reader, so a big row group is
        not loaded whole."""
        for file in self.files:
            try:
                reader = pq.ParquetFile(file, buffer_size=READ_BUFFER, pre_buffer=False)
                for batch in reader.iter_batches(batch_size=self.chunk_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
            except (pa.ArrowInvalid, OSError) as e:
                raise IndexBuildError(f"{file}: not a readable Parquet file ({e})") from e

    def ok_batches(self, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
        """(ok-row id of the first row, the batch's ok rows), in row order."""
        start = 0
        for batch in self.batches(columns):
            is_ok = pc.equal(batch.column("status"), "ok")
            ok = batch if pc.all(is_ok).as_py() else batch.filter(is_ok)  # no copy if all ok
            if ok.num_rows:
                yield start, ok
                start += ok.num_rows

    def entries(self, vectors: np.ndarray, ok: pa.Table) -> Entries:
        """Some ok rows as ``Entries``, so the in-memory build's steps apply to them."""
        return with_period(Entries(
            vectors=vectors, rows=entry_rows(ok, self.tasks), model_id=self.model_id,
            bundle=self.bundle, tasks=self.tasks, root=self.root, rows_total=self.rows_total,
            rows_error=self.rows_total - self.count, source=str(self.path)))


def open_source(path: str | Path, chunk_rows: int = CHUNK_ROWS) -> Source:
    """Pass 1: check the schema of every part, count ok rows, refuse mixed models."""
    path = Path(path)
    if chunk_rows < 1:
        raise IndexBuildError(f"chunk size must be at least 1 row, got {chunk_rows}")
    files = parquet_files(path)
    try:
        schema = pq.ParquetFile(files[0]).schema_arrow
    except (pa.ArrowInvalid, OSError) as e:
        raise IndexBuildError(f"{files[0]}: not a readable Parquet file ({e})") from e
    check_columns(schema, str(path))
    kind = schema.field("embedding").type
    if not pa.types.is_fixed_size_list(kind):
        raise IndexBuildError(f"{path}: column embedding is {kind}; streaming needs "
                              "fixed_size_list<float32, D> (as `artylyze tag` writes)")
    bundle, root = schema_metadata(schema)
    source = Source(path, files, schema, bundle, root, schema_tasks(schema), "",
                    kind.list_size, 0, 0, chunk_rows)
    total, models = 0, {}
    for batch in source.batches(["status", "model"]):
        total += batch.num_rows
        ok = batch.filter(pc.equal(batch.column("status"), "ok"))
        for m in pc.value_counts(ok.column("model")).to_pylist():
            models[m["values"]] = models.get(m["values"], 0) + m["counts"]
    for file in files[1:]:
        other = pq.ParquetFile(file).schema_arrow
        if "embedding" not in other.names or other.field("embedding").type != kind:
            raise IndexBuildError(f"{file}: its embedding column differs from {files[0].name}'s")
    model_id = single_model(models, total, bundle, str(path))
    return replace(source, model_id=model_id, count=sum(models.values()), rows_total=total)


def read_sample(source: Source, ids: np.ndarray) -> Entries:
    """Pass 2: the ok rows ``ids`` (sorted) with their embeddings, in id order."""
    vectors, tables = [], []
    for start, ok in source.ok_batches(source.columns()):
        lo, hi = np.searchsorted(ids, [start, start + ok.num_rows])
        if hi > lo:
            picked = ok.take(pa.array(ids[lo:hi] - start))
            vectors.append(embedding_matrix(picked, str(source.path)))
            tables.append(picked)
    return source.entries(np.concatenate(vectors), pa.concat_tables(tables))


@dataclass
class Trained:
    """Everything fitted on the sample: what shards must share to be merged."""

    index: faiss.Index  # trained, empty
    factory: str
    params: dict[str, int]
    pca: PCA | None
    clusters: ClusterModel  # coords: of the sample rows only
    themes: dict[str, Any]  # sizes and label shares of the sample

    def fingerprint(self) -> str:
        """sha256 of the trained, empty index and the fitted parameters; search settings
        (nprobe) are left out, they may differ between shards."""
        empty = faiss.clone_index(self.index)
        empty.reset()
        ivf = ivf_of(empty)
        if ivf is not None:
            ivf.nprobe = 1
        h = hashlib.sha256(faiss.serialize_index(empty).tobytes())
        arrays = {**(self.pca.to_arrays("pca_") if self.pca else {}),
                  **self.clusters.to_arrays()}
        for name in sorted(arrays):
            if name != "coords":
                h.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
        return h.hexdigest()


def trained_index(sample: np.ndarray, factory: str, seed: int,
                  log: Callable[[str], None]) -> faiss.Index:
    """An empty index of type ``factory`` trained on ``sample`` (index-space vectors)."""
    index = make_index(factory, sample.shape[1])
    if not index.is_trained:
        train_index(index, factory, sample, seed, log)
    return index


def fit_on_sample(sample: Entries, opts: BuildOptions, n: int,
                  log: Callable[[str], None]) -> Trained:
    """PCA, FAISS training and clusters, all from the sample."""
    for name, k in (("--k", opts.kmeans_k), ("--gmm-k", opts.gmm_k)):
        if k is not None and not 1 <= k <= sample.count:
            raise IndexBuildError(f"{name} {k}: must be between 1 and the {sample.count} "
                                  "sampled entries")
    pca, vectors = None, sample.vectors
    if opts.pca is not None or opts.pca_variance is not None:
        pca = fit_pca(sample.vectors, n_components=opts.pca, variance=opts.pca_variance)
        vectors = pca.transform(sample.vectors)
        log(f"PCA {sample.dim} -> {pca.out_dim} dims (fitted on {sample.count} sampled rows)")
    factory = (opts.index_type or choose_stream_factory(n, vectors.shape[1])).strip()
    index = trained_index(vectors, factory, opts.seed, log)
    model, themes, _, _ = fit_clusters(sample, opts, vectors, log)
    themes["labels_from_sample_rows"] = sample.count
    return Trained(index, factory, {}, pca, model, themes)


def load_trained(path: str | Path, source: Source) -> Trained:
    """The trained parts of an index directory (made with ``train_only`` or a full build)."""
    done = load_index_dir(path)
    man = done.manifest
    if man["model_id"] != source.model_id or int(man["dim"]) != source.dim:
        raise IndexBuildError(f"{path}: trained for model {man['model_id']!r} ({man['dim']} "
                              f"dims), the collection is {source.model_id!r} ({source.dim} dims)")
    index = faiss.clone_index(done.index)
    index.reset()
    return Trained(index, str(man["index_type"]), dict(man.get("search_params") or {}),
                   done.pca, done.clusters, done.themes)


def _sample_size(source: Source, factory: str | None, trained: bool) -> int:
    if trained:  # only the recall queries are needed
        return min(source.count, RECALL_QUERIES)
    factory = factory or choose_stream_factory(source.count, source.dim)
    m = re.search(r"IVF(\d+)", factory)
    need = IVF_TRAIN_PER_LIST * int(m.group(1)) if m else 0
    return min(source.count, SAMPLE_MAX, max(cl.FIT_MAX, need, RECALL_QUERIES))


class ExactTopK:
    """Exact top-k of a few queries over a stream of chunks: the recall's ground truth."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries = np.ascontiguousarray(queries, np.float32)
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def add(self, vectors: np.ndarray, first_id: int) -> None:
        if not len(self.queries):
            return
        k = min(self.k, len(vectors))
        d, i = faiss.knn(self.queries, np.ascontiguousarray(vectors, np.float32), k,
                         metric=faiss.METRIC_INNER_PRODUCT)
        scores = np.concatenate([self.scores, d], axis=1)
        ids = np.concatenate([self.ids, i + first_id], axis=1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(scores, top, axis=1)
        self.ids = np.take_along_axis(ids, top, axis=1)


@dataclass(frozen=True)
class StreamResult:
    """What the CLI prints; the index itself stays on disk (loading it would double RSS)."""

    out: Path
    manifest: dict[str, Any]
    themes: dict[str, Any]
    built: BuiltIndex


def build_streaming(meta: str | Path, out: str | Path, opts: BuildOptions | None = None,
                    chunk_rows: int = CHUNK_ROWS, trained: str | Path | None = None,
                    train_only: bool = False, log: Callable[[str], None] | None = None,
                    progress: Progress | None = None) -> StreamResult:
    """Build an index directory from a meta.parquet file or dataset directory of any size,
    holding one chunk of embeddings at a time (see the module docstring)."""
    opts = opts or BuildOptions()
    log = log or (lambda _msg: None)
    progress = progress or Progress()
    out = Path(out)
    check_index_target(out)  # before minutes of work, not after
    if opts.labels is not None:
        raise IndexBuildError("--labels is not supported by streaming builds yet; join the "
                              "labels into the meta.parquet (true_<field> columns) instead")
    if opts.pca is not None and opts.pca_variance is not None:
        raise IndexBuildError("give --pca or --pca-variance, not both")
    if trained is not None and train_only:
        raise IndexBuildError("--trained and --train-only exclude each other")
    if trained is not None and any(v is not None for v in (
            opts.pca, opts.pca_variance, opts.index_type, opts.kmeans_k, opts.gmm_k)):
        raise IndexBuildError("with --trained, the PCA, index type and clusters come from the "
                              "trained index; drop --pca, --index-type, --k and --gmm-k")
    source = open_source(meta, chunk_rows)
    log(f"{source.count} entries with status ok ({source.rows_total - source.count} error rows "
        f"skipped) in {len(source.files)} file(s), {source.dim}-dim embeddings from "
        f"{source.model_id}; reading {chunk_rows} rows at a time")
    bundle_ref = relative_bundle_path(opts.bundle_dir, out, source.model_id)
    rng = np.random.default_rng(opts.seed)
    size = _sample_size(source, opts.index_type, trained is not None)
    ids = np.sort(rng.choice(source.count, size, replace=False)) if size < source.count \
        else np.arange(source.count)
    log(f"reading a random sample of {size} rows")
    sample = read_sample(source, ids)
    fit = load_trained(trained, source) if trained is not None else \
        fit_on_sample(sample, opts, source.count, log)
    to_index = fit.pca.transform if fit.pca is not None else (lambda v: v)
    pick = np.sort(rng.choice(size, min(RECALL_QUERIES, size), replace=False))
    if fit.factory == "Flat" or train_only:  # exact: nothing to measure
        pick = pick[:0]
    qids, queries = ids[pick], to_index(sample.vectors[pick])
    k = max(1, min(RECALL_K, source.count - 1))
    truth = ExactTopK(queries, k + 1)
    fingerprint = fit.fingerprint()
    del sample
    index, gmm = fit.index, fit.clusters.gmm
    sizes = np.zeros(gmm.k, np.int64)
    tables = []
    coords = np.zeros((0 if train_only else source.count, gmm.dim), np.float16)
    if not train_only:
        log(f"adding {source.count} vectors to {fit.factory}")
        progress.start(source.count)
        for start, ok in source.ok_batches(source.columns()):
            raw = embedding_matrix(ok, str(source.path))
            vectors = to_index(raw)
            index.add(vectors)
            truth.add(vectors, start)
            xy = fit.clusters.space(raw).astype(np.float32)
            assign = gmm.posteriors(xy).argmax(1).astype(np.int32)
            sizes += np.bincount(assign, minlength=gmm.k)
            rows = source.entries(raw[:0], ok).rows
            rows = rows.append_column("kmeans", pa.array(cl.nearest_centre(
                xy, fit.clusters.kmeans_centres), pa.int32()))
            tables.append(rows.append_column("cluster", pa.array(assign, pa.int32())))
            coords[start:start + len(xy)] = xy
            progress.advance(ok.num_rows, 0)
        progress.finish()
    else:
        tables.append(_empty_rows(source))
    rows = pa.concat_tables(tables, promote_options="permissive")
    built = tune(index, fit.factory, queries, qids, without_self(truth.ids, qids, k),
                 plateau=RECALL_PLATEAU, log=log) \
        if not train_only else BuiltIndex(index, fit.factory, fit.params, 0.0, 0)
    if not train_only:
        log(f"index: {built.describe()}")
    model = ClusterModel(fit.clusters.pca, gmm, fit.clusters.kmeans_centres, coords)
    themes = copy.deepcopy(fit.themes)
    if not train_only:
        for theme in themes["themes"]:
            theme["size"] = int(sizes[theme["id"]])
    manifest = {
        "model_id": source.model_id, "bundle": source.bundle, "bundle_dir": bundle_ref,
        "dim": source.dim, "index_dim": int(index.d), "count": int(index.ntotal),
        "metric": "inner_product", "index_type": fit.factory, "search_params": built.params,
        "recall_at_10": round(built.recall, 4), "recall_queries": built.recall_queries,
        "pca": None if fit.pca is None else {
            "components": fit.pca.out_dim,
            "explained_variance": round(float(fit.pca.explained_variance_ratio.sum()), 4)},
        "tasks": list(source.tasks), "label_sources": themes["label_sources"],
        "clusters": {"kmeans_k": themes["kmeans"]["k"], "gmm_k": themes["gmm"]["k"],
                     "covariance": themes["gmm"]["covariance"], "dims": themes["gmm"]["dims"]},
        "source": {"parquet": str(Path(meta).resolve()), "root": source.root,
                   "rows_total": 0 if train_only else source.rows_total,
                   "rows_error": 0 if train_only else source.rows_total - source.count,
                   "labels": None},
        "trained": {"sha256": fingerprint, "sample_rows": size,
                    "from": None if trained is None else str(Path(trained).resolve()),
                    "empty": train_only},
        "stream": {"chunk_rows": chunk_rows, "files": len(source.files)},
    }
    thumbs = pack_row_thumbnails(rows, source.root, opts, log)
    write_index_dir(out, manifest, index, rows, fit.pca, model, themes, thumbs)
    log(f"wrote {out}")
    return StreamResult(out, manifest, themes, built)


def _empty_rows(source: Source) -> pa.Table:
    """The rows table of an index with no rows yet (``train_only``), same columns."""
    ok = pa.Table.from_batches([], schema=source.schema).select(source.columns())
    rows = source.entries(np.zeros((0, source.dim), np.float32), ok).rows
    return rows.append_column("kmeans", pa.array([], pa.int32())).append_column(
        "cluster", pa.array([], pa.int32()))
