"""Flat exports of a meta.parquet for spreadsheets and collection systems: CSV and JSON lines.

One row per file and one column per scalar column of meta.parquet, in its order: ``path``
(and ``record_id`` when records were attached), the file's facts, ``status`` / ``error``,
and per task ``<task>`` and ``<task>_score`` (plus whatever scalar columns the model adds,
such as ``year`` or ``<task>_confident``). The ``<task>_top`` lists and the embedding are
left out unless asked: they are nested and large.

Round trips, so a system can key its records on them:

- ``path`` is meta.parquet's text as it is: valid UTF-8 even for names that are not
  (undecodable bytes as ``\\xHH``, a backslash doubled; :func:`artylyze.store.decode_path`
  gives the file back). Commas, quotes and newlines in names are quoted per RFC 4180.
- In CSV every text is quoted and a null is an empty cell, so null and ``""`` differ.
- CSV is for spreadsheets, and Excel and LibreOffice evaluate a cell that starts with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula (a file name or museum
  record id such as ``=HYPERLINK(...)`` would run). So, as OWASP recommends, such a text
  cell (and header) gets a leading ``'``, which spreadsheets show as text and do not
  evaluate, and a NUL in a text becomes the four characters ``\\x00``. Those cells are then
  not the exact value: ``--csv-raw`` (``FlatOptions(csv_raw=True)``) writes every value as
  it is, and JSON lines are always exact.
  Nested values (``--top``, ``--embedding``) are JSON text in one cell; in JSON lines they
  are JSON lists.
- Scores are written as the shortest decimal that reads back as the same float32;
  ``tagged_at`` as RFC 3339 in UTC (``2026-01-31T12:00:00.123456Z``).

A row whose ``domain`` (where the model gives one) is not ``artwork`` has every
``<task>_confident`` false, whatever meta.parquet says (docs/writing-policy.md).

Both are written atomically (temp file + rename) a batch at a time, so memory stays flat.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc

from artylyze.atomic import atomic_write
from artylyze.metadata.metafile import AUTO, MetaFile, open_meta
from artylyze.metadata.policy import ARTWORK_DOMAIN, DOMAIN

FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class FlatOptions:
    """What goes into a flat export beyond the scalar columns."""

    top: bool = False  # the <task>_top lists (label + score, best first)
    embedding: bool = False  # the embedding vector
    csv_raw: bool = False  # CSV: no formula neutralising (exact values, unsafe in Excel)


#: What makes a spreadsheet evaluate a cell (OWASP "CSV Injection"); such cells get a ``'``.
FORMULA_START = r"^[=+\-@\t\r]"


def columns(meta: MetaFile, options: FlatOptions) -> list[str]:
    """The columns of an export, in meta.parquet's order."""
    out = []
    for f in meta.schema:
        nested = pa.types.is_nested(f.type)
        if f.name == "embedding":
            if options.embedding:
                out.append(f.name)
        elif f.name.endswith("_top") and nested:
            if options.top:
                out.append(f.name)
        elif not nested:
            out.append(f.name)
    return out


def _short_floats(arr: pa.Array) -> pa.Array:
    """Every float32 in ``arr``, at any depth, as the float64 of its shortest decimal
    (0.97106737, not 0.9710673689842224): what the JSON and CSV writers then print."""
    t = arr.type
    mask = arr.is_null() if arr.null_count else None
    if t == pa.float32():
        return pc.cast(pc.cast(arr, pa.string()), pa.float64())
    if pa.types.is_struct(t):
        children = [_short_floats(c) for c in arr.flatten()]
        return pa.StructArray.from_arrays(children, names=[f.name for f in t], mask=mask)
    if pa.types.is_fixed_size_list(t):  # .values, not .flatten(): that skips null rows
        size = t.list_size
        children = arr.values.slice(arr.offset * size, len(arr) * size)
        return pa.FixedSizeListArray.from_arrays(_short_floats(children), size, mask=mask)
    if pa.types.is_list(t):
        start, end = arr.offsets[0].as_py(), arr.offsets[-1].as_py()
        children = arr.values.slice(start, end - start)
        return pa.ListArray.from_arrays(pc.subtract(arr.offsets, start), _short_floats(children),
                                        mask=mask)
    return arr


def _plain(column: pa.ChunkedArray) -> pa.Array:
    """One column in export form: timestamps as RFC 3339 text, float32 as short decimals."""
    arr = column.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz != "UTC":
            arr = arr.cast(pa.timestamp(arr.type.unit, tz="UTC"))
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%SZ")
    return _short_floats(arr)


def _not_artwork_unsure(batch: pa.Table) -> pa.Table:
    """Where a row's ``domain`` is not ``artwork``, its ``<task>_confident`` flags read false
    (``domain_confident`` itself says how sure the domain is and stays, and so does a
    person's label): whatever the model did, a non-artwork carries no confident model label
    into a spreadsheet."""
    if DOMAIN not in batch.column_names:
        return batch
    domain = batch.column(DOMAIN)
    other = pc.and_(pc.is_valid(domain), pc.not_equal(domain, ARTWORK_DOMAIN))
    for i, name in enumerate(batch.column_names):
        if name.endswith("_confident") and name != f"{DOMAIN}_confident":
            flags = batch.column(name)
            clear = pc.and_(other, pc.is_valid(flags))
            source = f"{name[:-len('_confident')]}_source"
            if source in batch.column_names:  # a person's label stays confident
                clear = pc.and_(clear, pc.invert(pc.fill_null(
                    pc.equal(batch.column(source), "human"), False)))
            cleared = pc.if_else(clear, False, flags)
            batch = batch.set_column(i, name, cleared)
    return batch


def _batches(meta: MetaFile, names: list[str]) -> Iterator[pa.Table]:
    read = names if DOMAIN in names or DOMAIN not in meta.names else [*names, DOMAIN]
    for batch in meta.batches(read):
        batch = _not_artwork_unsure(batch)
        yield pa.table({n: _plain(batch.column(n)) for n in names})


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _write_jsonl(tables: Iterator[pa.Table], f: IO[bytes], names: list[str]) -> int:
    rows = 0
    for table in tables:
        for row in table.to_pylist():
            f.write(_json(row).encode() + b"\n")
            rows += 1
    return rows


def neutralise(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A text column made safe to open in a spreadsheet: cells that start like a formula
    get a leading ``'``, NULs become ``\\x00``; other columns are returned as they are."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    formula = pc.match_substring_regex(column, FORMULA_START)
    safe = pc.if_else(formula, pc.binary_join_element_wise("'", column, ""), column)
    return pc.replace_substring(safe, "\x00", "\\x00")


def neutralise_name(name: str) -> str:
    """A header cell, by the rule of :func:`neutralise`."""
    return neutralise(pa.array([name])).to_pylist()[0]


def _write_csv(tables: Iterator[pa.Table], f: IO[bytes], names: list[str],
               raw: bool = False) -> int:
    import pyarrow.csv as pacsv

    rows = 0
    writer = None
    options = pacsv.WriteOptions(quoting_style="needed")
    safe = (lambda c: c) if raw else neutralise
    header = names if raw else [neutralise_name(n) for n in names]
    for table in tables:
        cells = {h: safe(_as_json_text(table.column(n)))
                 for h, n in zip(header, table.column_names, strict=True)}
        table = pa.table(cells)
        if writer is None:
            writer = pacsv.CSVWriter(f, table.schema, write_options=options)
        writer.write_table(table)
        rows += table.num_rows
    if writer is None:  # no rows: the header still says what the columns are
        empty = pa.schema([(n, pa.string()) for n in header])
        writer = pacsv.CSVWriter(f, empty, write_options=options)
    writer.close()
    return rows


def _as_json_text(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    if not pa.types.is_nested(column.type):
        return column
    return pa.array([None if v is None else _json(v) for v in column.to_pylist()], pa.string())


def export_flat(meta_path: str | os.PathLike[str], out: str | os.PathLike[str], fmt: str,
                options: FlatOptions | None = None,
                review: str | os.PathLike[str] | None = AUTO) -> int:
    """Write ``out`` as ``fmt`` (csv or jsonl) from a meta.parquet; returns the rows written.
    Human labels of ``review`` (default: the store beside meta.parquet) win over the model's,
    with ``<task>_source`` saying which is which."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    options = options or FlatOptions()
    meta = open_meta(meta_path, review)
    names = columns(meta, options)
    written = [0]

    def run(f: IO[bytes]) -> None:
        if fmt == "csv":
            written[0] = _write_csv(_batches(meta, names), f, names, options.csv_raw)
        else:
            written[0] = _write_jsonl(_batches(meta, names), f, names)

    atomic_write(out, run)
    return written[0]
