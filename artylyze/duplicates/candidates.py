"""Candidate pairs: a FAISS range search on unit embeddings, one chunk of queries at a time.

Memory stays flat in the number of works apart from the index itself: each chunk of
``chunk`` queries returns only the pairs above ``threshold``, capped to the ``per_item``
nearest, and only pairs ``i < j`` are kept. Up to ``EXACT_MAX`` vectors the index is exact
(``IndexFlatIP``); above it an IVF-Flat with ~4 sqrt(n) lists is probed ``nprobe`` lists deep,
trained on a seeded sample (a copy sits in the same list as its original almost always,
since the two are far closer than the list radius).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faiss
import numpy as np

EXACT_MAX = 50_000
CHUNK = 4096
#: Candidates kept per work: 20 found more copies than 10 on the val split (recall 0.949 vs
#: 0.936 at the same precision 1.0; benchmarks/duplicates.py --split val --sweep --per-item).
PER_ITEM = 20
NPROBE = 16
TRAIN_MAX = 100_000


@dataclass
class Pairs:
    """Candidate pairs ``a < b`` with their cosine similarity."""

    a: np.ndarray  # int64
    b: np.ndarray  # int64
    score: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def concat(cls, parts: Iterable[Pairs]) -> Pairs:
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.a for p in parts]), np.concatenate([p.b for p in parts]),
                   np.concatenate([p.score for p in parts]))

    def unique(self) -> Pairs:
        """Each pair once (a query finds b and b finds a)."""
        if not len(self):
            return self
        key = self.a * (int(max(self.a.max(), self.b.max())) + 1) + self.b
        _, first = np.unique(key, return_index=True)
        return Pairs(self.a[first], self.b[first], self.score[first])


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def make_index(dim: int, n: int, sample: np.ndarray | None = None, seed: int = 0,
               nprobe: int = NPROBE) -> faiss.Index:
    """An empty inner-product index for ``n`` vectors: exact up to EXACT_MAX, else IVF-Flat
    trained on ``sample`` (unit vectors)."""
    if n <= EXACT_MAX:
        return faiss.IndexFlatIP(dim)
    nlist = int(4 * np.sqrt(n))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = 10
    if sample is None:
        raise ValueError("an IVF index needs a training sample")
    index.train(unit(sample))
    index.nprobe = nprobe
    return index


def range_pairs(index: faiss.Index, queries: np.ndarray, first_id: int, threshold: float,
                per_item: int = PER_ITEM) -> Pairs:
    """Pairs (query id, hit) above ``threshold``, at most ``per_item`` nearest per query,
    itself left out; ids are ``first_id + row`` for the queries."""
    lims, dist, ids = index.range_search(unit(queries), float(threshold))
    lims = lims.astype(np.int64)
    counts = np.diff(lims)
    qid = np.repeat(np.arange(len(queries), dtype=np.int64) + first_id, counts)
    keep = ids != qid
    if per_item and counts.max(initial=0) > per_item:
        # rank within each query's hits by score, keep the best per_item
        order = np.lexsort((-dist, qid))
        rank = _rank_within(qid[order])
        mask = np.zeros(len(order), bool)
        mask[order[rank <= per_item]] = True  # <=: the query itself takes one place
        keep &= mask
    a, b, s = qid[keep], ids[keep].astype(np.int64), dist[keep].astype(np.float32)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return Pairs(lo, hi, s)


def _rank_within(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal keys of a sorted array."""
    if not len(sorted_keys):
        return sorted_keys
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1]
    run = np.repeat(starts, np.diff(np.r_[starts, len(sorted_keys)]))
    return np.arange(len(sorted_keys)) - run


def candidate_pairs(chunks: Callable[[], Iterable[np.ndarray]], n: int, dim: int,
                    threshold: float, per_item: int = PER_ITEM, chunk: int = CHUNK,
                    sample: np.ndarray | None = None, seed: int = 0,
                    nprobe: int = NPROBE) -> Pairs:
    """All candidate pairs among ``n`` vectors handed out by ``chunks()`` (called twice: once
    to fill the index, once to query it), ``chunk`` queries at a time."""
    index = make_index(dim, n, sample, seed, nprobe)
    for block in chunks():
        index.add(unit(block))
    parts, start = [], 0
    for block in chunks():
        for s in range(0, len(block), chunk):
            q = block[s:s + chunk]
            parts.append(range_pairs(index, q, start + s, threshold, per_item))
        start += len(block)
    return Pairs.concat(parts).unique()
