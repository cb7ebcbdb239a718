"""Pairs -> groups of one artwork, each with its kind, similarity and a suggested keeper.

``exact`` groups share one sha256 (the same bytes); ``near`` groups hold other files of the
same work (verified pairs, joined transitively). The keeper rule, in order: the most pixels
(width x height), then the sharpest (variance of the Laplacian of the grey image, long
side 512 px), then the shortest path, then the first in path order, so the choice is
stable from run to run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

KEEPER_RULE = "most pixels, then sharpest (variance of the Laplacian), then shortest path"
SHARP_SIDE = 512

SCHEMA = pa.schema([
    pa.field("group", pa.int64()),
    pa.field("kind", pa.string()),  # the group's: exact (same bytes) or near
    pa.field("size", pa.int32()),
    pa.field("path", pa.string()),
    pa.field("sha256", pa.string()),
    pa.field("member_kind", pa.string()),  # keeper, exact (same bytes as the keeper), near
    pa.field("similarity", pa.float32()),  # cosine of embeddings to the keeper
    pa.field("check", pa.float32()),  # best second-check score on a verified link, if any
    pa.field("keeper", pa.bool_()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("sharpness", pa.float32()),
])


def exact_groups(sha256: Sequence[str | None]) -> np.ndarray:
    """Label per item: items with the same (non-empty) sha256 share one; others their own."""
    first: dict[str, int] = {}
    labels = np.arange(len(sha256), dtype=np.int64)
    for i, s in enumerate(sha256):
        if s:
            labels[i] = first.setdefault(s, i)
    return labels


def join(n: int, a: np.ndarray, b: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Connected components of ``n`` items linked by pairs (a, b) and by equal ``base``."""
    rows, cols = [np.asarray(a, np.int64)], [np.asarray(b, np.int64)]
    if base is not None:
        rows.append(np.arange(n, dtype=np.int64))
        cols.append(np.asarray(base, np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def sharpness(img) -> float:
    """Variance of the Laplacian of the grey image at SHARP_SIDE px: higher is sharper."""
    import cv2

    grey = np.asarray(img.convert("L"))
    scale = SHARP_SIDE / max(grey.shape)
    if scale < 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def pick_keeper(members: Sequence[int], paths: Sequence[str], pixels: Sequence[int | None],
                sharp: Callable[[int], float | None]) -> int:
    """The member to keep (see the module's rule); sharpness is computed only on a tie."""
    def px(i: int) -> int:
        return pixels[i] or 0

    top = max(px(i) for i in members)
    tied = [i for i in members if px(i) == top]
    if len(tied) > 1:
        scores = {i: sharp(i) for i in tied}
        best = max((s for s in scores.values() if s is not None), default=None)
        if best is not None:
            tied = [i for i in tied if scores[i] is not None and scores[i] >= best - 1e-6]
    return min(tied, key=lambda i: (len(paths[i]), paths[i]))


@dataclass
class Item:
    """What grouping needs to know about the items (index = position)."""

    paths: Sequence[str]
    sha256: Sequence[str | None]
    width: Sequence[int | None]
    height: Sequence[int | None]


def build_groups(items: Item, a: np.ndarray, b: np.ndarray, check: np.ndarray,
                 similarity: Callable[[int, int], float],
                 sharp: Callable[[int], float | None]) -> pa.Table:
    """The groups table (one row per member of a group of two or more), keeper first."""
    n = len(items.paths)
    exact = exact_groups(items.sha256)
    labels = join(n, a, b, exact)
    best_check: dict[int, float] = {}
    for i, j, c in zip(a.tolist(), b.tolist(), check.tolist(), strict=True):
        best_check[i] = max(best_check.get(i, 0.0), c)
        best_check[j] = max(best_check.get(j, 0.0), c)
    order = np.argsort(labels, kind="stable")
    bounds = np.r_[0, np.flatnonzero(np.diff(labels[order])) + 1, n]
    pixels = [None if w is None or h is None else int(w) * int(h)
              for w, h in zip(items.width, items.height, strict=True)]
    cols: dict[str, list] = {f.name: [] for f in SCHEMA}
    sharp_cache: dict[int, float | None] = {}

    def sharp_of(i: int) -> float | None:
        if i not in sharp_cache:
            sharp_cache[i] = sharp(i)
        return sharp_cache[i]

    groups = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi - lo > 1:
            groups.append(sorted(order[lo:hi].tolist(), key=lambda i: items.paths[i]))
    groups.sort(key=lambda m: items.paths[m[0]])
    for gid, members in enumerate(groups):
        same_bytes = len({items.sha256[i] for i in members}) == 1 and items.sha256[members[0]]
        keeper = pick_keeper(members, items.paths, pixels,
                             (lambda _i: None) if same_bytes else sharp_of)  # equal bytes
        kind = "exact" if same_bytes else "near"
        for i in [keeper, *(m for m in members if m != keeper)]:
            is_copy = items.sha256[i] and items.sha256[i] == items.sha256[keeper]
            cols["group"].append(gid)
            cols["kind"].append(kind)
            cols["size"].append(len(members))
            cols["path"].append(items.paths[i])
            cols["sha256"].append(items.sha256[i])
            cols["member_kind"].append("keeper" if i == keeper else
                                       "exact" if is_copy else "near")
            cols["similarity"].append(1.0 if i == keeper or is_copy else similarity(keeper, i))
            cols["check"].append(best_check.get(i))
            cols["keeper"].append(i == keeper)
            cols["width"].append(items.width[i])
            cols["height"].append(items.height[i])
            cols["sharpness"].append(sharp_cache.get(i))
    return pa.table(cols, schema=SCHEMA)


def summary(table: pa.Table) -> dict[str, int]:
    """Counts a person reads first: groups by kind, files that are copies of a keeper."""
    kinds = table.column("kind").to_pylist()
    groups = table.column("group").to_pylist()
    keeper = table.column("keeper").to_pylist()
    seen: dict[int, str] = dict(zip(groups, kinds, strict=True))
    return {"groups": len(seen), "exact_groups": sum(k == "exact" for k in seen.values()),
            "near_groups": sum(k == "near" for k in seen.values()),
            "files": len(groups), "redundant_files": sum(not k for k in keeper)}
