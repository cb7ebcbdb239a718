"""Where an index build reads its rows from: one interface, two implementations.

A :class:`Source` says how many ok rows there are and their dims, hands out a sample (the
rows everything that *learns* is fitted on) and then every row again in chunks (faiss
``contrib.clustering.DatasetAssign`` is the pattern: count, dim, a sample, chunks). The build
(``artylyze.index.build``) is the same for both, so both accept the same options:

- :class:`ArraySource`: the whole meta.parquet in memory (``read_meta``); its sample is every
  row, as it costs nothing more.
- :class:`ParquetSource`: Parquet file(s) of any size, read ``chunk_rows`` at a time with only
  the columns a pass needs; the first pass counts ok rows and refuses mixed models.

:func:`open_source` picks one: ``stream=None`` streams when the embeddings exceed
``STREAM_MIN_BYTES``. Labels (``--labels``) are joined onto whatever rows a source hands out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from artylyze.index.entries import (
    PASSTHROUGH,
    TRUE_PREFIX,
    Entries,
    check_columns,
    embedding_matrix,
    entry_rows,
    parquet_files,
    read_meta,
    schema_metadata,
    schema_tasks,
    single_model,
)
from artylyze.index.errors import IndexBuildError
from artylyze.index.filenames import DEFAULT, FileNames
from artylyze.index.labels import LabelTable, join_labels, with_period

CHUNK_ROWS = 65_536
#: Embeddings larger than this (float32 bytes) are streamed by default.
STREAM_MIN_BYTES = 1 << 30
#: Most rows a streamed sample holds: 500k x 256 dims = 0.5 GB.
SAMPLE_MAX = 500_000
READ_BUFFER = 1 << 20
Labels = str | Path | Sequence[str | Path] | None


class Source(Protocol):
    """The ok rows of one collection, as the build reads them."""

    path: Path
    model_id: str
    bundle: dict[str, Any] | None
    tasks: tuple[str, ...]
    root: str | None
    dim: int
    count: int  # rows with status ok
    rows_total: int
    labels_file: str | None
    notes: list[str]
    names: FileNames  # how titles are read from file names
    resident: bool  # every row is in memory already: fit on all of them
    sample_max: int

    def sample(self, ids: np.ndarray) -> Entries:
        """Ok rows ``ids`` (sorted) with their embeddings, in id order."""

    def chunks(self) -> Iterator[tuple[int, Entries]]:
        """(id of the first row, the rows) over every ok row, in order."""

    def empty(self) -> Entries:
        """No rows, with the columns a chunk has (the rows of a ``train_only`` index)."""

    def describe(self) -> dict[str, Any] | None:
        """What the manifest records about how the rows were read (None: nothing)."""


class ArraySource:
    """A meta.parquet loaded whole (``read_meta``), labels joined."""

    resident = True

    def __init__(self, entries: Entries, chunk_rows: int = CHUNK_ROWS,
                 names: FileNames = DEFAULT) -> None:
        self.entries = entries
        self.names = names
        self.chunk_rows = chunk_rows
        self.path = Path(entries.source)
        self.model_id, self.bundle, self.tasks = entries.model_id, entries.bundle, entries.tasks
        self.root, self.dim, self.count = entries.root, entries.dim, entries.count
        self.rows_total, self.labels_file = entries.rows_total, entries.labels_file
        self.notes = entries.notes
        self.sample_max = entries.count

    @classmethod
    def open(cls, meta: str | Path, labels: Labels = None,
             chunk_rows: int = CHUNK_ROWS, names: FileNames = DEFAULT) -> ArraySource:
        entries = read_meta(meta, names)
        if labels is not None:
            entries = join_labels(entries, labels)
        return cls(with_period(entries), chunk_rows, names)

    def sample(self, ids: np.ndarray) -> Entries:
        if len(ids) == self.count:
            return self.entries
        return replace(self.entries, vectors=self.entries.vectors[ids],
                       rows=self.entries.rows.take(pa.array(ids)))

    def chunks(self) -> Iterator[tuple[int, Entries]]:
        for start in range(0, self.count, self.chunk_rows):
            n = min(self.chunk_rows, self.count - start)
            yield start, replace(self.entries, vectors=self.entries.vectors[start:start + n],
                                 rows=self.entries.rows.slice(start, n))

    def empty(self) -> Entries:
        return self.sample(np.arange(0))

    def describe(self) -> dict[str, Any] | None:
        return None


class ParquetSource:
    """The Parquet file(s) of one collection, counted but not loaded."""

    resident = False
    sample_max = SAMPLE_MAX

    def __init__(self, path: str | Path, chunk_rows: int = CHUNK_ROWS,
                 labels: Labels = None, names: FileNames = DEFAULT) -> None:
        """Pass 1: check the schema of every part, count ok rows, refuse mixed models."""
        self.path = path = Path(path)
        self.names = names
        if chunk_rows < 1:
            raise IndexBuildError(f"chunk size must be at least 1 row, got {chunk_rows}")
        self.chunk_rows = chunk_rows
        self.files = parquet_files(path)
        self.schema = _schema(self.files[0])
        check_columns(self.schema, str(path))
        kind = self.schema.field("embedding").type
        if not pa.types.is_fixed_size_list(kind):
            raise IndexBuildError(f"{path}: column embedding is {kind}; streaming needs "
                                  "fixed_size_list<float32, D> (as `artylyze tag` writes)")
        for file in self.files[1:]:
            other = _schema(file)
            if "embedding" not in other.names or other.field("embedding").type != kind:
                raise IndexBuildError(f"{file}: its embedding column differs from "
                                      f"{self.files[0].name}'s")
        self.bundle, self.root = schema_metadata(self.schema)
        self.tasks, self.dim = schema_tasks(self.schema), kind.list_size
        self.labels = LabelTable(labels) if labels is not None else None
        self.labels_file = self.labels.name if self.labels else None
        self.notes: list[str] = []
        self._count(str(path))

    def _count(self, source: str) -> None:
        total, matched, models = 0, 0, {}
        columns = ["status", "model", *(["path"] if self.labels else [])]
        for batch in self.batches(columns):
            total += batch.num_rows
            ok = batch.filter(pc.equal(batch.column("status"), "ok"))
            for m in pc.value_counts(ok.column("model")).to_pylist():
                models[m["values"]] = models.get(m["values"], 0) + m["counts"]
            if self.labels:
                matched += self.labels.matched([str(p) for p in ok.column("path").to_pylist()])
        self.model_id = single_model(models, total, self.bundle, source)
        self.count, self.rows_total = sum(models.values()), total
        if self.labels:
            self.labels.refuse_unmatched(matched, source)
            self.notes.append(f"labels: {matched} of {self.count} entries matched "
                              f"{self.labels.name}")

    def columns(self) -> list[str]:
        """What rows.parquet and the embeddings need; never the ``*_top`` lists."""
        names = self.schema.names
        want = ["path", "sha256", "status", "embedding",
                *self.tasks, *(f"{t}_score" for t in self.tasks),
                *(f"{t}_confident" for t in self.tasks), "year", "year_low", "year_high",
                "novelty", *(n for n in names if n.startswith(TRUE_PREFIX) or n in PASSTHROUGH)]
        return [n for n in dict.fromkeys(want) if n in names]

    def batches(self, columns: list[str]) -> Iterator[pa.Table]:
        """Batches of at most ``chunk_rows`` rows; a buffered reader, so a big row group is
        not loaded whole."""
        for file in self.files:
            try:
                reader = pq.ParquetFile(file, buffer_size=READ_BUFFER, pre_buffer=False)
                for batch in reader.iter_batches(batch_size=self.chunk_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
            except (pa.ArrowInvalid, OSError) as e:
                raise IndexBuildError(f"{file}: not a readable Parquet file ({e})") from e

    def ok_batches(self, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
        """(ok-row id of the first row, the batch's ok rows), in row order."""
        start = 0
        for batch in self.batches(columns):
            is_ok = pc.equal(batch.column("status"), "ok")
            ok = batch if pc.all(is_ok).as_py() else batch.filter(is_ok)  # no copy if all ok
            if ok.num_rows:
                yield start, ok
                start += ok.num_rows

    def _entries(self, ok: pa.Table, with_vectors: bool = True) -> Entries:
        vectors = embedding_matrix(ok, str(self.path)) if with_vectors else \
            np.zeros((0, self.dim), np.float32)
        entries = Entries(
            vectors=vectors, rows=entry_rows(ok, self.tasks, self.names), model_id=self.model_id,
            bundle=self.bundle, tasks=self.tasks, root=self.root, rows_total=self.rows_total,
            rows_error=self.rows_total - self.count, source=str(self.path))
        if self.labels is not None:
            entries = self.labels.join(entries)
        return with_period(entries)

    def sample(self, ids: np.ndarray) -> Entries:
        tables = []
        for start, ok in self.ok_batches(self.columns()):
            lo, hi = np.searchsorted(ids, [start, start + ok.num_rows])
            if hi > lo:
                tables.append(ok.take(pa.array(ids[lo:hi] - start)))
        if not tables:
            return self.empty()
        return self._entries(pa.concat_tables(tables))

    def chunks(self) -> Iterator[tuple[int, Entries]]:
        for start, ok in self.ok_batches(self.columns()):
            yield start, self._entries(ok)

    def empty(self) -> Entries:
        ok = pa.Table.from_batches([], schema=self.schema).select(self.columns())
        return self._entries(ok, with_vectors=False)

    def describe(self) -> dict[str, Any] | None:
        return {"chunk_rows": self.chunk_rows, "files": len(self.files)}


def _schema(file: Path) -> pa.Schema:
    try:
        return pq.ParquetFile(file).schema_arrow
    except (pa.ArrowInvalid, OSError) as e:
        raise IndexBuildError(f"{file}: not a readable Parquet file ({e})") from e


def embedding_bytes(path: str | Path) -> int:
    """float32 bytes of all embeddings, from the Parquet footers only (no data read)."""
    total = 0
    for file in parquet_files(Path(path)):
        try:
            meta = pq.ParquetFile(file)
        except (pa.ArrowInvalid, OSError) as e:
            raise IndexBuildError(f"{file}: not a readable Parquet file ({e})") from e
        kind = meta.schema_arrow.field("embedding").type \
            if "embedding" in meta.schema_arrow.names else None
        dim = kind.list_size if kind is not None and pa.types.is_fixed_size_list(kind) else 0
        total += meta.metadata.num_rows * dim * 4
    return total


def should_stream(path: str | Path) -> bool:
    return embedding_bytes(path) > STREAM_MIN_BYTES


def open_source(meta: str | Path, stream: bool | None = None, chunk_rows: int = CHUNK_ROWS,
                labels: Labels = None, names: FileNames = DEFAULT) -> Source:
    """The collection at ``meta`` as a source: streamed (``stream=True``, or None and the
    embeddings exceed ``STREAM_MIN_BYTES``) or loaded whole. Either takes the same labels."""
    if stream is None:
        stream = should_stream(meta)
    if stream:
        return ParquetSource(meta, chunk_rows, labels, names)
    return ArraySource.open(meta, labels, chunk_rows, names)
