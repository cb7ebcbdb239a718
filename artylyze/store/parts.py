"""Crash-safe chunks of a run: a part counts only once its rename from a temp file happened.

A run commits its new rows in parts to the work dir, so ``kill -9`` loses at most the rows
not yet committed; the next run reads the finished parts back as state (see
:func:`artylyze.store.state.load_state`). Rows whose content is reused (a touched or renamed
file with a sha256 seen before) go into a part's metadata as small records (path, size,
mtime_ns, sha256); the merge copies their predictions from an ok row with that sha256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write
from artylyze.store.schema import META_REUSED, ROW_GROUP_ROWS, rows_to_table
from artylyze.store.target import OutputTarget

ReuseRecord = tuple[str, int | None, int | None, str]  # path, size, mtime_ns, sha256


class PartWriter:
    """Commits chunks of rows to the work dir; a part exists only once fully written."""

    def __init__(self, target: OutputTarget, schema: pa.Schema, key: str, full: bool,
                 next_number: int) -> None:
        self.dir = target.workdir
        self.schema = schema
        self.number = next_number
        self.dir.mkdir(parents=True, exist_ok=True)
        run = self.dir / "run.json"
        if not run.exists():
            atomic_write(run, lambda f: f.write(json.dumps({"key": key, "full": full}).encode()))

    def commit(self, rows: list[dict[str, Any]], reused: list[ReuseRecord]) -> Path:
        """Write one part (rows + reuse records) and make it count (fsync + rename); a part
        that cannot be written whole (full disk, signal) leaves no temp file behind."""
        meta = dict(self.schema.metadata or {})
        meta[META_REUSED] = json.dumps(reused, ensure_ascii=False).encode()
        schema = self.schema.with_metadata(meta)
        table = rows_to_table(rows, schema)
        final = self.dir / f"part-{self.number:05d}.parquet"

        def write(f: IO[bytes]) -> None:
            with pq.ParquetWriter(f, schema, compression="zstd") as w:
                w.write_table(table, row_group_size=ROW_GROUP_ROWS)

        atomic_write(final, write)  # fsyncs the part and the folder
        self.number += 1
        return final
