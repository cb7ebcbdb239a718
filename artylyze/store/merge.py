"""The final merge: old rows and this run's parts streamed into a new output, swapped in.

``state.known[path].source`` says which source holds the row to keep for each path; reuse
records get a copy of an ok row with their sha256, so no embedding is read twice into memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write, swap_in_dir
from artylyze.signals import critical
from artylyze.store.schema import ROW_GROUP_ROWS, build_row, rows_to_table
from artylyze.store.state import OLD, State, part_number
from artylyze.store.target import OutputTarget

ROWS_PER_FILE = 131_072  # rows per file of a dataset output


def write_output(target: OutputTarget, schema: pa.Schema, state: State, parts: Iterable[Path],
                 model_id: str) -> tuple[int, int]:
    """Stream old rows and parts into a new output, then swap it in atomically: a file
    through :func:`artylyze.atomic.atomic_write`, a dataset folder through
    :func:`artylyze.atomic.swap_in_dir` (which :meth:`OutputTarget.recover` finishes after a
    crash). A stop signal waits until the old folder is gone, so none is left beside the new.

    ``state.known[path].source`` says which source holds the row to keep for each path
    (paths absent from it are dropped: pruned). Returns (rows written, reuse records that
    found no source and became error rows: 0 unless the work dir was tampered with).
    """
    sources: list[tuple[int, Path]] = [(OLD, f) for f in state.old_files]
    sources += [(part_number(p), p) for p in parts]
    done: list[int] = []

    def merge(dest: Path | IO[bytes]) -> None:
        sink = _Sink(dest, schema, target.dataset)
        try:
            lost = _merge_into(sink, sources, state, schema, model_id)
            done[:] = [sink.close(), lost]
        except BaseException:
            sink.abort()
            raise

    if not target.dataset:
        atomic_write(target.path, merge)
    else:
        merge(target.staged)
        with critical():
            swap_in_dir(target.path)  # parks the old one beside it if it must
    return done[0], done[1]  # both atomic_write and swap_in_dir fsync the parent folder


def _merge_into(sink: _Sink, sources: list[tuple[int, Path]], state: State, schema: pa.Schema,
                model_id: str) -> int:
    """Every row to keep, in source order; returns how many reuse records found no row."""
    pending: dict[str, list[tuple[str, int | None, int | None]]] = {}
    for p, k in state.known.items():
        if k.reused and k.sha256:
            pending.setdefault(k.sha256, []).append((p, k.size, k.mtime_ns))
    known = state.known
    for tag, path in sources:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
            table = pa.Table.from_batches([batch])
            if not table.schema.equals(schema, check_metadata=False):
                # columns attached after a run (records' record_id) are attached again
                table = table.select(schema.names).cast(schema)
            paths = table.column("path").to_pylist()
            keep = [(k := known.get(p)) is not None and k.source == tag and not k.reused
                    for p in paths]
            sink.add(table.filter(pa.array(keep, pa.bool_())))
            if pending:
                sink.add(_reuse_copies(table, pending))
    lost = [(p, s, m, sha) for sha, v in pending.items() for p, s, m in v]
    if lost:
        now = datetime.now().astimezone()
        sink.add(rows_to_table([
            build_row(p, s, m, sha256=sha, model=model_id, tagged_at=now,
                      error="internal: the result to reuse was not found; run again")
            for p, s, m, sha in lost], schema))
    return len(lost)


def _reuse_copies(table: pa.Table, pending: dict[str, list[tuple[str, int | None, int | None]]]
                  ) -> pa.Table | None:
    """Rows for files whose content (sha256) matches an ok row of this table."""
    shas = table.column("sha256").to_pylist()
    status = table.column("status").to_pylist()
    idx, paths, sizes, mtimes = [], [], [], []
    for i, (sha, st) in enumerate(zip(shas, status, strict=True)):
        if st == "ok" and sha in pending:
            for p, s, m in pending.pop(sha):
                idx.append(i)
                paths.append(p)
                sizes.append(s)
                mtimes.append(m)
    if not idx:
        return None
    copies = table.take(pa.array(idx, pa.int64()))
    for name, values in (("path", paths), ("size", sizes), ("mtime_ns", mtimes)):
        i = copies.schema.get_field_index(name)
        copies = copies.set_column(i, copies.schema.field(i),
                                   pa.array(values, copies.schema.field(i).type))
    return copies


class _Sink:
    """Buffers pieces into row groups of ROW_GROUP_ROWS; rolls files for a dataset output."""

    def __init__(self, dest: Path | IO[bytes], schema: pa.Schema, dataset: bool) -> None:
        self.dest, self.schema, self.dataset = dest, schema, dataset
        self.pieces: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0
        self.file_rows = 0
        self.files = 0
        self.writer: pq.ParquetWriter | None = None
        if isinstance(dest, Path):  # a dataset folder; else the open temp file of one output
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)

    def add(self, table: pa.Table | None) -> None:
        if table is None or table.num_rows == 0:
            return
        self.pieces.append(table)
        self.buffered += table.num_rows
        if self.buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None:
            name = (self.dest / f"part-{self.files:05d}.parquet"
                    if isinstance(self.dest, Path) else self.dest)
            self.writer = pq.ParquetWriter(name, self.schema, compression="zstd")
            self.files += 1
            self.file_rows = 0
        return self.writer

    def _flush(self) -> None:
        if not self.pieces:
            return
        table = pa.concat_tables(self.pieces).combine_chunks()
        self.pieces, self.buffered = [], 0
        while table.num_rows:
            room = ROWS_PER_FILE - self.file_rows if self.dataset else table.num_rows
            head, table = table.slice(0, room), table.slice(room)
            self._open().write_table(head, row_group_size=ROW_GROUP_ROWS)
            self.rows += head.num_rows
            self.file_rows += head.num_rows
            if self.dataset and self.file_rows >= ROWS_PER_FILE:
                self.writer.close()
                self.writer = None

    def close(self) -> int:
        self._flush()
        if self.writer is None and self.files == 0:
            self._open()  # an empty output still carries the schema
        if self.writer is not None:
            self.writer.close()
        if isinstance(self.dest, Path):  # a single file is fsynced by atomic_write
            for f in self.dest.glob("*.parquet"):
                _fsync(f)
        return self.rows

    def abort(self) -> None:
        """Drop what was written; never raises, so the first error is the one reported."""
        if self.writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.writer.close()
        if isinstance(self.dest, Path):  # a temp file is atomic_write's to remove
            shutil.rmtree(self.dest, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
