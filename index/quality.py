"""Retrieval quality: same-label precision@k of test-split queries against the train split.

The function takes plain arrays, so any features can be compared on equal terms (the
default bundle's embeddings, raw ImageNet EfficientNet-Lite0 features, ...)::

    python -m artylyze.index.quality META.parquet LABELS.csv        # a tagged collection
    python -m artylyze.index.quality FEATURES.npz LABELS.csv        # arrays: path, embedding

Search is exact (cosine). For each task, the gallery is the train rows whose label is
known, and the queries are the test rows whose label is known; ``chance`` is what random
retrieval would score, for scale.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from artylyze.errors import ArtyLyzeError
from artylyze.index.entries import TRUE_PREFIX, read_meta
from artylyze.index.errors import IndexBuildError
from artylyze.index.labels import join_labels, read_labels

TASKS = ("style", "artist", "genre", "nationality")


def precision_at_k(embeddings: np.ndarray, labels: Mapping[str, Sequence[str | None]],
                   split: Sequence[str | None], k: int = 10, query_split: str = "test",
                   gallery_split: str = "train") -> dict[str, dict[str, float]]:
    """Per task: mean share of each query's k nearest gallery items with the query's label."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(split):
        raise IndexBuildError(f"embeddings {list(x.shape)} and {len(split)} split values differ")
    x = np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    splits = np.asarray([str(s) if s is not None else "" for s in split])
    out: dict[str, dict[str, float]] = {}
    for task, values in labels.items():
        lab = np.asarray([v if v not in (None, "") else "" for v in values], dtype=object)
        if len(lab) != len(x):
            raise IndexBuildError(f"{task}: {len(lab)} labels for {len(x)} embeddings")
        known = lab != ""
        gal = np.flatnonzero((splits == gallery_split) & known)
        qry = np.flatnonzero((splits == query_split) & known)
        if len(gal) == 0 or len(qry) == 0:
            continue
        kk = min(k, len(gal))
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x[gal])
        ids = flat.search(x[qry], kk)[1]
        same = lab[gal][ids] == lab[qry][:, None]
        freq = Counter(lab[gal].tolist())
        chance = np.mean([freq[v] / len(gal) for v in lab[qry]])
        out[task] = {"precision": round(float(same.mean()), 4), "chance": round(float(chance), 4),
                     "queries": int(len(qry)), "gallery": int(len(gal)), "k": int(kk)}
    return out


def _labels_for(paths: list[str], labels_csv: str | Path) -> dict[str, list[str | None]]:
    table = read_labels(labels_csv)
    by_path = {str(p): i for i, p in enumerate(table.column("path").to_pylist())}
    idx = [by_path.get(p) for p in paths]
    if not any(i is not None for i in idx):
        raise IndexBuildError(f"{labels_csv}: no path matches the features' paths")
    cols = {n: table.column(n).to_pylist() for n in table.column_names if n != "path"}
    return {n: [None if i is None else v[i] for i in idx] for n, v in cols.items()}


def evaluate_file(features: str | Path, labels_csv: str | Path, k: int = 10,
                  tasks: Sequence[str] = TASKS) -> dict[str, Any]:
    """precision@k for a meta.parquet (its ok rows) or an npz with ``path`` + ``embedding``."""
    features = Path(features)
    if features.suffix == ".npz":
        with np.load(features, allow_pickle=False) as data:
            if "path" not in data.files or "embedding" not in data.files:
                raise IndexBuildError(f"{features}: npz needs arrays 'path' and 'embedding'")
            paths, x = [str(p) for p in data["path"]], data["embedding"]
        cols = _labels_for(paths, labels_csv)
        model = features.name
    else:
        entries = join_labels(read_meta(features), labels_csv)
        x, model = entries.vectors, entries.model_id
        rows = entries.rows
        cols = {n[len(TRUE_PREFIX):]: rows.column(n).to_pylist()
                for n in rows.column_names if n.startswith(TRUE_PREFIX)}
        cols["split"] = rows.column("split").to_pylist() if "split" in rows.column_names else []
    if not cols.get("split"):
        raise IndexBuildError(f"{labels_csv}: needs a 'split' column (train/val/test)")
    result = precision_at_k(x, {t: cols[t] for t in tasks if t in cols}, cols["split"], k=k)
    return {"features": str(features), "model": model, "k": k, "precision_at_k": result}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artylyze.index.quality",
                                     description="Same-label precision@k, test vs train split.")
    parser.add_argument("features", help="meta.parquet, or .npz with arrays path + embedding")
    parser.add_argument("labels", help="labels CSV with path, split and label columns")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        report = evaluate_file(args.features, args.labels, k=args.k)
    except (ArtyLyzeError, OSError, ValueError) as e:
        print(f"error: {e}")
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
