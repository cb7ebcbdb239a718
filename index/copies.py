"""Show a work once in search results, not once per copy ("+2 copies").

Results are walked best first; a result is a copy of one already shown when the two have
the same sha256 (same bytes), the same ``dup_group`` (a column an index may carry, e.g.
from ``artylyze duplicates``), or embeddings within ``COPY_COSINE`` of each other. At that
cosine only files of one work meet on the data at hand (the shipped gallery's pairs above
it are all one painting filed under two styles, e.g. Magnelli's "Man smoking"), while
``artylyze duplicates`` checks pixels and so also finds crops and photos of a work. A
copy of an indexed query (its bytes, or its embedding within ``COPY_COSINE``) is left out
like the query's own row; an image from outside keeps its copies in the results, where they
say "this work is in the collection".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

COPY_COSINE = 0.97
#: How many more neighbours a search fetches so that k distinct works remain after collapsing.
OVERFETCH = 3
OVERFETCH_MIN = 20


def fetch_size(k: int) -> int:
    return k * OVERFETCH + OVERFETCH_MIN


def collapse(rows: Sequence[int], vectors: np.ndarray, sha256: Sequence[str | None],
             group: Sequence[Any] | None = None, query_sha: str | None = None,
             query: np.ndarray | None = None,
             cosine: float = COPY_COSINE) -> list[tuple[int, list[int]]]:
    """(shown row, its copies' rows) for result ``rows`` (best first) with their index
    vectors; ``sha256``/``group`` are per result; ``query_sha``/``query`` (its vector) are
    given for an indexed query, whose copies are left out."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    q = None if query is None else query / max(float(np.linalg.norm(query)), 1e-12)
    shown: list[tuple[int, list[int]]] = []
    kept: list[int] = []  # positions of shown results
    for pos, row in enumerate(rows):
        if (query_sha and sha256[pos] == query_sha) or \
                (q is not None and float(unit[pos] @ q) >= cosine):
            continue
        home = None
        for slot, other in enumerate(kept):
            same = (sha256[pos] and sha256[pos] == sha256[other]) or \
                (group is not None and group[pos] is not None and group[pos] == group[other]) or \
                float(unit[pos] @ unit[other]) >= cosine
            if same:
                home = slot
                break
        if home is None:
            kept.append(pos)
            shown.append((row, []))
        else:
            shown[home][1].append(row)
    return shown
