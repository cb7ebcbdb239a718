"""Museum record ids joined onto a meta.parquet.

The table side is :mod:`artylyze.metadata.records`.

``attach_records`` adds the ``record_id`` column after ``tag`` has written the output, one
file at a time and atomically, under the output's lock. Each file records which records
table (sha256) and columns made its ids, so an unchanged table costs nothing on the next
run; a later ``tag`` without ``--records`` finds that note and joins the same table again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write
from artylyze.metadata.records import (
    META_RECORDS,
    RECORD_ID,
    Records,
    RecordsError,
    RecordSpec,
    load_records,
)
from artylyze.store import META_ROOT, ROW_GROUP_ROWS, OutputLock, OutputTarget


@dataclass
class AttachReport:
    """What attaching ids to an output did."""

    rows: int = 0
    matched: int = 0  # rows that got an id
    files_rewritten: int = 0
    files_unchanged: int = 0  # their ids came from the same table already
    records_unmatched: int | None = None  # records naming no file (None: not every file joined)


def recorded_spec(out: str | os.PathLike[str]) -> RecordSpec | None:
    """The records table an existing output's ids came from (None if it has none)."""
    for file in OutputTarget.resolve(out).files():
        try:
            note = _note(pq.read_schema(file))
        except (OSError, pa.ArrowException):
            continue  # not Parquet: the run itself refuses to replace it, and says why
        if note:
            return RecordSpec(Path(note["table"]), note["id_column"], note["file_column"])
    return None


def records_for_run(out: str | os.PathLike[str], spec: RecordSpec | None
                    ) -> tuple[Records | None, str | None]:
    """The records a ``tag`` run attaches: ``spec`` if given (read now, so a bad table fails
    before hours of tagging), else the table the output's ids came from. Returns them and
    a warning when that table is gone (the ids then disappear from rewritten files)."""
    if spec is not None:
        return load_records(spec), None
    recorded = recorded_spec(out)
    if recorded is None:
        return None, None
    if not Path(recorded.table).is_file():
        return None, (f"the records table {recorded.table} that gave {out} its record ids is "
                      "gone; pass --records to keep them")
    return load_records(recorded), None


def _note(schema: pa.Schema) -> dict[str, str] | None:
    try:
        return json.loads((schema.metadata or {})[META_RECORDS])
    except (KeyError, ValueError, RecursionError):
        return None


def attach_records(out: str | os.PathLike[str], records: Records) -> AttachReport:
    """Give every row of the output ``out`` (file or part folder) its ``record_id``.

    Files whose ids were made from the same table and columns are left as they are; the
    others are rewritten (temp file + rename) with the column right after ``path``.
    """
    note = records.spec.to_dict(records.sha256)
    target = OutputTarget.resolve(out)
    report = AttachReport()
    with OutputLock(target):
        files = target.files()
        if not files:
            raise RecordsError(f"{target.path}: no output to attach record ids to")
        _remove_stale_temps(target)
        for file in files:
            schema = pq.read_schema(file)
            root = (schema.metadata or {}).get(META_ROOT, b"").decode() or None
            if _note(schema) == note and RECORD_ID in schema.names:
                report.files_unchanged += 1
                report.rows += pq.ParquetFile(file).metadata.num_rows
                column = pq.read_table(file, columns=[RECORD_ID]).column(RECORD_ID)
                report.matched += len(column) - column.null_count
                continue
            rows, matched = _rewrite(file, schema, records, note, root)
            report.rows += rows
            report.matched += matched
            report.files_rewritten += 1
    # only a join of every file sees every record that matches
    report.records_unmatched = None if report.files_unchanged else records.unmatched
    return report


def _remove_stale_temps(target: OutputTarget) -> None:
    """Temp files of an attach killed before its rename (they would block the next tag)."""
    folder, pattern = ((target.path, "*.parquet.*.tmp") if target.dataset
                       else (target.path.parent, f"{target.path.name}.*.tmp"))
    for stale in folder.glob(pattern):
        stale.unlink(missing_ok=True)


def _rewrite(file: Path, schema: pa.Schema, records: Records, note: dict[str, str],
             root: str | None) -> tuple[int, int]:
    base = schema.remove(schema.get_field_index(RECORD_ID)) if RECORD_ID in schema.names \
        else schema
    meta = dict(schema.metadata or {})
    meta[META_RECORDS] = json.dumps(note, ensure_ascii=False).encode()
    at = base.get_field_index("path") + 1
    out_schema = base.insert(at, pa.field(RECORD_ID, pa.string())).with_metadata(meta)
    counts = [0, 0]

    def write(f: IO[bytes]) -> None:
        with pq.ParquetWriter(f, out_schema, compression="zstd") as w:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=ROW_GROUP_ROWS,
                                                          columns=base.names):
                table = pa.Table.from_batches([batch])
                ids = records.lookup_all(table.column("path").to_pylist(), root)
                table = table.add_column(at, RECORD_ID, pa.array(ids, pa.string()))
                w.write_table(table.cast(out_schema), row_group_size=ROW_GROUP_ROWS)
                counts[0] += table.num_rows
                counts[1] += sum(i is not None for i in ids)

    atomic_write(file, write)
    return counts[0], counts[1]
