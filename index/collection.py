"""A collection as the report sees it: its works' labels, their membership in an index's
clusters, and the figures' numbers (cross tables, mean memberships, the clusters' tree).

The works are either the rows of an index (the shipped gallery, say) or the ok rows of a
meta.parquet, placed into the clusters of an index built with the same model. Labels are
ground truth where the collection has it (``true_<field>``, or a labels CSV), else the
model's predictions, field by field, and the report says which.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from artylyze.index.entries import Entries, read_meta
from artylyze.index.faiss_index import reconstruct, search
from artylyze.index.labels import join_labels, with_period
from artylyze.index.search import check_model
from artylyze.index.store import DEFAULT_GALLERY_DIR, IndexDir, load_index_dir
from artylyze.review import ReviewStore, review_path
from artylyze.review.overlay import overlay

POSTERIOR_CHUNK = 65_536  # rows scored at a time, so memory stays flat on big indexes


@dataclass
class Collection:
    """The works a report describes and the index whose clusters describe them."""

    name: str
    entries: Entries  # paths, root, label columns of the works
    index: IndexDir
    posteriors: np.ndarray  # [n, k] GMM membership of every work
    raw: np.ndarray | None  # [n, D] bundle embeddings of meta.parquet works; None when the
    # works are the index's own rows (work i is row i)

    @property
    def count(self) -> int:
        return self.entries.count

    @property
    def own_rows(self) -> bool:
        return self.raw is None

    @cached_property
    def counted(self) -> np.ndarray:
        """Per work, whether the report counts it: the first file of each artwork, its
        copies (see :func:`distinct_works`) folded into it."""
        return distinct_works(self.entries.rows)

    @property
    def works(self) -> int:
        """How many artworks the files are, each counted once."""
        return int(self.counted.sum())

    @property
    def folded(self) -> int:
        """How many files are copies of another work's file."""
        return self.count - self.works

    def labels(self) -> tuple[dict[str, list[str | None]], dict[str, str]]:
        """Per field, each work's label and where it came from (ground truth / predicted)."""
        return self.entries.theme_labels()

    def query_vectors(self, works: list[int]) -> np.ndarray:
        """Index-space vectors of some works, to search the index with."""
        if self.raw is None:
            return reconstruct(self.index.index, works)
        return self.index.to_index_space(self.raw[works])

    def neighbours(self, work: int, k: int) -> list[tuple[int, float]]:
        """(index row, similarity) of the ``k`` nearest indexed works, the work itself and
        its copies out, each other work once (see :mod:`artylyze.index.copies`)."""
        from artylyze.index.copies import collapse, fetch_size

        vector = self.query_vectors([work])
        scores, ids = search(self.index.index, vector, min(fetch_size(k), self.index.count))
        hits = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True)
                if i >= 0 and not self.same_work(work, int(i))]
        if not hits:
            return []
        rows = [i for i, _ in hits]
        sha = self.index.rows.column("sha256").to_pylist() \
            if "sha256" in self.index.rows.column_names else [None] * self.index.count
        mine = self.entries.rows.column("sha256")[work].as_py() \
            if "sha256" in self.entries.rows.column_names else None
        shown = collapse(rows, reconstruct(self.index.index, rows), [sha[r] for r in rows],
                         query_sha=mine, query=vector[0])
        score = dict(hits)
        return [(row, score[row]) for row, _ in shown][:k]

    def same_work(self, work: int, row: int) -> bool:
        """Whether index row ``row`` is work ``work`` itself: the same row of the index, or
        (works from a meta.parquet the index was built on) the same file by sha256, or the
        same path under the same root. A work is never its own neighbour."""
        if self.own_rows:
            return row == work
        mine, theirs = self.entries.rows, self.index.rows
        if "sha256" in mine.column_names and "sha256" in theirs.column_names:
            sha = mine.column("sha256")[work].as_py()
            if sha and sha == theirs.column("sha256")[row].as_py():
                return True
        return (self.entries.root is not None and self.entries.root == self.index.root
                and mine.column("path")[work].as_py() == theirs.column("path")[row].as_py())


def distinct_works(rows: pa.Table) -> np.ndarray:
    """Per row, whether it is the first file of its artwork. Files are one artwork when they
    have the same sha256 (same bytes) or, where the rows carry it, the same ``dup_group``
    (from ``artylyze duplicates``), linked through each other: a union-find over those keys,
    O(n), no pixels read. Unlike :mod:`artylyze.index.copies`, no embedding test: that needs
    neighbours, and counting must stay cheap on a million rows."""
    n = rows.num_rows
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("sha256", "dup_group"):
        if column not in rows.column_names:
            continue
        first: dict[object, int] = {}
        for i, key in enumerate(rows.column(column).to_pylist()):
            if key is None or key == "" or (isinstance(key, float) and key != key):
                continue  # no key (NaN: an empty group in a float column)
            if key in first:
                a, b = find(first[key]), find(i)
                parent[max(a, b)] = min(a, b)  # the first file of a work stays its root
            else:
                first[key] = i
    return np.fromiter((find(i) == i for i in range(n)), bool, n)


def index_entries(index: IndexDir) -> Entries:
    """The index's rows as entries (their label columns are what themes were made from);
    no vectors: those stay in the FAISS index."""
    n = index.count
    return Entries(vectors=np.empty((n, 0), np.float32), rows=index.rows,
                   model_id=index.model_id, bundle=index.manifest.bundle,
                   tasks=index.manifest.tasks, root=index.root,
                   rows_total=n, rows_error=0, source=str(index.path))


def _posteriors(index: IndexDir, points: np.ndarray, raw: bool) -> np.ndarray:
    parts = []
    for start in range(0, len(points), POSTERIOR_CHUNK):
        chunk = points[start:start + POSTERIOR_CHUNK].astype(np.float32)
        parts.append(index.clusters.posteriors(chunk) if raw
                     else index.clusters.gmm.posteriors(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, index.clusters.gmm.k))


def from_index(index_dir: str | Path) -> Collection:
    """The works of an index directory, with its own clusters."""
    index = load_index_dir(index_dir)
    post = _posteriors(index, index.clusters.coords, raw=False)
    return Collection(Path(index_dir).name, index_entries(index), index, post, None)


def with_reviews(entries: Entries, store: Path) -> Entries:
    """``entries`` with the labels people gave in the review store ``store`` (if there is
    one) over the model's: the report describes the collection as its curators see it."""
    if not store.exists():
        return entries
    with ReviewStore.open(store, create=False) as opened:
        humans = opened.current()
    if not humans:
        return entries
    return dataclasses.replace(entries, rows=overlay(entries.rows, humans, entries.tasks))


def from_meta(meta: str | Path, index_dir: str | Path | None = None,
              labels: str | Path | None = None) -> Collection:
    """The ok rows of a meta.parquet, placed in the clusters of ``index_dir`` (default: the
    shipped gallery); the index must come from the same model."""
    entries = with_reviews(read_meta(meta), review_path(meta))
    if labels is not None:
        entries = join_labels(entries, labels)
    entries = with_period(entries)
    index = load_index_dir(index_dir or DEFAULT_GALLERY_DIR)
    check_model(index.model_id, entries.model_id, f"{meta} was tagged with")
    post = _posteriors(index, entries.vectors, raw=True)
    return Collection(Path(meta).name, entries, index, post, entries.vectors)


# -- the numbers behind the figures ----------------------------------------------------------

def first_year(label: str) -> float:
    """The first number of a period label (``1850-1899`` -> 1850); inf when there is none."""
    found = re.search(r"-?\d+", label)
    return float(found.group(0)) if found else float("inf")


def chronological(labels: set[str] | list[str]) -> list[str]:
    """Period labels in time order (labels without a year last, by name)."""
    return sorted(set(labels), key=lambda lab: (first_year(lab), lab))


def ordered(values: list[str | None], preferred: tuple[str, ...] = ()) -> list[str]:
    """The labels present: in ``preferred`` order (the model's) first, then by count."""
    counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    first = [p for p in preferred if p in counts]
    rest = sorted((v for v in counts if v not in preferred), key=lambda v: (-counts[v], v))
    return first + rest


def crosstab(rows: list[str | None], cols: list[str | None], row_order: list[str],
             col_order: list[str]) -> np.ndarray:
    """Counts [len(row_order), len(col_order)] of the works labelled with both."""
    ri = {v: i for i, v in enumerate(row_order)}
    ci = {v: i for i, v in enumerate(col_order)}
    counts = np.zeros((len(row_order), len(col_order)), np.int64)
    for r, c in zip(rows, cols, strict=True):
        if r in ri and c in ci:
            counts[ri[r], ci[c]] += 1
    return counts


def keep_top_columns(counts: np.ndarray, names: list[str], limit: int,
                     other: str = "other") -> tuple[np.ndarray, list[str]]:
    """The ``limit`` largest columns, the rest summed into one ``other`` column."""
    if len(names) <= limit:
        return counts, names
    order = np.argsort(-counts.sum(axis=0), kind="stable")
    top, rest = order[:limit - 1], order[limit - 1:]
    merged = np.concatenate([counts[:, top], counts[:, rest].sum(axis=1, keepdims=True)], 1)
    return merged, [names[i] for i in top] + [f"{other} ({len(rest)})"]


def mean_membership(groups: list[str | None], order: list[str],
                    posteriors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the mean GMM membership of its works [len(order), k], and group sizes."""
    index = {g: i for i, g in enumerate(order)}
    sums = np.zeros((len(order), posteriors.shape[1]))
    sizes = np.zeros(len(order), np.int64)
    for g, p in zip(groups, posteriors, strict=True):
        if g in index:
            sums[index[g]] += p
            sizes[index[g]] += 1
    return sums / np.maximum(sizes, 1)[:, None], sizes


def entropy(posteriors: np.ndarray) -> np.ndarray:
    """Normalized entropy of each row's membership: 0 = one cluster, 1 = all equally."""
    k = posteriors.shape[1]
    p = np.clip(posteriors, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / (np.log(k) if k > 1 else 1.0)


def cluster_tree(affinity: np.ndarray, active: list[int]) -> tuple[list[int], np.ndarray]:
    """Average-linkage clustering of the ``active`` clusters on distance 1 - affinity: the
    leaf order (cluster ids) and the linkage matrix for the dendrogram."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    if len(active) < 2:
        return list(active), np.zeros((0, 4))
    sub = np.asarray(affinity, np.float64)[np.ix_(active, active)]
    dist = np.clip(1.0 - (sub + sub.T) / 2, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(dist, checks=False)
    tree = optimal_leaf_ordering(linkage(condensed, method="average"), condensed)
    return [active[i] for i in leaves_list(tree)], tree


def closest_pairs(affinity: np.ndarray, active: list[int],
                  count: int = 10) -> list[tuple[int, int, float]]:
    """The ``count`` pairs of clusters whose centroids are closest: (a, b, distance)."""
    pairs = [(a, b, 1.0 - float(affinity[a, b])) for i, a in enumerate(active)
             for b in active[i + 1:]]
    return sorted(pairs, key=lambda p: p[2])[:count]
