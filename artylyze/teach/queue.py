"""The review queue's order: which unreviewed work a person's label helps most.

Three signals, each in [0, 1], larger = review sooner:

- ``uncertain``: 1 - the model's score of its label (the least confident first);
- ``disagree``: the share of the ``k`` nearest reviewed works (cosine, similarity-weighted)
  whose human label differs from the model's label of this work;
- ``novel``: 1 - cosine similarity to the nearest reviewed work (far from anything seen).

:func:`review_order` ranks by ``uncertain + disagree`` (see :data:`DEFAULT`; novelty breaks
ties, which decides alone for a task the model has no scores for), then spreads the head of
the queue so near-duplicates do not follow each other: benchmarks/correction_loop.py
measured the orders on the styles7 test split (docs/teach.md has the figures). Without
embeddings the order is the least confident first, works without a score last.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STRATEGIES = ("uncertain", "disagree", "novel", "mixed", "random")
DEFAULT = "mixed"
DUPLICATE = 0.97  # cosine above which a work is a near-copy of one already queued


def review_order(scores: np.ndarray, embeddings: np.ndarray | None, reviewed: np.ndarray,
                 reviewed_labels: Sequence[str | None], predicted: Sequence[str | None],
                 k: int = 10, strategy: str = DEFAULT, seed: int = 0) -> np.ndarray:
    """Indices of the unreviewed works, most useful to review first.

    ``scores`` [n]: the model's score of its label per work (NaN where it has none: such
    works come after those it scored, ordered by novelty); ``embeddings`` [n, dim]
    (L2-normalized; None: the scores alone decide); ``reviewed``: a boolean mask [n] (or
    the reviewed works' indices); ``reviewed_labels``: the human labels, either one per
    work (None where unreviewed) or one per reviewed work in index order; ``predicted``
    [n]: the model's labels (None where it has none).
    """
    n = len(scores)
    mask = _mask(reviewed, n)
    ref = np.nonzero(mask)[0]
    human = _human(reviewed_labels, ref, n)
    todo = np.nonzero(~mask)[0]
    if len(todo) == 0:
        return todo
    if strategy == "random":
        return np.random.default_rng(seed).permutation(todo)
    s = np.asarray(scores, np.float64)[todo]
    uncertain = np.where(np.isnan(s), -1.0, 1.0 - np.clip(np.nan_to_num(s), 0.0, 1.0))
    if embeddings is None:
        disagree = novel = np.zeros(len(todo))
    else:
        x = np.asarray(embeddings, np.float32)
        disagree, novel = _neighbours(x[todo], x[ref], human, [predicted[i] for i in todo], k)
    value = {"uncertain": uncertain, "disagree": disagree + 1e-3 * uncertain,
             "novel": novel + 1e-3 * uncertain,
             "mixed": uncertain + disagree + 1e-3 * novel}[strategy]
    order = todo[np.argsort(-value, kind="stable")]
    return _spread(order, x) if strategy == "mixed" and embeddings is not None else order


def _mask(reviewed: np.ndarray, n: int) -> np.ndarray:
    reviewed = np.asarray(reviewed)
    if reviewed.dtype == bool:
        if len(reviewed) != n:
            raise ValueError(f"reviewed mask has {len(reviewed)} entries for {n} works")
        return reviewed
    mask = np.zeros(n, bool)
    mask[reviewed.astype(np.int64)] = True
    return mask


def _human(labels: Sequence[str | None], ref: np.ndarray, n: int) -> list[str | None]:
    if len(labels) == n:
        return [labels[i] for i in ref]
    if len(labels) == len(ref):
        return list(labels)
    raise ValueError(f"reviewed_labels has {len(labels)} entries: give one per work ({n}) "
                     f"or one per reviewed work ({len(ref)})")


def _neighbours(x: np.ndarray, ref: np.ndarray, human: list[str | None],
                predicted: list[str | None], k: int, chunk: int = 8192
                ) -> tuple[np.ndarray, np.ndarray]:
    """(disagree, novel) of each row of ``x`` against the reviewed works ``ref``."""
    keep = [i for i, h in enumerate(human) if h is not None]
    disagree = np.zeros(len(x), np.float32)
    novel = np.ones(len(x), np.float32)
    if not keep:
        return disagree, novel
    ref, labels = ref[keep], np.array([human[i] for i in keep], dtype=object)
    pred = np.array(predicted, dtype=object)
    k = min(k, len(ref))
    for s in range(0, len(x), chunk):
        sim = x[s:s + chunk] @ ref.T
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sim, idx, axis=1)
        w = np.clip(top, 0.0, None) + 1e-6
        part = pred[s:s + chunk, None]
        differs = (labels[idx] != part) & (part != None)  # noqa: E711 - elementwise
        disagree[s:s + chunk] = (w * differs).sum(1) / w.sum(1)
        novel[s:s + chunk] = 1.0 - np.clip(top.max(1), -1.0, 1.0)
    return disagree, np.clip(novel, 0.0, 1.0)


def _spread(order: np.ndarray, x: np.ndarray, head: int = 500) -> np.ndarray:
    """Move near-copies of an earlier queued work in the first ``head`` to the end of the
    head, so one batch of a reviewer's time is not spent on the same picture five times."""
    first = order[:head]
    kept: list[int] = []
    later: list[int] = []
    for i in first:
        if kept and float((x[kept] @ x[i]).max()) >= DUPLICATE:
            later.append(int(i))
        else:
            kept.append(int(i))
    return np.concatenate([np.array(kept + later, np.int64), order[head:]])
