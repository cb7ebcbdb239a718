"""What a run knows before it starts, behind three verbs: ``lookup`` (skip or reuse a file),
``record`` (what this run wrote) and ``sweep`` (files no longer found).

The state is read from the previous output and the finished parts of an interrupted run
(path -> size, mtime, sha256, ok) and says, per path, which source holds the row to keep:
the final merge (:mod:`artylyze.store.merge`) reads it back.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.store.schema import (
    KNOWN_COLUMNS,
    META_BUNDLE,
    META_REUSED,
    StoreError,
    key_from_metadata,
)
from artylyze.store.target import OutputTarget

OLD = -1  # source of rows that come from the previous output
HINTS_LIMIT = 8  # sha256 values of one file size worth checking before a decode


@dataclass(slots=True)
class Known:
    """What an earlier output or a finished part says about one path."""

    size: int | None
    mtime_ns: int | None
    sha256: str | None
    ok: bool
    source: int  # OLD, or the number of the part that holds it
    reused: bool = False  # a reuse record: its predictions come from a row with this sha256


@dataclass
class State:
    """Everything a run knows before it starts: used to skip, reuse and finally merge."""

    key: str
    known: dict[str, Known] = field(default_factory=dict)
    ok_shas: set[str] = field(default_factory=set)
    shas_by_size: dict[int, set[str]] = field(default_factory=dict)
    old_files: list[Path] = field(default_factory=list)  # earlier output, if its rows are usable
    parts: list[Path] = field(default_factory=list)  # finished parts of an interrupted run
    old_rows: int = 0
    resumed_rows: int = 0
    discarded: str | None = None  # why earlier results were not used, if they were not

    def record(self, path: str, known: Known) -> None:
        """What a source (old output, a part, this run) says about ``path``; the last wins."""
        self.known[path] = known
        if known.ok and known.sha256:
            self.ok_shas.add(known.sha256)
            if known.size is not None:
                self.shas_by_size.setdefault(known.size, set()).add(known.sha256)

    def unchanged(self, path: str, size: int | None, mtime_ns: int | None,
                  retry_errors: bool = False) -> bool:
        """Same size and mtime as recorded, so the file is not read again. An error row
        counts too unless ``retry_errors`` (its file changes when someone repairs it)."""
        k = self.known.get(path)
        return (k is not None and k.size == size and k.mtime_ns == mtime_ns
                and (k.ok or not retry_errors))

    def lookup(self, path: str, size: int | None) -> tuple[str, ...]:
        """sha256 values a changed or new file may turn out to have, whose predictions exist
        (then it is not decoded): its own last one, and those of files of its size."""
        shas = self.shas_by_size.get(size, ()) if size is not None else ()
        hints = tuple(shas) if len(shas) <= HINTS_LIMIT else ()
        old = self.known.get(path)
        if old is not None and old.ok and old.sha256 and old.sha256 not in hints:
            hints = (*hints, old.sha256)
        return hints

    def sweep(self, seen: set[str], blind: Iterable[str], prune: bool) -> int:
        """Rows of paths not ``seen`` this run, except under the ``blind`` folders that could
        not be read: dropped with ``prune``, else kept. Returns how many there were."""
        blind = list(blind)

        def hidden(path: str) -> bool:
            return any(b == "." or path.startswith(b + "/") for b in blind)

        missing = [p for p in self.known if p not in seen and not hidden(p)]
        if prune:
            for p in missing:
                del self.known[p]
        return len(missing)

    def next_part(self) -> int:
        """The number the next part of this run gets (after those of the interrupted run)."""
        return max((part_number(p) for p in self.parts), default=-1) + 1


def part_number(path: Path) -> int:
    return int(path.stem.split("-")[1])


def load_state(target: OutputTarget, key: str, full: bool, force: bool = False,
               columns: Iterable[str] = KNOWN_COLUMNS) -> State:
    """Read the old output's keys and the finished parts of an interrupted run.

    An output ArtyLyze did not write is never replaced unless ``force``; ``full`` replaces
    only ArtyLyze's own. ``columns``: what the old output must hold for its rows to be kept.
    """
    state = State(key)
    files = target.files()
    foreign = refuse_foreign(target.path, files, force)
    if foreign:
        state.discarded = foreign
    elif files and not full:
        keys = {key_from_metadata(read_schema(f).metadata or {}) for f in files}
        if keys == {key}:
            _check_columns(files, columns)
            state.old_files = files
            for f in files:
                for p, k in known_rows(f, OLD):
                    state.record(p, k)
                    state.old_rows += 1
        else:
            made = " and ".join(sorted(k or "an unknown model" for k in keys - {key}))
            state.discarded = f"{target.path} was made with {made}; every file is tagged again"
    run = _read_json(target.workdir / "run.json")
    if not run or run.get("key") != key or (full and not run.get("full")):
        shutil.rmtree(target.workdir, ignore_errors=True)  # another model's or no run's
    else:
        for part in sorted(target.workdir.glob("part-*.parquet")):
            number = part_number(part)
            for p, k in known_rows(part, number):
                state.record(p, k)
                state.resumed_rows += 1
            for p, size, mtime, sha in reused_records(part):
                state.record(p, Known(size, mtime, sha, True, number, reused=True))
                state.resumed_rows += 1
            state.parts.append(part)
    return state


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def refuse_foreign(out: Path, files: Iterable[Path], force: bool) -> str | None:
    """Raise a StoreError (kind ``foreign``) when the output holds a file ArtyLyze did not
    write, unless ``force``: then return the warning to show (None when all is ours)."""
    foreign = foreign_reason(files)
    if foreign and not force:
        raise StoreError(f"--out {out}: {foreign}; it is not replaced: give another --out, or "
                         "add --force to replace it", kind="foreign")
    return f"{foreign}; replaced (--force)" if foreign else None


def foreign_reason(files: Iterable[Path]) -> str | None:
    """Why an existing output may not be ArtyLyze's, or None when every file carries our
    metadata. A file that cannot be read cannot be vouched for either."""
    for f in files:
        try:
            meta = pq.read_schema(f).metadata or {}
        except (OSError, pa.ArrowException) as e:
            return f"{f} cannot be read as Parquet ({e}), so ArtyLyze may not have written it"
        if META_BUNDLE not in meta:
            return f"{f} was not written by ArtyLyze (it has no {META_BUNDLE.decode()} metadata)"
    return None


def _check_columns(files: Iterable[Path], columns: Iterable[str]) -> None:
    want = list(columns)
    for f in files:
        missing = [c for c in want if c not in read_schema(f).names]
        if missing:
            raise StoreError(f"{f} lacks the columns {missing} (changed by another tool?); run "
                             "with --full to tag everything again and replace it",
                             kind="damaged")


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"cannot read the existing output {path} ({e}); move it away or "
                         "run with --full to replace it", kind="damaged") from e


def known_in(rows: pa.Table | pa.RecordBatch, source: int) -> Iterator[tuple[str, Known]]:
    """(path, Known) of each row of a table holding at least ``KNOWN_COLUMNS``."""
    cols = [rows.column(c).to_pylist() for c in KNOWN_COLUMNS]
    for p, size, mtime, sha, status in zip(*cols, strict=True):
        yield p, Known(size, mtime, sha, status == "ok", source)


def known_rows(path: Path, source: int) -> Iterator[tuple[str, Known]]:
    """(path, Known) of every row, read in batches of the five small columns only."""
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=65536, columns=KNOWN_COLUMNS)
        for batch in batches:
            yield from known_in(batch, source)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"cannot read {path} ({e}); move it away or run with --full") from e


def reused_records(part: Path) -> list[tuple[str, int, int, str]]:
    """The reuse records a part carries in its metadata: (path, size, mtime_ns, sha256)."""
    meta = pq.read_schema(part).metadata or {}
    return [tuple(r) for r in json.loads(meta.get(META_REUSED, b"[]"))]
