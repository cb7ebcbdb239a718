"""Recall, measured: exact neighbours (the ground truth), streamed over chunks when the
vectors do not fit, and the share of them an approximate search finds."""

from __future__ import annotations

import faiss
import numpy as np


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top-k by inner product (the ground truth recall is measured against);
    brute force without copying ``vectors`` into an index."""
    return faiss.knn(np.ascontiguousarray(queries, np.float32),
                     np.ascontiguousarray(vectors, np.float32), k,
                     metric=faiss.METRIC_INNER_PRODUCT)[1]


def recall_per_query(approx: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per query, the fraction of the exact neighbours the approximate search found."""
    return np.array([len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist()))
                     / max(int((e >= 0).sum()), 1) for a, e in zip(approx, exact, strict=True)])


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of the exact neighbours the approximate search found."""
    per = recall_per_query(approx, exact)
    return float(per.mean()) if len(per) else 1.0


def without_self(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, (row, me) in enumerate(zip(ids, own, strict=True)):
        kept = row[(row != me) & (row >= 0)][:k]
        out[i, : len(kept)] = kept
    return out


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
