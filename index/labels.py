"""Ground truth for an index: a labels CSV joined on ``path``, and periods from years.

Kept as ``true_<column>`` beside the predictions, so themes can say which they used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from artylyze.index.entries import TRUE_PREFIX, Entries, clean
from artylyze.index.errors import IndexBuildError


def _parse_range(label: str) -> tuple[float, float] | None:
    years = [int(y) for y in re.findall(r"\d{3,4}", label)]
    low = label.lower()
    if len(years) >= 2:
        return float(years[0]), float(years[1])
    if len(years) == 1:
        if any(w in low for w in ("before", "pre", "<", "until", "up to")):
            return float("-inf"), float(years[0])
        if any(w in low for w in ("after", "+", ">", "since", "post")):
            return float(years[0]), float("inf")
    return None


def period_of(year: int | None, labels: tuple[str, ...] | None = None) -> str | None:
    """The period label of a year: one of ``labels`` when they read as year ranges and one
    covers it, else a half-century bin like ``1850-1899`` (the training manifest's bins)."""
    if year is None:
        return None
    ranges = [(lab, _parse_range(lab)) for lab in labels or ()]
    if ranges and all(r is not None for _, r in ranges):
        for lab, (a, b) in ranges:  # type: ignore[misc]
            if a <= year < b:
                return lab
        for lab, (a, b) in ranges:  # type: ignore[misc]
            if a <= year <= b:
                return lab
    start = (year // 50) * 50
    return f"{start}-{start + 49}"


def _match_keys(path: str) -> list[str]:
    """``a/b/c.jpg`` -> [``a/b/c.jpg``, ``b/c.jpg``, ``c.jpg``]: joins survive a different root."""
    parts = PurePosixPath(path).parts
    return ["/".join(parts[i:]) for i in range(len(parts))]


def read_labels(path: str | Path) -> pa.Table:
    """A labels CSV with a ``path`` column; every column is read as text (empty = unknown)."""
    if not Path(path).is_file():
        raise IndexBuildError(f"{path}: no such labels file")
    try:
        first = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16))
        names = first.column_names
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as e:
        raise IndexBuildError(f"{path}: not a readable CSV ({e})") from e
    if "path" not in table.column_names:
        raise IndexBuildError(f"{path}: labels CSV needs a 'path' column, has {table.column_names}")
    return table


class LabelTable:
    """Labels CSVs read once, to join onto any number of row batches (a streamed build
    joins chunk by chunk)."""

    def __init__(self, labels_path: str | Path | Sequence[str | Path]) -> None:
        files = [labels_path] if isinstance(labels_path, str | Path) else list(labels_path)
        self.table = pa.concat_tables([read_labels(f) for f in files],
                                      promote_options="permissive")
        self.name = ", ".join(str(f) for f in files)
        self.lookup: dict[str, int] = {}
        for i, p in enumerate(self.table.column("path").to_pylist()):
            if p:
                self.lookup.setdefault(str(p).replace("\\", "/").lstrip("./"), i)

    def match(self, paths: Sequence[str]) -> list[int | None]:
        """Per path, its labels row (None when no row matches)."""
        return [next((self.lookup[k] for k in _match_keys(p) if k in self.lookup), None)
                for p in paths]

    def matched(self, paths: Sequence[str]) -> int:
        return sum(i is not None for i in self.match(paths))

    def refuse_unmatched(self, matched: int, source: str) -> None:
        if matched == 0:
            raise IndexBuildError(f"{self.name}: no path matches a row of {source}; "
                                  "is it the labels file of this collection?")

    def join(self, entries: Entries) -> Entries:
        """``entries`` with the ``true_<column>`` columns of their matching rows."""
        take = pa.array(self.match(entries.rows.column("path").to_pylist()), pa.int64())
        rows = entries.rows
        for name in self.table.column_names:
            if name == "path":
                continue
            values = self.table.column(name).take(take)
            if name == "split":
                col = "split"
            elif name == "title":
                col = "title"
                values = pc.coalesce(values, rows.column("title"))
            elif name == "year":
                years = [_year(v) for v in values.to_pylist()]
                old = rows.column("year").to_pylist()
                rows = rows.set_column(rows.column_names.index("year"), "year", pa.array(
                    [y if y is not None else o for y, o in zip(years, old, strict=True)],
                    pa.int32()))
                col = TRUE_PREFIX + "year"
            else:
                col = TRUE_PREFIX + name
            if col in rows.column_names:
                rows = rows.set_column(rows.column_names.index(col), col, values)
            else:
                rows = rows.append_column(col, values)
        return replace(entries, rows=rows, labels_file=self.name)


def join_labels(entries: Entries, labels_path: str | Path | Sequence[str | Path]) -> Entries:
    """Attach ground truth from labels CSVs (joined on ``path``) as ``true_<column>``.

    Paths are matched exactly, or by their trailing components when the collection was
    tagged from another root (``images/Baroque/x.jpg`` matches ``Baroque/x.jpg``). Several
    files (one per data set of a joined collection) are read as one table; a column one of
    them lacks is unknown for its rows.
    """
    labels = LabelTable(labels_path)
    matched = labels.matched(entries.rows.column("path").to_pylist())
    labels.refuse_unmatched(matched, entries.source)
    joined = labels.join(entries)
    note = f"labels: {matched} of {entries.count} entries matched {labels.name}"
    return replace(joined, notes=[*entries.notes, note])


def _year(value: Any) -> int | None:
    text = clean(value)
    if text is None:
        return None
    m = re.search(r"\d{3,4}", text)  # "1890", "c. 1890", "1890-1892" -> 1890
    return int(m.group(0)) if m else None


def with_period(entries: Entries) -> Entries:
    """Add ``true_period`` from the ground-truth year when the truth has years but no period,
    using the bundle's period labels when they read as year ranges."""
    cols = entries.rows.column_names
    if TRUE_PREFIX + "period" in cols or TRUE_PREFIX + "year" not in cols:
        return entries
    labels = None
    for task in (entries.bundle or {}).get("tasks", []):
        if task.get("name") == "period":
            labels = tuple(task.get("labels", ()))
    years = [_year(v) for v in entries.rows.column(TRUE_PREFIX + "year").to_pylist()]
    periods = [period_of(y, labels) for y in years]
    rows = entries.rows.append_column(TRUE_PREFIX + "period", pa.array(periods, pa.string()))
    return replace(entries, rows=rows)
