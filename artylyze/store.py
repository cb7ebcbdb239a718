"""meta.parquet: the schema, how rows are built, and how a run's results reach the disk safely.

Layout on disk, for ``--out meta.parquet`` (``--out meta/`` is the same with a directory of
``part-NNNNN.parquet`` files as the output)::

    meta.parquet            the result; replaced atomically (temp file + os.replace)
    meta.parquet.lock       who owns the output (see artylyze.lock)
    .meta.parquet.parts/    work dir of the run in progress: run.json + part-NNNNN.parquet

A run commits its new rows in chunks to the work dir; a part counts only once its rename
from ``*.tmp`` has happened, so ``kill -9`` loses at most the rows not yet committed. The next
run reads the old output and the finished parts as its *state* (path -> size, mtime, sha256),
skips what they already cover, and finally streams old rows + parts into a new output.

Rows whose content is reused (a touched or renamed file with a sha256 seen before) are stored
in a part's metadata as small records (path, size, mtime_ns, sha256); the merge copies the
predictions from any ok row with that sha256, so no embedding is ever read twice into memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write, fsync_dir, replace_dir
from artylyze.bundle import Manifest
from artylyze.errors import ArtyLyzeError, writing
from artylyze.lock import FileLock, LockedError
from artylyze.predict import Prediction
from artylyze.signals import critical

SCHEMA_VERSION = "1"
META_BUNDLE = b"artylyze.bundle"
META_ROOT = b"artylyze.root"
META_SCHEMA_VERSION = b"artylyze.schema_version"
META_TOP_K = b"artylyze.top_k"
META_REUSED = b"artylyze.reused"
ROW_GROUP_ROWS = 8192
ROWS_PER_FILE = 131_072
OLD = -1  # State source of rows that come from the previous output
FIXED_COLUMNS = ("path", "size", "mtime_ns", "sha256", "width", "height", "status", "error")
KNOWN_COLUMNS = ["path", "size", "mtime_ns", "sha256", "status"]  # what the state needs
TOP_TYPE = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))
YEAR_COLUMNS = ("year", "year_low", "year_high")  # estimate and its interval (Model v2)


class StoreError(ArtyLyzeError):
    """The output cannot be read, written or locked."""


OutputLockedError = LockedError  # the name callers of this module know

# ---------------------------------------------------------------- paths as Parquet text

def encode_path(rel: str) -> str:
    r"""Relative path (str with surrogate escapes) -> valid UTF-8 text for the ``path`` column.

    Names that are valid UTF-8 without a backslash are stored as they are. Otherwise each
    undecodable byte becomes ``\xHH`` and a literal backslash ``\\``, so the text is
    reversible with :func:`decode_path` and still readable.
    """
    if "\\" not in rel and not any("\udc80" <= c <= "\udcff" for c in rel):
        return rel
    out = []
    for c in rel:
        if c == "\\":
            out.append("\\\\")
        elif "\udc80" <= c <= "\udcff":
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(c)
    return "".join(out)


def decode_path(text: str) -> str:
    """Inverse of :func:`encode_path`: the relative path to open (str, surrogate escapes)."""
    if "\\" not in text:
        return text
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "\\":
            raw += b"\\"
            i += 2
        elif c == "\\" and text[i + 1:i + 2] == "x":
            raw.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raw += c.encode("utf-8")
            i += 1
    return os.fsdecode(bytes(raw))


def file_path(root: str | os.PathLike[str], path: str) -> str:
    """The real file behind a ``path`` value of meta.parquet."""
    return os.path.join(os.fspath(root), decode_path(path))


# ---------------------------------------------------------------- schema and rows

def result_key(manifest: Manifest, top_k: int) -> str:
    """What must match for an old row to be reused: the weights and the top-k setting."""
    return f"{manifest.model_id}|top_k={top_k}|schema={SCHEMA_VERSION}"


def label_columns(manifest: Manifest) -> list[str]:
    """Columns the bundle's heads give, beside the fixed ones (see :func:`make_schema`)."""
    calibrated = bool(manifest.calibration.get("confident"))
    cols = [c for t in manifest.label_tasks
            for c in (t, f"{t}_score", f"{t}_top", *((f"{t}_confident",) if calibrated else ()))]
    if manifest.year_task is not None:
        cols += list(YEAR_COLUMNS)
    if "novelty" in manifest.calibration:
        cols.append("novelty")
    return cols


def _column_type(name: str) -> pa.DataType:
    if name.endswith("_top"):
        return TOP_TYPE
    if name.endswith("_confident"):
        return pa.bool_()
    if name in YEAR_COLUMNS:
        return pa.int32()
    return pa.float32() if name.endswith("_score") or name == "novelty" else pa.string()


def make_schema(manifest: Manifest, root: str = "", top_k: int = 3) -> pa.Schema:
    """The fixed meta.parquet schema for a bundle (column order per the team contract)."""
    labels = label_columns(manifest)
    clash = set(FIXED_COLUMNS + ("embedding", "model", "tagged_at")) & set(labels)
    if clash or len(set(labels)) != len(labels):
        raise StoreError(f"bundle task names clash with meta.parquet columns: {sorted(clash)}")
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
    fields += [pa.field(name, _column_type(name)) for name in labels]
    fields += [
        pa.field("embedding", pa.list_(pa.float32(), manifest.embedding_dim)),
        pa.field("model", pa.string()),
        pa.field("tagged_at", pa.timestamp("us", tz="UTC")),
    ]
    metadata = {
        META_BUNDLE: json.dumps(manifest.to_dict(), ensure_ascii=False).encode(),
        META_ROOT: encode_path(root).encode(),  # same escaping as ``path``
        META_SCHEMA_VERSION: SCHEMA_VERSION.encode(),
        META_TOP_K: str(top_k).encode(),
    }
    return pa.schema(fields, metadata=metadata)


def build_row(path: str, size: int | None, mtime_ns: int | None, *, sha256: str | None,
              model: str, tagged_at: datetime, width: int | None = None,
              height: int | None = None, prediction: Prediction | None = None,
              error: str | None = None) -> dict[str, Any]:
    """The one place a file becomes a row: ok when it has a prediction, else an error row."""
    if (prediction is None) == (error is None):
        raise ValueError("a row needs exactly one of prediction and error")
    row: dict[str, Any] = {
        "path": path, "size": size, "mtime_ns": mtime_ns, "sha256": sha256,
        "width": width, "height": height, "status": "ok" if error is None else "error",
        "error": error, "embedding": None, "model": model, "tagged_at": tagged_at,
    }
    if prediction is not None:
        for task, top in prediction.top.items():
            row[task], row[f"{task}_score"] = top[0]
            row[f"{task}_top"] = [{"label": label, "score": score} for label, score in top]
        for task, flag in prediction.confident.items():
            row[f"{task}_confident"] = flag
        if prediction.year is not None:
            y = prediction.year
            row.update({"year": y.year, "year_low": y.low, "year_high": y.high})
        row["novelty"] = prediction.novelty
        row["embedding"] = prediction.embedding
    return row


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Columnar conversion; embeddings go in as one numpy block, not Python floats."""
    arrays = []
    for f in schema:
        if f.name == "embedding":
            arrays.append(_embedding_array([r["embedding"] for r in rows], f.type))
        else:
            arrays.append(pa.array([r.get(f.name) for r in rows], type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _embedding_array(values: list[np.ndarray | None], typ: pa.FixedSizeListType) -> pa.Array:
    dim = typ.list_size
    block = np.zeros((len(values), dim), np.float32)
    valid = np.zeros(len(values), bool)
    for i, v in enumerate(values):
        if v is not None:
            block[i] = v
            valid[i] = True
    flat = pa.array(block.reshape(-1), type=pa.float32())
    arr = pa.FixedSizeListArray.from_arrays(flat, dim)
    if valid.all():
        return arr
    mask = pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(flat, dim, mask=mask)


# ---------------------------------------------------------------- where things live

@dataclass(frozen=True)
class OutputTarget:
    """The output (a file, or a directory of parts) and the files that go with it."""

    path: Path
    dataset: bool

    @classmethod
    def resolve(cls, out: str | os.PathLike[str]) -> OutputTarget:
        """``out/`` with a trailing slash, or an existing directory, means a dataset."""
        text = os.fspath(out)
        path = Path(os.path.abspath(text))
        dataset = text.endswith(("/", os.sep)) or path.is_dir()
        if dataset and path.exists() and not path.is_dir():
            raise StoreError(f"--out {text}: a directory was asked but {path} is a file")
        return cls(path, dataset)

    def check_replaceable(self) -> None:
        """Refuse to replace a directory that holds anything but our part files."""
        if self.dataset and self.path.is_dir():
            foreign = sorted(p.name for p in self.path.iterdir()
                             if not re.fullmatch(r"part-\d+(-[0-9a-f]+)?\.parquet", p.name))
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise StoreError(f"--out {self.path}/ holds other files ({shown}); the output "
                                 "folder is replaced as a whole, so give a new or empty one")

    def sibling(self, suffix: str) -> Path:
        return self.path.parent / f".{self.path.name}{suffix}"

    @property
    def workdir(self) -> Path:
        return self.sibling(".parts")

    @property
    def lockfile(self) -> Path:
        return self.path.parent / f"{self.path.name}.lock"

    def files(self) -> list[Path]:
        """The Parquet files of the current output (none when there is no output yet)."""
        if self.dataset:
            if not self.path.is_dir():
                return []
            return sorted(p for p in self.path.glob("*.parquet")
                          if not p.name.startswith((".", "_")))
        return [self.path] if self.path.is_file() else []

    def recover(self) -> None:
        """Finish or undo a swap interrupted by a crash (see :func:`write_output`), and
        remove the temp files a killed run left (the caller holds the lock)."""
        tmp, new, old = self.sibling(".tmp"), self.sibling(".new"), self.sibling(".old")
        tmp.unlink(missing_ok=True)
        for stale in self.workdir.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        if old.exists():
            if not self.path.exists() and new.is_dir():
                os.replace(new, self.path)  # .new is complete once .old exists
            shutil.rmtree(old, ignore_errors=True)
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)


# ---------------------------------------------------------------- write failures

def output_errors(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[None]:
    """An OSError met while locking or writing the output becomes a StoreError that says
    what to do (``kind`` disk_full, read_only, permission or os_error)."""
    return writing(path, StoreError, note=" (the chunks already committed are kept; the next "
                                          "run resumes from them)")


# ---------------------------------------------------------------- lock

class OutputLock(FileLock):
    """``<out>.lock``: see :mod:`artylyze.lock` (atomic, taken over when its holder is gone)."""

    def __init__(self, target: OutputTarget) -> None:
        super().__init__(target.lockfile, what=str(target.path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- incremental state

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

    def add(self, path: str, known: Known) -> None:
        self.known[path] = known
        if known.ok and known.sha256:
            self.add_sha(known.sha256, known.size)

    def add_sha(self, sha: str, size: int | None) -> None:
        self.ok_shas.add(sha)
        if size is not None:
            self.shas_by_size.setdefault(size, set()).add(sha)

    def unchanged(self, path: str, size: int | None, mtime_ns: int | None,
                  retry_errors: bool = False) -> bool:
        """Same size and mtime as recorded, so the file is not read again. An error row
        counts too unless ``retry_errors`` (its file changes when someone repairs it)."""
        k = self.known.get(path)
        return (k is not None and k.size == size and k.mtime_ns == mtime_ns
                and (k.ok or not retry_errors))

    def hints(self, size: int | None, limit: int = 8) -> tuple[str, ...]:
        """sha256 values a file of this size may turn out to have (then it is not decoded)."""
        shas = self.shas_by_size.get(size, ()) if size is not None else ()
        return tuple(shas) if len(shas) <= limit else ()


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
        meta = read_schema(files[0]).metadata or {}
        old_key = key_from_metadata(meta)
        if old_key == key:
            _check_columns(files, columns)
            state.old_files = files
            for f in files:
                for p, k in known_rows(f, OLD):
                    state.add(p, k)
                    state.old_rows += 1
        else:
            state.discarded = (f"{target.path} was made with {old_key or 'an unknown model'}; "
                               "every file is tagged again")
    run = _read_json(target.workdir / "run.json")
    if not run or run.get("key") != key or (full and not run.get("full")):
        shutil.rmtree(target.workdir, ignore_errors=True)  # another model's or no run's
    else:
        for part in sorted(target.workdir.glob("part-*.parquet")):
            number = int(part.stem.split("-")[1])
            for p, k in known_rows(part, number):
                state.add(p, k)
                state.resumed_rows += 1
            for p, size, mtime, sha in _reused_records(part):
                state.add(p, Known(size, mtime, sha, True, number, reused=True))
                state.resumed_rows += 1
            state.parts.append(part)
    return state


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


def key_from_metadata(meta: dict[bytes, bytes]) -> str | None:
    try:
        manifest = Manifest.from_dict(json.loads(meta[META_BUNDLE]))
        if meta.get(META_SCHEMA_VERSION) != SCHEMA_VERSION.encode():
            return None
        return result_key(manifest, int(meta[META_TOP_K]))
    except (KeyError, ValueError, ArtyLyzeError):
        return None


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


def _reused_records(part: Path) -> list[tuple[str, int, int, str]]:
    meta = pq.read_schema(part).metadata or {}
    return [tuple(r) for r in json.loads(meta.get(META_REUSED, b"[]"))]


# ---------------------------------------------------------------- parts (crash-safe chunks)

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

    def commit(self, rows: list[dict[str, Any]],
               reused: list[tuple[str, int | None, int | None, str]]) -> Path:
        """Write one part (rows + reuse records) and make it count (fsync + rename); a part
        that cannot be written whole (full disk, signal) leaves no temp file behind."""
        meta = dict(self.schema.metadata or {})
        meta[META_REUSED] = json.dumps(reused, ensure_ascii=False).encode()
        schema = self.schema.with_metadata(meta)
        final = self.dir / f"part-{self.number:05d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
                w.write_table(rows_to_table(rows, schema), row_group_size=ROW_GROUP_ROWS)
            _fsync(tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.dir)
        self.number += 1
        return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- final merge

def write_output(target: OutputTarget, schema: pa.Schema, state: State, parts: Iterable[Path],
                 model_id: str) -> tuple[int, int]:
    """Stream old rows and parts into a new output, then swap it in atomically.

    ``state.known[path].source`` says which source holds the row to keep for each path
    (paths absent from it are dropped: pruned). Returns (rows written, reuse records that
    found no source and became error rows: 0 unless the work dir was tampered with).
    """
    sources: list[tuple[int, Path]] = [(OLD, f) for f in state.old_files]
    sources += [(int(p.stem.split("-")[1]), p) for p in parts]
    pending: dict[str, list[tuple[str, int | None, int | None]]] = {}
    for p, k in state.known.items():
        if k.reused and k.sha256:
            pending.setdefault(k.sha256, []).append((p, k.size, k.mtime_ns))
    known = state.known
    tmp = target.sibling(".new" if target.dataset else ".tmp")
    sink = _Sink(tmp, schema, target.dataset)
    try:
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
        rows = sink.close()
    except BaseException:
        sink.abort()
        raise
    _swap_in(target, tmp)
    return rows, len(lost)


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

    def __init__(self, path: Path, schema: pa.Schema, dataset: bool) -> None:
        self.path, self.schema, self.dataset = path, schema, dataset
        self.pieces: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0
        self.file_rows = 0
        self.files = 0
        self.writer: pq.ParquetWriter | None = None
        if dataset:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)

    def add(self, table: pa.Table | None) -> None:
        if table is None or table.num_rows == 0:
            return
        self.pieces.append(table)
        self.buffered += table.num_rows
        if self.buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None:
            name = self.path / f"part-{self.files:05d}.parquet" if self.dataset else self.path
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
        for f in ([self.path] if not self.dataset else self.path.glob("*.parquet")):
            _fsync(f)
        return self.rows

    def abort(self) -> None:
        """Drop what was written; never raises, so the first error is the one reported."""
        if self.writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.writer.close()
        if self.dataset:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


def _swap_in(target: OutputTarget, tmp: Path) -> None:
    """A file is replaced in one rename, a directory in one exchange where the filesystem
    can (else two renames: :meth:`OutputTarget.recover` finishes a swap a crash cut short).
    A stop signal waits until the old output is gone, so none is left beside the new one."""
    with critical():
        if not target.dataset:
            os.replace(tmp, target.path)
        else:
            replace_dir(tmp, target.path)  # parks the old one at sibling(".old") if it must
        fsync_dir(target.path.parent)


def remove_workdir(target: OutputTarget) -> None:
    shutil.rmtree(target.workdir, ignore_errors=True)
