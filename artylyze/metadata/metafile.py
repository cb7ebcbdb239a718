"""Read a meta.parquet written by ``artylyze tag`` (one file, or a folder of part files) in
batches, for the writers that turn it into other formats (XMP sidecars, CSV, JSONL).

Why not one ``pq.read_table``: a million-row output holds a gigabyte of embeddings that
these writers never need, so they read only the columns they use, a batch at a time.
Part files of one folder may differ by a column (``record_id`` is attached after a run);
a column a part lacks reads as nulls, so every batch has the same columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import Manifest
from artylyze.store import META_BUNDLE, META_ROOT, OutputTarget, decode_path

BATCH_ROWS = 8192


class MetaFileError(ArtyLyzeError):
    """A meta.parquet cannot be found or read."""


@dataclass(frozen=True)
class MetaFile:
    """An opened meta.parquet: its files, the union of their columns, tasks and root."""

    path: Path
    files: tuple[Path, ...]
    schema: pa.Schema  # the first file's schema, plus columns only later parts have
    tasks: tuple[str, ...]  # predicted tasks, in bundle order
    root: str | None  # the collection root the paths are relative to (surrogate-escaped)

    @property
    def names(self) -> list[str]:
        return self.schema.names

    def batches(self, columns: Sequence[str] | None = None,
                batch_size: int = BATCH_ROWS) -> Iterator[pa.Table]:
        """Every row, ``columns`` only (all when None); a column a file lacks is null."""
        wanted = list(columns) if columns is not None else self.names
        fields = [self.schema.field(c) for c in wanted]
        for file in self.files:
            try:
                reader = pq.ParquetFile(file)
                have = set(reader.schema_arrow.names)
                read = [c for c in wanted if c in have]
                for batch in reader.iter_batches(batch_size=batch_size, columns=read):
                    yield _with_columns(pa.Table.from_batches([batch]), fields)
            except (OSError, pa.ArrowException) as e:
                raise MetaFileError(f"{file}: not a readable Parquet file ({e})") from e


def _with_columns(table: pa.Table, fields: list[pa.Field]) -> pa.Table:
    arrays = [table.column(f.name) if f.name in table.column_names
              else pa.nulls(table.num_rows, f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def open_meta(path: str | os.PathLike[str]) -> MetaFile:
    """Open ``path``: a meta.parquet file or a folder of part files (either engine's)."""
    path = Path(path)
    if not path.exists():
        raise MetaFileError(f"{path}: no such file or folder")
    files = OutputTarget(path.absolute(), dataset=path.is_dir()).files()
    if not files:
        raise MetaFileError(f"{path}: a folder without .parquet files")
    try:
        schemas = [pq.read_schema(f) for f in files]
    except (OSError, pa.ArrowException) as e:
        raise MetaFileError(f"{path}: not a readable Parquet file ({e})") from e
    schema = schemas[0]
    for other in schemas[1:]:
        for f in other:
            if f.name not in schema.names:
                schema = schema.append(f)
    for need in ("path", "status"):
        if need not in schema.names:
            raise MetaFileError(f"{path}: not an ArtyLyze meta.parquet (no {need!r} column)")
    meta = schema.metadata or {}
    try:
        root = decode_path(meta[META_ROOT].decode()) if META_ROOT in meta else None
    except (UnicodeDecodeError, ValueError) as e:  # BadPathError is a ValueError
        raise MetaFileError(f"{path}: its artylyze.root metadata is not a usable folder name "
                            f"({e})") from e
    return MetaFile(path, tuple(files), schema, _tasks(schema, meta), root)


def _tasks(schema: pa.Schema, meta: dict[bytes, bytes]) -> tuple[str, ...]:
    """The bundle's label tasks (``period`` derived from a year head included) that have
    columns; without a readable manifest, every ``<x>`` with ``<x>_score``."""
    try:
        names: Sequence[str] = Manifest.from_dict(json.loads(meta[META_BUNDLE])).label_tasks
    except (KeyError, TypeError, ValueError, RecursionError, ArtyLyzeError):
        names = [n[:-len("_score")] for n in schema.names if n.endswith("_score")]
    return tuple(n for n in names if n in schema.names and f"{n}_score" in schema.names)
