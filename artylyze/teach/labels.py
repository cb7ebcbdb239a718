"""Where the labels a task is taught from come from: a CSV, and the review store when present.

:func:`labels_for` is the one seam: the CSV (columns ``label`` and one of ``sha256``,
``path`` (as stored, or absolute under the collection root) or ``record_id``; an optional
``task`` column keeps only that task's rows) and the review store (:mod:`artylyze.review`: the
current human label per work) are joined onto the rows of meta.parquet by
sha256 first (a moved or renamed file keeps its label), then path, then record id. A review
store's answer wins over the CSV: it is the later, audited one.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from artylyze.teach.model import TeachError

KEYS = ("sha256", "path", "record_id")


@dataclass(frozen=True)
class Works:
    """The rows of meta.parquet the labels are matched to (same order as the embeddings)."""

    paths: list[str]
    sha256: list[str | None]
    record_ids: list[str | None] | None = None
    root: str | None = None  # absolute paths under it in a CSV are matched too


def labels_for(task: str, meta: Works, labels_csv: str | os.PathLike[str] | None,
               review_path: str | os.PathLike[str] | None, out: Path | None = None
               ) -> dict[int, str]:
    """Row index -> human label for ``task``. ``review_path`` None: the store beside
    ``out`` (meta.parquet), if there is one."""
    found: dict[int, str] = {}
    if labels_csv is not None:
        found.update(_match(meta, _read_csv(Path(labels_csv), task), str(labels_csv)))
    found.update(_match(meta, _from_review(task, review_path, out), "the review store"))
    return found


def _read_csv(path: Path, task: str) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = set(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TeachError(f"cannot read --labels {path} ({e})") from e
    if "label" not in fields or not fields & set(KEYS):
        raise TeachError(f"--labels {path}: needs a 'label' column and one of {list(KEYS)} "
                         f"(has {sorted(fields)})")
    if "task" in fields:
        rows = [r for r in rows if (r.get("task") or "").strip() == task]
    return [r for r in rows if (r.get("label") or "").strip()]


def _from_review(task: str, review: str | os.PathLike[str] | None, out: Path | None
                 ) -> list[dict[str, str]]:
    """The current human labels of ``task`` in the review store (``review``, else the one
    beside ``out``; none when there is no store there)."""
    from artylyze.review.store import ReviewStore, review_path

    path = Path(review) if review is not None else (review_path(out) if out else None)
    if path is None or not path.is_file():
        if review is not None:
            raise TeachError(f"--review {review}: no such review store")
        return []
    with ReviewStore.open(path, create=False) as store:
        current = store.current(task)
    return [{"sha256": h.sha256, "path": h.path, "label": h.label}
            for h in current.values() if h.label]


def _match(meta: Works, rows: list[dict[str, str]], source: str) -> dict[int, str]:
    """Join labels to rows; refuses a source where no row matches (a wrong file, most often)."""
    if not rows:
        return {}
    by = {"sha256": {}, "path": {}, "record_id": {}}
    for i, (p, s) in enumerate(zip(meta.paths, meta.sha256, strict=True)):
        by["path"].setdefault(p, []).append(i)
        if s:
            by["sha256"].setdefault(s, []).append(i)
    for i, r in enumerate(meta.record_ids or ()):
        if r:
            by["record_id"].setdefault(r, []).append(i)
    found: dict[int, str] = {}
    unmatched = 0
    prefix = meta.root.rstrip("/") + "/" if meta.root else None
    for row in rows:
        label = row["label"].strip()
        path = (row.get("path") or "").strip()
        if prefix and path.startswith(prefix) and path not in by["path"]:
            row = {**row, "path": path[len(prefix):]}
        hits = next((by[k][v] for k in KEYS if (v := (row.get(k) or "").strip()) in by[k]), [])
        unmatched += not hits
        for i in hits:  # every copy of the same content gets the label
            found[i] = label
    if not found:
        raise TeachError(f"{source}: none of its {len(rows)} labels names a work of this "
                         "meta.parquet (by sha256, path or record_id)")
    return found
