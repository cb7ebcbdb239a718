"""The indexed works as a collection to browse: filter by predicted labels, confident or
not, and text; sort by novelty, least confident first, title or year; page through; count
the facets. A work's ``id`` is its index row, the same id ``similar`` results carry.

Task names and optional columns (``<task>_confident``, ``novelty``, ``year_estimate``...)
are read from the index, never assumed, so a Model v2 index brings its facets and sorts
with it. Filters are numpy masks over label codes and sorts are cached orders, so a query
over a large collection is a few array passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from artylyze.index.entries import TRUE_PREFIX, parquet_files, schema_metadata
from artylyze.index.search import ESTIMATES, Gallery
from artylyze.serve.errors import BadRequest, NotFound, ServeConfigError
from artylyze.serve.files import work_file

#: sort name -> (what it orders by, ascending by default?)
SORTS = {"id": ("row", True), "title": ("title", True), "artist": ("artist", True),
         "year": ("year", True), "novelty": ("novelty", False),
         "confidence": ("score", True)}
META_DETAIL = ("width", "height", "tagged_at")
MAX_ID_DIGITS = 18  # a work id is a row number: ASCII digits, at most this many


@dataclass(frozen=True)
class WorkQuery:
    """One page of the collection: label filters per task, and how to order them."""

    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    confident: bool | None = None
    task: str | None = None  # the task ``confident`` and ``sort=confidence`` look at
    text: str | None = None
    sort: str = "id"
    offset: int = 0
    limit: int = 48


@dataclass
class MetaDetail:
    """Columns of a meta.parquet aligned to the index rows (null where a row has none)."""

    rows: pa.Table
    matched: int
    total: int
    errors: int

    def row(self, i: int) -> dict[str, Any]:
        return {k: v for k, v in self.rows.slice(i, 1).to_pylist()[0].items() if v is not None}


def load_meta(path: Path, index_paths: list[str]) -> tuple[MetaDetail, str | None]:
    """The meta.parquet's top-k lists and image details, joined to the index by path."""
    files = parquet_files(Path(path))
    schema = pq.ParquetFile(files[0]).schema_arrow
    wanted = [c for c in schema.names
              if c in ("path", "status", *META_DETAIL) or c.endswith("_top")]
    table = pa.concat_tables([pq.ParquetFile(f).read(columns=wanted) for f in files])
    ok = table.filter(pc.equal(table.column("status"), "ok")).drop_columns(["status"])
    position = {p: i for i, p in enumerate(ok.column("path").to_pylist())}
    take = [position.get(p) for p in index_paths]
    matched = sum(t is not None for t in take)
    if not matched:
        raise ServeConfigError(f"{path}: none of its {ok.num_rows} tagged paths is in the "
                               "index; pass the --index built from it")
    aligned = ok.take(pa.array(take, pa.int64())).drop_columns(["path"])
    _, root = schema_metadata(schema)
    return MetaDetail(aligned, matched, table.num_rows, table.num_rows - ok.num_rows), root


class Catalog:
    """Queries over the rows of one index (its ``Gallery``), with links to their pictures."""

    def __init__(self, gallery: Gallery, root: Path | None = None,
                 meta: MetaDetail | None = None, url_prefix: str = "") -> None:
        self.gallery = gallery
        self.root = root
        self.meta = meta
        self.url_prefix = url_prefix
        self.count = gallery.index.count
        self.tasks: tuple[str, ...] = gallery.index.manifest.tasks
        names = set(gallery.index.rows.column_names)
        self.confident_tasks = tuple(t for t in self.tasks if f"{t}_confident" in names)
        self.has_novelty = "novelty" in names
        self._codes: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._orders: dict[tuple[str, str | None], np.ndarray] = {}
        self._text: list[str] | None = None
        self._by_sha: dict[str, int] | None = None
        self.reviews: Callable[[int], dict[str, Any]] | None = None  # row -> human answers

    @classmethod
    def open(cls, gallery: Gallery, collection: Path | None = None, meta: Path | None = None,
             url_prefix: str = "") -> Catalog:
        if collection is not None and not Path(collection).is_dir():
            raise ServeConfigError(f"{collection}: collection folder not found")
        detail, meta_root = (load_meta(meta, gallery.column("path")) if meta is not None
                             else (None, None))
        root = collection or gallery.index.root or meta_root
        return cls(gallery, Path(root) if root else None, detail, url_prefix)

    # -- one work -----------------------------------------------------------------------
    def row(self, work_id: str | int) -> int:
        """The index row of a work id from a URL or a body; :class:`NotFound` otherwise.

        Only ASCII digits, at most :data:`MAX_ID_DIGITS` of them: ``str.isdigit()`` also
        takes "²" and "٣", which ``int()`` refuses, and a bound on the length keeps ``int()``
        off Python's 4,300-digit limit."""
        if isinstance(work_id, int) and not isinstance(work_id, bool):
            shown = str(work_id) if abs(work_id) < 10 ** MAX_ID_DIGITS else "a huge number"
            row = work_id
        else:
            text = work_id if isinstance(work_id, str) else ""
            plain = 0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()
            row, shown = (int(text) if plain else -1), text[:40]
        if not 0 <= row < self.count:
            raise NotFound(f"no work with id {shown!r}: ids are 0 to {self.count - 1}")
        return row

    def by_sha256(self, sha: str) -> int | None:
        """The indexed work with exactly these bytes, if any."""
        if self._by_sha is None:
            self._by_sha = {}
            for i, s in enumerate(self.gallery.column("sha256")):
                if s:
                    self._by_sha.setdefault(s, i)
        return self._by_sha.get(sha)

    def file(self, row: int) -> Path | None:
        return work_file(self.root, self.gallery.column("path")[row])

    def summary(self, row: int) -> dict[str, Any]:
        """What a card shows: title, artist, predicted and recorded labels, picture links."""
        col = self.gallery.column
        entry = self.gallery.entry(row)
        predicted = {}
        for t in self.tasks:
            label = col(t)[row]
            if label is None:
                continue
            score = col(f"{t}_score")[row]
            predicted[t] = {"label": label,
                            "score": None if score is None else round(float(score), 4)}
            if t in self.confident_tasks and col(f"{t}_confident")[row] is not None:
                predicted[t]["confident"] = bool(col(f"{t}_confident")[row])
        recorded = {t: col(TRUE_PREFIX + t)[row] for t in self.tasks
                    if col(TRUE_PREFIX + t)[row] is not None}
        estimated = {key: col(name)[row] for name, key in ESTIMATES.items()
                     if col(name)[row] is not None}
        link = f"{self.url_prefix}/v1/works/{row}"
        out = {k: entry[k] for k in ("id", "path", "title", "artist", "year", "record_id")
               if k in entry}
        out.update(predicted=predicted, recorded=recorded, estimated=estimated,
                   cluster=entry.get("cluster"), theme=entry.get("theme"),
                   thumbnail=f"{link}/thumbnail",
                   image=f"{link}/image" if self.file(row) else None)
        if self.reviews is not None:
            out["human"] = self.reviews(row)
        return out

    def detail(self, row: int) -> dict[str, Any]:
        """A work's page: its summary, and with ``--meta`` the top-k lists and image size."""
        out = self.summary(row)
        if self.meta is not None:
            extra = self.meta.row(row)
            out["top"] = {k[: -len("_top")]: v for k, v in extra.items() if k.endswith("_top")}
            out.update({k: (v.isoformat() if hasattr(v, "isoformat") else v)
                        for k, v in extra.items() if k in META_DETAIL})
        return out

    # -- many works -----------------------------------------------------------------------
    def search(self, query: WorkQuery) -> dict[str, Any]:
        """One page of works matching ``query``, the total, and the facet counts."""
        task = self._task(query.task)
        masks = {t: self._label_mask(t, labels) for t, labels in query.labels.items()}
        if query.confident is not None:
            masks["confident"] = self._confident(task) == int(query.confident)
        if query.text:
            needle = query.text.lower()
            masks["text"] = np.fromiter((needle in h for h in self._haystack()), bool,
                                        self.count)
        keep = np.ones(self.count, bool)
        for m in masks.values():
            keep &= m
        order = self._order(query.sort, task)
        picked = order[keep[order]]
        page = picked[query.offset:query.offset + query.limit]
        return {"total": int(len(picked)), "offset": query.offset, "limit": query.limit,
                "sort": query.sort, "works": [self.summary(int(r)) for r in page],
                "facets": self._facets(masks, task)}

    def _task(self, task: str | None) -> str:
        if task is None:
            return self.tasks[0]
        if task not in self.tasks:
            raise BadRequest(f"unknown task {task!r}; this index has {', '.join(self.tasks)}")
        return task

    def codes(self, task: str) -> tuple[np.ndarray, list[str]]:
        """Per row the index of its predicted label (-1 when none), and the labels."""
        if task not in self._codes:
            enc = self.gallery.index.rows.column(task).combine_chunks().dictionary_encode()
            codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
            self._codes[task] = (codes.astype(np.int32), enc.dictionary.to_pylist())
        return self._codes[task]

    def _label_mask(self, task: str, labels: tuple[str, ...]) -> np.ndarray:
        if task not in self.tasks:
            raise BadRequest(f"unknown filter {task!r}; filters are {', '.join(self.tasks)}, "
                             "confident, task, q, sort, offset and limit")
        codes, names = self.codes(task)
        wanted = [names.index(label) for label in labels if label in names]
        return np.isin(codes, wanted)

    def _confident(self, task: str) -> np.ndarray:
        """1 confident, 0 not, -1 unknown, per row."""
        if task not in self.confident_tasks:
            raise BadRequest(f"this index has no confident flags for {task!r} (its model has "
                             "no calibration); confident filters need a calibrated model")
        flags = self.gallery.index.rows.column(f"{task}_confident").combine_chunks()
        return pc.fill_null(flags.cast(pa.int8()), -1).to_numpy(zero_copy_only=False)

    def _haystack(self) -> list[str]:
        if self._text is None:
            col = self.gallery.column
            self._text = [" ".join(str(v) for v in (col("title")[i], col("artist_slug")[i],
                                                    col("path")[i]) if v).lower()
                          for i in range(self.count)]
        return self._text

    def _facets(self, masks: dict[str, np.ndarray], task: str) -> dict[str, Any]:
        """Counts per label under every filter but the facet's own (so choices stay open)."""
        def others(name: str) -> np.ndarray:
            keep = np.ones(self.count, bool)
            for other, m in masks.items():
                if other != name:
                    keep &= m
            return keep

        out: dict[str, Any] = {}
        for t in self.tasks:
            codes, names = self.codes(t)
            picked = codes[others(t) & (codes >= 0)]
            counts = np.bincount(picked, minlength=len(names))
            out[t] = sorted(({"label": n, "count": int(c)} for n, c in zip(names, counts,
                                                                          strict=True) if c),
                            key=lambda x: (-x["count"], x["label"]))
        if task in self.confident_tasks:
            flags = self._confident(task)[others("confident")]
            out["confident"] = {"task": task, "true": int((flags == 1).sum()),
                                "false": int((flags == 0).sum())}
        return out

    def _order(self, sort: str, task: str) -> np.ndarray:
        """Row order for ``sort`` (``-`` reverses it); rows without a value always last."""
        name = sort[1:] if sort.startswith("-") else sort
        if name not in SORTS:
            raise BadRequest(f"unknown sort {sort!r}; sorts are {', '.join(SORTS)} "
                             "(prefix - to reverse)")
        cached = (sort, task if name == "confidence" else None)
        if cached not in self._orders:
            what, ascending = SORTS[name]
            key = self._sort_key(what, task)
            if sort.startswith("-"):
                ascending = not ascending
            self._orders[cached] = np.argsort(key if ascending else -key, kind="stable")
        return self._orders[cached]

    def _sort_key(self, what: str, task: str) -> np.ndarray:
        """A float per row, NaN where the row has no value (argsort puts NaN last)."""
        col = self.gallery.column
        if what == "row":
            return np.arange(self.count, dtype=np.float64)
        if what == "novelty" and not self.has_novelty:
            raise BadRequest("this index has no novelty scores (its model has no "
                             "calibration); sort by confidence, title, year or id")
        if what in ("title", "artist"):
            source = col("title") if what == "title" else col("artist_slug")
            text = [str(v).lower() if v else None for v in source]
            known = sorted({t for t in text if t is not None})
            rank = {t: float(i) for i, t in enumerate(known)}
            return np.array([rank[t] if t is not None else np.nan for t in text])
        if what == "year":
            estimate = col("year_estimate")
            values = [y if y is not None else estimate[i] for i, y in enumerate(col("year"))]
        else:
            values = col("novelty" if what == "novelty" else f"{task}_score")
        return np.array([np.nan if v is None else float(v) for v in values])
