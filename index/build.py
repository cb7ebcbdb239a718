"""``index build``: meta.parquet -> index directory (FAISS + PCA + clusters + themes).

One function runs the steps in order; each step lives in its own module and takes and
returns arrays, so the pieces can be tested and reused on their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from artylyze.index import clusters as cl
from artylyze.index.entries import Entries, read_meta
from artylyze.index.errors import IndexBuildError
from artylyze.index.faiss_index import BuiltIndex, build_index
from artylyze.index.labels import join_labels, with_period
from artylyze.index.reduce import PCA, fit_pca
from artylyze.index.store import (
    ClusterModel,
    IndexDir,
    check_index_target,
    load_index_dir,
    write_index_dir,
)
from artylyze.index.themes import centroid_affinity, make_themes

CLUSTER_DIMS = 32
POSTERIOR_CHUNK = 50_000


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


@dataclass(frozen=True)
class BuildResult:
    index_dir: IndexDir
    built: BuiltIndex
    entries: Entries


def relative_bundle_path(bundle_dir: str | Path | None, out: Path, model_id: str) -> str | None:
    """Where queries find the bundle: a path relative to the index when possible."""
    if bundle_dir is None:
        return None
    from artylyze.bundle import load_manifest

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


def fit_clusters(entries: Entries, opts: BuildOptions, index_vectors: np.ndarray,
             log: Callable[[str], None]) -> tuple[ClusterModel, dict[str, Any], np.ndarray,
                                                    np.ndarray]:
    """Clustering space, KMeans sweep, GMM by BIC, themes. Returns the model, the themes
    document, and each row's KMeans label and GMM cluster."""
    n, dim = entries.vectors.shape
    dims = max(1, min(opts.cluster_dims, dim, n - 1))
    fit_ids = cl.fit_sample(n, opts.seed)
    space = fit_pca(entries.vectors[fit_ids], n_components=dims)
    coords = space.project(entries.vectors).astype(np.float32)
    x = coords[fit_ids]
    ks = cl.candidate_ks(len(x), cl.KMEANS_KS)
    if opts.kmeans_k is not None and opts.kmeans_k not in ks:
        ks = sorted({*ks, opts.kmeans_k})
    log(f"KMeans sweep over k = {ks} on {len(x)} points in {dims} PCA dims")
    sweep = cl.kmeans_sweep(x, ks, seed=opts.seed)
    kmeans_k = opts.kmeans_k or cl.best_k(sweep)
    centres = cl.fit_kmeans(x, kmeans_k, seed=opts.seed)
    kmeans_labels = cl.nearest_centre(coords, centres)
    log("Gaussian mixture " + (f"k={opts.gmm_k}" if opts.gmm_k else "k by BIC"))
    gmm, bics = cl.fit_gmm(x, k=opts.gmm_k, covariance_type=opts.covariance, seed=opts.seed)
    assign = np.concatenate([gmm.posteriors(coords[s:s + POSTERIOR_CHUNK]).argmax(1)
                             for s in range(0, n, POSTERIOR_CHUNK)]).astype(np.int32)
    labels, sources = entries.theme_labels()
    affinity = centroid_affinity(index_vectors, assign, gmm.k)
    themes = make_themes(assign, gmm.k, labels, sources, affinity, gmm.weights)
    model = ClusterModel(space, gmm, centres, coords.astype(np.float16))
    doc = {"themes": themes, "affinity": np.round(affinity, 4).tolist(),
           "affinity_measure": "cosine similarity of the clusters' mean index vectors",
           "label_sources": sources,
           "kmeans": {"k": int(kmeans_k), "chosen_by": "given" if opts.kmeans_k else
                      "highest silhouette", "sweep": sweep},
           "gmm": {"k": gmm.k, "chosen_by": "given" if opts.gmm_k else "lowest BIC",
                   "covariance": gmm.covariance_type, "dims": dims, "sweep": bics,
                   "fit_rows": int(len(x))}}
    return model, doc, kmeans_labels, assign


def build(meta: str | Path, out: str | Path, opts: BuildOptions | None = None,
          log: Callable[[str], None] | None = None) -> BuildResult:
    """Build an index directory from a meta.parquet; ``log`` receives progress lines."""
    opts = opts or BuildOptions()
    log = log or (lambda _msg: None)
    out = Path(out)
    check_index_target(out)  # before minutes of work, not after
    if opts.pca is not None and opts.pca_variance is not None:
        raise IndexBuildError("give --pca or --pca-variance, not both")
    if opts.covariance not in cl.COVARIANCE_TYPES:
        raise IndexBuildError(f"covariance type must be one of {cl.COVARIANCE_TYPES}, "
                              f"got {opts.covariance!r}")
    entries = read_meta(meta)
    for name, k in (("--k", opts.kmeans_k), ("--gmm-k", opts.gmm_k)):
        if k is not None and not 1 <= k <= entries.count:
            raise IndexBuildError(f"{name} {k}: must be between 1 and the {entries.count} "
                                  "entries")
    log(f"{entries.count} entries with status ok ({entries.rows_error} error rows skipped), "
        f"{entries.dim}-dim embeddings from {entries.model_id}")
    if opts.labels is not None:
        entries = join_labels(entries, opts.labels)
        log(entries.notes[-1])
    entries = with_period(entries)
    bundle_ref = relative_bundle_path(opts.bundle_dir, out, entries.model_id)
    pca: PCA | None = None
    vectors = entries.vectors
    if opts.pca is not None or opts.pca_variance is not None:
        pca = fit_pca(entries.vectors, n_components=opts.pca, variance=opts.pca_variance)
        vectors = pca.transform(entries.vectors)
        log(f"PCA {entries.dim} -> {pca.out_dim} dims keeps "
            f"{float(pca.explained_variance_ratio.sum()):.1%} of the variance")
    built = build_index(vectors, opts.index_type, seed=opts.seed, log=log)
    log(f"index: {built.describe()}")
    model, themes, kmeans_labels, assign = fit_clusters(entries, opts, vectors, log)
    rows = entries.rows.append_column("kmeans", pa.array(kmeans_labels, pa.int32()))
    rows = rows.append_column("cluster", pa.array(assign, pa.int32()))
    manifest = {
        "model_id": entries.model_id, "bundle": entries.bundle, "bundle_dir": bundle_ref,
        "dim": entries.dim, "index_dim": int(vectors.shape[1]), "count": entries.count,
        "metric": "inner_product", "index_type": built.factory,
        "search_params": built.params, "recall_at_10": round(built.recall, 4),
        "recall_queries": built.recall_queries,
        "pca": None if pca is None else {
            "components": pca.out_dim,
            "explained_variance": round(float(pca.explained_variance_ratio.sum()), 4)},
        "tasks": list(entries.tasks),
        "label_sources": themes["label_sources"],
        "clusters": {"kmeans_k": themes["kmeans"]["k"], "gmm_k": themes["gmm"]["k"],
                     "covariance": themes["gmm"]["covariance"], "dims": themes["gmm"]["dims"]},
        "source": {"parquet": str(Path(meta).resolve()), "root": entries.root,
                   "rows_total": entries.rows_total, "rows_error": entries.rows_error,
                   "labels": entries.labels_file},
    }
    thumbs = pack_row_thumbnails(rows, entries.root, opts, log)
    write_index_dir(out, manifest, built.index, rows, pca, model, themes, thumbs)
    log(f"wrote {out}")
    return BuildResult(load_index_dir(out), built, entries)
