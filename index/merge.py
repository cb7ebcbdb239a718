"""Join index directories built on shards of one collection into one index.

Shards can only be joined when they share everything that was *learned*: the same
trained FAISS index (IVF centroids, PQ codebooks), PCA and clusters. Build them from one
trained index (``index build --train-only``, then ``index build SHARD --trained DIR``); the
manifest's ``trained.sha256`` says which trained parts a directory used, and merging
refuses shards whose fingerprints differ. FAISS then moves the shards' inverted lists
(``Index.merge_from``) with ids shifted by the rows before them, so row ``i`` of the merged
``rows.parquet`` is still vector ``i``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from artylyze.index.errors import IndexBuildError
from artylyze.index.store import (
    ClusterModel,
    IndexDir,
    check_index_target,
    load_index_dir,
    write_index_dir,
)


class IndexMergeError(IndexBuildError):
    """Shards that cannot be joined: other models, other trained parts, unmergeable type."""


def _fingerprint(shard: IndexDir) -> str:
    fingerprint = shard.manifest.fingerprint
    if not fingerprint:
        raise IndexMergeError(f"{shard.path}: no trained fingerprint in its manifest; build "
                              "shards with `artylyze index build SHARD --trained DIR`")
    return fingerprint


def merge_indexes(out: str | Path, shards: Sequence[str | Path],
                  log: Callable[[str], None] | None = None) -> IndexDir:
    """Merge shard index directories (in the order given) into ``out``."""
    log = log or (lambda _msg: None)
    if not shards:
        raise IndexMergeError("give at least one shard index directory")
    check_index_target(out)
    loaded = [load_index_dir(s) for s in shards]
    first = loaded[0]
    want = _fingerprint(first)
    for shard in loaded[1:]:
        if shard.model_id != first.model_id:
            raise IndexMergeError(f"{shard.path} is model {shard.model_id!r}, {first.path} is "
                                  f"{first.model_id!r}")
        if _fingerprint(shard) != want:
            raise IndexMergeError(f"{shard.path} and {first.path} were trained apart (trained "
                                  "fingerprints differ); build both with the same --trained")
    index = first.index
    for shard in loaded[1:]:
        log(f"merging {shard.count} vectors of {shard.path}")
        try:
            index.merge_from(shard.index, index.ntotal)
        except RuntimeError as e:
            raise IndexMergeError(f"FAISS cannot merge {first.manifest.index_type!r} "
                                  f"indexes: {str(e).strip().splitlines()[-1]}") from e
    count = sum(s.count for s in loaded)
    rows = pa.concat_tables([s.rows for s in loaded], promote_options="permissive")
    model = ClusterModel(first.clusters.pca, first.clusters.gmm,
                         first.clusters.kmeans_centres,
                         np.concatenate([s.clusters.coords for s in loaded]))
    themes = copy.deepcopy(first.themes)
    for theme in themes["themes"]:
        theme["size"] = sum(int(s.themes["themes"][theme["id"]]["size"]) for s in loaded)
    measured = [s for s in loaded if s.manifest.recall_queries]
    recall = {}
    if measured:  # per-shard measurements, weighted by shard size
        weight = sum(s.count for s in measured)
        recall = {"recall_at_10": round(sum(s.count * float(s.manifest.recall_at_10)
                                            for s in measured) / max(weight, 1), 4),
                  "recall_measured_on": "shards, count-weighted mean"}
    manifest = replace(first.manifest, **recall, count=count, source={
        "shards": [str(s.path.resolve()) for s in loaded], "root": first.root,
        "rows_total": sum(int(s.manifest.source.get("rows_total") or 0) for s in loaded),
        "rows_error": sum(int(s.manifest.source.get("rows_error") or 0) for s in loaded),
        "labels": None})
    write_index_dir(out, manifest, index, rows, first.pca, model, themes)
    log(f"wrote {out}: {count} vectors from {len(loaded)} shards")
    return load_index_dir(out)
