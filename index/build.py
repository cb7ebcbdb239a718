"""``index build``: a collection -> index directory (FAISS + PCA + clusters + themes).

One build for every size; only the :class:`~artylyze.index.sources.Source` differs (the
whole meta.parquet in memory, or Parquet read in chunks), so every option works with both.
Three passes over the source, each step in its own module:

1. Count the ok rows and refuse mixed models (the source does it when opened).
2. A seeded random sample of ok rows (ids drawn up front, so no reservoir is needed; every
   row for an in-memory source): everything that *learns* is fitted on it
   (``artylyze.index.fit``).
3. Every ok row again, chunk by chunk: embeddings are projected, added to the index,
   assigned their KMeans and GMM cluster, and dropped; only the row metadata (no embedding)
   and float16 clustering coordinates stay, plus the exact top-10 of the recall queries,
   merged chunk by chunk, so recall is still measured against exact search.

A trained, empty index (``train_only``) can be reused (``trained``) to build shards that
``artylyze.index.merge`` joins into one index.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from artylyze.index import clusters as cl
from artylyze.index.errors import IndexBuildError
from artylyze.index.faiss_index import RECALL_K, RECALL_QUERIES, BuiltIndex, train_rows, tune
from artylyze.index.filenames import DEFAULT, MANIFEST_KEY, FileNames, compile_pattern
from artylyze.index.fit import Trained, fit_on_sample, load_trained
from artylyze.index.manifest import IndexManifest
from artylyze.index.recall import ExactTopK, without_self
from artylyze.index.sources import CHUNK_ROWS, Source, open_source
from artylyze.index.store import (
    ClusterModel,
    IndexDir,
    check_index_target,
    load_index_dir,
    write_index_dir,
)
from artylyze.progress import Progress

CLUSTER_DIMS = 32
#: Stop raising nprobe once recall gains less than this: PQ caps recall below the target.
RECALL_PLATEAU = 0.002


@dataclass(frozen=True)
class BuildOptions:
    """What ``artylyze index build`` lets a user choose; None means "ArtyLyze decides"."""

    pca: int | None = None
    pca_variance: float | None = None
    index_type: str | None = None
    kmeans_k: int | None = None
    gmm_k: int | None = None
    covariance: str = "diag"
    cluster_dims: int = CLUSTER_DIMS
    labels: str | Path | tuple[str | Path, ...] | None = None
    bundle_dir: str | Path | None = None
    thumbnails: int | None = None  # pack a WebP of this many px per row into the index
    seed: int = 0
    stream: bool | None = False  # read in chunks; None: when the embeddings exceed 1 GiB
    chunk_rows: int = CHUNK_ROWS  # rows read at a time when streaming
    trained: str | Path | None = None  # reuse this index directory's trained parts
    train_only: bool = False  # write a trained, empty index (the base of shards)
    filename_pattern: str | None = None  # titles from file names: see index/filenames.py


@dataclass
class BuildResult:
    """What the CLI prints; the index is loaded only when asked for (it would double RSS)."""

    out: Path
    manifest: IndexManifest
    themes: dict[str, Any]
    built: BuiltIndex

    @cached_property
    def index_dir(self) -> IndexDir:
        return load_index_dir(self.out)


def check_options(opts: BuildOptions) -> None:
    """Refuse contradicting options before minutes of work, not after."""
    if opts.pca is not None and opts.pca_variance is not None:
        raise IndexBuildError("give --pca or --pca-variance, not both")
    if opts.covariance not in cl.COVARIANCE_TYPES:
        raise IndexBuildError(f"covariance type must be one of {cl.COVARIANCE_TYPES}, "
                              f"got {opts.covariance!r}")
    if opts.filename_pattern is not None:
        compile_pattern(opts.filename_pattern)
    if opts.trained is not None and opts.train_only:
        raise IndexBuildError("--trained and --train-only exclude each other")
    if opts.trained is not None and any(v is not None for v in (
            opts.pca, opts.pca_variance, opts.index_type, opts.kmeans_k, opts.gmm_k)):
        raise IndexBuildError("with --trained, the PCA, index type and clusters come from the "
                              "trained index; drop --pca, --index-type, --k and --gmm-k")


def relative_bundle_path(bundle_dir: str | Path | None, out: Path, model_id: str) -> str | None:
    """Where queries find the bundle: a path relative to the index when possible."""
    if bundle_dir is None:
        return None
    from artylyze.model.bundle import load_manifest

    manifest = load_manifest(bundle_dir)
    if manifest.model_id != model_id:
        raise IndexBuildError(f"bundle {bundle_dir} is model {manifest.model_id!r}, but the "
                              f"collection was tagged with {model_id!r}")
    target = Path(bundle_dir).resolve()
    try:
        return os.path.relpath(target, out.resolve())
    except ValueError:  # another drive on Windows
        return str(target)


def pack_row_thumbnails(rows: pa.Table, root: str | None, opts: BuildOptions,
                        log: Callable[[str], None]) -> pa.Table | None:
    """The ``--thumbnails`` table for ``rows`` (None without the option)."""
    if opts.thumbnails is None:
        return None
    from artylyze.index.thumbs import pack_thumbnails

    n = rows.num_rows
    log(f"packing {n} thumbnails of {opts.thumbnails} px from {root}")
    thumbs = pack_thumbnails(root, rows.column("path").to_pylist(), opts.thumbnails,
                             tick=lambda done: log(f"thumbnails: {done}/{n}"))
    missing = thumbs.column(0).null_count
    if missing:
        log(f"thumbnails: {missing} of {n} files not found under {root}; those show grey")
    return thumbs


def sample_size(source: Source, opts: BuildOptions) -> int:
    """Rows to fit on: all of an in-memory source; else enough for the clusters, the
    index's training and the recall queries, at most ``source.sample_max``."""
    if opts.trained is not None:  # only the recall queries are needed
        return min(source.count, RECALL_QUERIES)
    if source.resident:
        return source.count
    from artylyze.index.faiss_index import choose_factory

    factory = opts.index_type or choose_factory(source.count, source.dim)
    return min(source.count, source.sample_max,
               max(cl.FIT_MAX, train_rows(factory), RECALL_QUERIES))


@dataclass
class Filled:
    """Pass 3's output: every row's metadata and clustering coordinates, cluster sizes."""

    rows: pa.Table
    coords: np.ndarray
    sizes: np.ndarray


def fill(source: Source, fit: Trained, truth: ExactTopK, progress: Progress) -> Filled:
    """Add every row to ``fit.index`` chunk by chunk, holding one chunk of embeddings."""
    gmm, space = fit.clusters.gmm, fit.clusters
    sizes = np.zeros(gmm.k, np.int64)
    coords = np.zeros((source.count, gmm.dim), np.float16)
    tables = []
    progress.start(source.count)
    for start, chunk in source.chunks():
        vectors = fit.to_index(chunk.vectors)
        fit.index.add(vectors)
        truth.add(vectors, start)
        xy = space.space(chunk.vectors).astype(np.float32)
        assign = gmm.posteriors(xy).argmax(1).astype(np.int32)
        sizes += np.bincount(assign, minlength=gmm.k)
        kmeans = cl.nearest_centre(xy, fit.clusters.kmeans_centres)
        tables.append(chunk.rows.append_column("kmeans", pa.array(kmeans, pa.int32()))
                      .append_column("cluster", pa.array(assign, pa.int32())))
        coords[start:start + len(xy)] = xy
        progress.advance(chunk.count, 0)
    progress.finish()
    return Filled(pa.concat_tables(tables, promote_options="permissive"), coords, sizes)


def _no_rows(source: Source, gmm_dim: int, k: int) -> Filled:
    """The rows of an index with no rows yet (``train_only``), same columns."""
    rows = source.empty().rows
    rows = rows.append_column("kmeans", pa.array([], pa.int32())).append_column(
        "cluster", pa.array([], pa.int32()))
    return Filled(rows, np.zeros((0, gmm_dim), np.float16), np.zeros(k, np.int64))


def build(source: Source | str | Path, out: str | Path, opts: BuildOptions | None = None,
          log: Callable[[str], None] | None = None,
          progress: Progress | None = None) -> BuildResult:
    """Build an index directory from a source (or a meta.parquet file / dataset directory,
    opened by ``opts.stream``); ``log`` receives progress lines."""
    opts = opts or BuildOptions()
    log = log or (lambda _msg: None)
    out = Path(out)
    check_index_target(out)  # before minutes of work, not after
    check_options(opts)
    if isinstance(source, str | Path):
        source = open_source(source, opts.stream, opts.chunk_rows, opts.labels,
                             FileNames(opts.filename_pattern))
    elif opts.labels is not None and source.labels_file is None:
        raise IndexBuildError("--labels: give the labels to the source when opening it")
    how = source.describe()
    log(f"{source.count} entries with status ok ({source.rows_total - source.count} error rows "
        f"skipped), {source.dim}-dim embeddings from {source.model_id}"
        + (f"; {how['files']} file(s) read {how['chunk_rows']} rows at a time" if how else ""))
    for note in source.notes:
        log(note)
    bundle_ref = relative_bundle_path(opts.bundle_dir, out, source.model_id)
    rng = np.random.default_rng(opts.seed)
    size = sample_size(source, opts)
    ids = np.sort(rng.choice(source.count, size, replace=False)) if size < source.count \
        else np.arange(source.count)
    if size < source.count:
        log(f"reading a random sample of {size} rows")
    sample = source.sample(ids)
    fit = load_trained(opts.trained, source.model_id, source.dim) if opts.trained is not None \
        else fit_on_sample(sample, opts, source.count, rng, log)
    pick = np.sort(rng.choice(size, min(RECALL_QUERIES, size), replace=False))
    if fit.factory == "Flat" or opts.train_only:  # exact: nothing to measure
        pick = pick[:0]
    qids, queries = ids[pick], fit.to_index(sample.vectors[pick])
    k = max(1, min(RECALL_K, source.count - 1))
    truth = ExactTopK(queries, k + 1)
    fingerprint = fit.fingerprint()
    del sample
    if opts.train_only:
        filled = _no_rows(source, fit.clusters.gmm.dim, fit.clusters.gmm.k)
        built = BuiltIndex(fit.index, fit.factory, fit.params, 0.0, 0)
    else:
        log(f"adding {source.count} vectors to {fit.factory}")
        filled = fill(source, fit, truth, progress or Progress())
        built = tune(fit.index, fit.factory, queries, qids, without_self(truth.ids, qids, k),
                     plateau=RECALL_PLATEAU, log=log)
        log(f"index: {built.describe()}")
    themes = copy.deepcopy(fit.themes)
    if not opts.train_only:
        for theme in themes["themes"]:
            theme["size"] = int(filled.sizes[theme["id"]])
    model = ClusterModel(fit.clusters.pca, fit.clusters.gmm, fit.clusters.kmeans_centres,
                         filled.coords)
    manifest = _manifest(source, opts, fit, built, themes, bundle_ref, out_of=source.path,
                         trained={"sha256": fingerprint, "sample_rows": size,
                                  "from": None if opts.trained is None
                                  else str(Path(opts.trained).resolve()),
                                  "empty": opts.train_only})
    thumbs = pack_row_thumbnails(filled.rows, source.root, opts, log)
    write_index_dir(out, manifest, fit.index, filled.rows, fit.pca, model, themes, thumbs)
    log(f"wrote {out}")
    return BuildResult(out, manifest, themes, built)


def _manifest(source: Source, opts: BuildOptions, fit: Trained, built: BuiltIndex,
              themes: dict[str, Any], bundle_ref: str | None, out_of: Path,
              trained: dict[str, Any]) -> IndexManifest:
    empty = opts.train_only
    return IndexManifest(
        model_id=source.model_id, bundle=source.bundle, bundle_dir=bundle_ref, dim=source.dim,
        index_dim=int(fit.index.d), count=int(fit.index.ntotal), index_type=fit.factory,
        search_params=built.params, recall_at_10=round(built.recall, 4),
        recall_queries=built.recall_queries,
        pca=None if fit.pca is None else {
            "components": fit.pca.out_dim,
            "explained_variance": round(float(fit.pca.explained_variance_ratio.sum()), 4)},
        tasks=source.tasks, label_sources=themes["label_sources"],
        clusters={"kmeans_k": themes["kmeans"]["k"], "gmm_k": themes["gmm"]["k"],
                  "covariance": themes["gmm"]["covariance"], "dims": themes["gmm"]["dims"]},
        source={"parquet": str(out_of.resolve()), "root": source.root,
                "rows_total": 0 if empty else source.rows_total,
                "rows_error": 0 if empty else source.rows_total - source.count,
                "labels": source.labels_file},
        trained=trained, stream=source.describe(),
        extra={MANIFEST_KEY: getattr(source, "names", DEFAULT).describe()})
