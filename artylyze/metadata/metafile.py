"""Read a meta.parquet written by ``artylyze tag`` (one file, or a folder of part files) in
batches, for the writers that turn it into other formats (XMP sidecars, CSV, JSONL).

Why not one ``pq.read_table``: a million-row output holds a gigabyte of embeddings that
these writers never need, so they read only the columns they use, a batch at a time.
Part files of one folder may differ by a column (``record_id`` is attached after a run);
a column a part lacks reads as nulls, so every batch has the same columns.

People over the machine: when a review store lies beside the output (or one is given),
every batch comes with the human labels laid over the model's (see
:mod:`artylyze.review.overlay`), so each writer that reads through here (XMP, CSV, JSON
lines) honours a cataloguer's corrections without knowing about them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import Manifest
from artylyze.review import HumanLabel, ReviewStore, review_path
from artylyze.review.overlay import overlay, overlay_fields
from artylyze.store import META_BUNDLE, META_ROOT, OutputTarget, decode_path

BATCH_ROWS = 8192
AUTO = "auto"  # open_meta's default: the review store beside the output, if there is one


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
    humans: dict[tuple[str, str], HumanLabel] | None = None  # (sha256, task) -> answer
    human_tasks: tuple[str, ...] = ()  # tasks only people gave (no model column)
    review: Path | None = None  # the review store the human labels came from

    @property
    def names(self) -> list[str]:
        return self.schema.names

    @property
    def all_tasks(self) -> tuple[str, ...]:
        """The model's tasks, then those only people gave."""
        return self.tasks + self.human_tasks

    def batches(self, columns: Sequence[str] | None = None,
                batch_size: int = BATCH_ROWS) -> Iterator[pa.Table]:
        """Every row, ``columns`` only (all when None); a column a file lacks is null.
        With human labels, each batch has them laid over the model's."""
        wanted = list(columns) if columns is not None else self.names
        if self.humans is None:
            yield from self._read(wanted, batch_size)
            return
        read = wanted if "sha256" in wanted else [*wanted, "sha256"]
        for table in self._read(read, batch_size):
            yield overlay(table, self.humans, self.all_tasks).select(wanted)

    def _read(self, wanted: list[str], batch_size: int) -> Iterator[pa.Table]:
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


def open_meta(path: str | os.PathLike[str],
              review: str | os.PathLike[str] | None = AUTO) -> MetaFile:
    """Open ``path``: a meta.parquet file or a folder of part files (either engine's).

    ``review``: the review store whose human labels are laid over the model's; by default
    the one beside ``path`` when it exists; None reads the model's labels alone."""
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
    opened = MetaFile(path, tuple(files), schema, _tasks(schema, meta), root)
    return with_humans(opened, review)


def with_humans(meta: MetaFile, review: str | os.PathLike[str] | None = AUTO) -> MetaFile:
    """``meta`` reading the human labels of ``review`` (see :func:`open_meta`)."""
    if review is None:
        return meta
    store = review_path(meta.path) if review == AUTO else Path(review)
    if review == AUTO and not store.exists():
        return meta
    if "sha256" not in meta.names:
        raise MetaFileError(f"{meta.path}: has no sha256 column, so reviews cannot be matched")
    with ReviewStore.open(store, create=False) as opened:
        humans = opened.current()
    known = set(meta.tasks)
    human_tasks = tuple(dict.fromkeys(t for _, t in humans if t not in known))
    schema = meta.schema
    for f in overlay_fields(meta.tasks, human_tasks, schema):
        schema = schema.append(f)
    return replace(meta, schema=schema, humans=humans, human_tasks=human_tasks,
                   review=store)


def _tasks(schema: pa.Schema, meta: dict[bytes, bytes]) -> tuple[str, ...]:
    """The bundle's label tasks (``period`` derived from a year head included) that have
    columns; without a readable manifest, every ``<x>`` with ``<x>_score``."""
    try:
        names: Sequence[str] = Manifest.from_dict(json.loads(meta[META_BUNDLE])).label_tasks
    except (KeyError, TypeError, ValueError, RecursionError, ArtyLyzeError):
        names = [n[:-len("_score")] for n in schema.names if n.endswith("_score")]
    return tuple(n for n in names if n in schema.names and f"{n}_score" in schema.names)
