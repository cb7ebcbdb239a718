"""Museum records: a table keyed by an id column (an accession number) that names image files,
joined onto ArtyLyze's outputs so they carry the museum's id as ``record_id``.

A record's file name is matched against each output path from the most specific form to the
least: the absolute path under the collection root, the relative path, then the path's
trailing components (``scans/1985/a.tif``, ``1985/a.tif``, ``a.tif``: records that name
bare files), and last the records' own trailing components (``collection/scans/a.tif``
for the path ``scans/a.tif``: records made from a parent folder), used only where just one
record ends that way. One file named under two different ids is refused: a wrong id is
worse than none. Ids are always text (``1985.52.1`` is not a float).

This module reads the table and matches names; :mod:`artylyze.metadata.records_attach` joins the
ids onto a meta.parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import sha256_file
from artylyze.options import FILE_COLUMN, ID_COLUMN

RECORD_ID = "record_id"
META_RECORDS = b"artylyze.records"
DEFAULT_ID_COLUMN = ID_COLUMN
DEFAULT_FILE_COLUMN = FILE_COLUMN
FORMATS = (".csv", ".parquet", ".jsonl", ".ndjson")
JOIN_VERSION = 2  # recorded with the ids: a change to the matching rules joins again


class RecordsError(ArtyLyzeError):
    """The records table cannot be read or does not map files to ids unambiguously."""


@dataclass(frozen=True)
class RecordSpec:
    """Which table, and which of its columns hold the id and the file name."""

    table: Path
    id_column: str = DEFAULT_ID_COLUMN
    file_column: str = DEFAULT_FILE_COLUMN

    def to_dict(self, sha256: str) -> dict[str, str]:
        return {"table": str(Path(self.table).absolute()), "sha256": sha256,
                "id_column": self.id_column, "file_column": self.file_column,
                "join": JOIN_VERSION}


def _normal(name: str) -> str:
    """A file name as records tables write it -> the key it is matched by. Not stripped: a
    name may begin with a tab or a space (see :func:`load_records` for the stripped alias)."""
    text = name.replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _keys(path: str, root: str | None) -> list[str]:
    """Lookup keys of an output path, most specific first."""
    parts = PurePosixPath(path).parts
    keys = [f"{root.rstrip('/')}/{path}"] if root else []
    return keys + ["/".join(parts[i:]) for i in range(len(parts))]


def _tails(ids: dict[str, str]) -> dict[str, str | None]:
    """Proper trailing components of every record's file -> its key (None: several)."""
    tails: dict[str, str | None] = {}
    for key in ids:
        parts = PurePosixPath(key).parts
        for i in range(1, len(parts)):
            tail = "/".join(parts[i:])
            tails[tail] = key if tails.get(tail, key) == key else None
    return tails


@dataclass
class Records:
    """File key -> record id, plus what the join found (for the run's summary)."""

    spec: RecordSpec
    sha256: str
    ids: dict[str, str]
    rows: int
    skipped: int  # rows without an id or a file name
    used: set[str] = field(default_factory=set)  # keys that matched an output path
    tails: dict[str, str | None] | None = None  # made on the first lookup that needs them
    aliases: dict[str, str] = field(default_factory=dict)  # stripped name -> its exact key

    def lookup(self, path: str, root: str | None = None) -> str | None:
        """The record id of an output path (relative to ``root``), or None: the exact name
        first, then the name with the spaces a spreadsheet cell may add stripped."""
        keys = _keys(path, root)
        key = next((k for k in keys if k in self.ids), None)
        if key is None:
            key = next((self.aliases[k] for k in keys if k in self.aliases), None)
        if key is None:
            if self.tails is None:
                self.tails = _tails(self.ids)
            key = self.tails.get(path)
        if key is None:
            return None
        self.used.add(key)
        return self.ids[key]

    def lookup_all(self, paths: Iterable[str], root: str | None = None) -> list[str | None]:
        return [self.lookup(p, root) for p in paths]

    @property
    def unmatched(self) -> int:
        """Records whose file name matched no output path."""
        return len(self.ids) - len(self.used)


def _read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix in (".jsonl", ".ndjson"):
            return _read_json_lines(path)
        import pyarrow.csv as pacsv

        names = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16))
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names.column_names},
            strings_can_be_null=True))
    except (OSError, UnicodeDecodeError, pa.ArrowException) as e:
        raise RecordsError(f"{path}: not a readable records table ({e})") from e


def _read_json_lines(path: Path) -> pa.Table:
    """JSON lines read as text columns: one object per line, types may differ per row
    (an id is 12 in one record and "1985.1" in the next)."""
    rows: list[dict[str, object]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:  # a 5,000-digit id, 100,000-deep nesting
                raise RecordsError(f"{path}, line {number}: not usable JSON "
                                   f"({str(e)[:200] or type(e).__name__})") from e
            if not isinstance(row, dict):
                raise RecordsError(f"{path}, line {number}: not a JSON object")
            rows.append(row)
    names = dict.fromkeys(k for row in rows for k in row)
    return pa.table({n: pa.array(_text([row.get(n) for row in rows]), pa.string())
                     for n in names})


def _text(values: list[object]) -> list[str | None]:
    out = []
    for v in values:
        text = None if v is None else str(v).strip()
        out.append(text or None)
    return out


def load_records(spec: RecordSpec) -> Records:
    """Read the table (CSV, Parquet or JSON lines) and index its ids by file name."""
    path = Path(spec.table)
    if not path.is_file():
        raise RecordsError(f"{path}: no such records table")
    if path.suffix.lower() not in FORMATS:
        raise RecordsError(f"{path}: records must be one of {', '.join(FORMATS)}")
    table = _read_table(path)
    for column, option in ((spec.id_column, "--id-column"), (spec.file_column, "--file-column")):
        if column not in table.column_names:
            raise RecordsError(f"{path}: no column {column!r} ({option}); it has "
                               f"{', '.join(table.column_names)}")
    ids = _text(table.column(spec.id_column).to_pylist())
    files = _names(table.column(spec.file_column).to_pylist())
    by_key: dict[str, str] = {}
    clashes: list[str] = []
    skipped = 0
    for rid, name in zip(ids, files, strict=True):
        if rid is None or name is None:
            skipped += 1
            continue
        key = _normal(name)
        old = by_key.setdefault(key, rid)
        if old != rid:
            clashes.append(f"{name!r} ({old}, {rid})")
    if clashes:
        shown = "; ".join(clashes[:3]) + (f" and {len(clashes) - 3} more" if len(clashes) > 3
                                          else "")
        raise RecordsError(f"{path}: files listed under two different ids: {shown}")
    return Records(spec, sha256_file(path), by_key, table.num_rows, skipped,
                   aliases=_aliases(by_key))


def _names(values: list[object]) -> list[str | None]:
    """File names as they are (a leading tab or space can be part of one); blank: None."""
    return [None if v is None or not str(v).strip() else str(v) for v in values]


def _aliases(ids: dict[str, str]) -> dict[str, str]:
    """Stripped form -> exact key, for names with outer whitespace whose stripped form is
    not a key itself and belongs to one name only (a cell padded by a spreadsheet)."""
    out: dict[str, str | None] = {}
    for key in ids:
        bare = _normal(key.strip())
        if bare != key and bare not in ids:
            out[bare] = key if out.get(bare, key) == key else None
    return {k: v for k, v in out.items() if v is not None}
