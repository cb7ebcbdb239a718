"""meta.parquet as teach sees it: embeddings in, a task's four columns out, file by file.

A taught task's columns have the built-in tasks' names and types (``<task>``, ``_score``,
``_top``, ``_confident``; see :mod:`artylyze.store.schema`). Each file of the output is
rewritten atomically (temp file + rename) with every other column and the metadata kept;
the metadata key ``artylyze.taught`` lists the taught tasks, so readers can tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write
from artylyze.store import META_BUNDLE, META_ROOT, META_TOP_K, ROW_GROUP_ROWS, TOP_TYPE
from artylyze.teach.model import TaughtTask, TeachError

META_TAUGHT = b"artylyze.taught"


@dataclass
class FileRows:
    """One Parquet file of the output: what teach reads from it."""

    file: Path
    paths: list[str]
    sha256: list[str | None]
    record_ids: list[str | None] | None
    x: np.ndarray  # [rows, dim] float32, zeros where there is no embedding
    valid: np.ndarray  # rows with an embedding (ok rows)
    model_id: str | None  # the bundle the embeddings come from
    top_k: int
    root: str | None = None  # the collection root the paths are relative to (as stored)


def read_file(file: Path) -> FileRows:
    """Paths, sha256 and embeddings of one output file (no image is decoded)."""
    try:
        schema = pq.read_schema(file)
        if "embedding" not in schema.names:
            raise TeachError(f"{file}: no embedding column (not an ArtyLyze meta.parquet?)")
        cols = ["path", "sha256", "embedding"] + (["record_id"] if "record_id" in schema.names
                                                  else [])
        table = pq.read_table(file, columns=cols)
    except (OSError, pa.ArrowException) as e:
        raise TeachError(f"cannot read {file} ({e})") from e
    meta = schema.metadata or {}
    x, valid = embeddings(table.column("embedding"))
    return FileRows(file, table.column("path").to_pylist(), table.column("sha256").to_pylist(),
                    table.column("record_id").to_pylist() if "record_id" in cols else None,
                    x, valid, _model_id(meta), int(meta.get(META_TOP_K, b"3")),
                    meta[META_ROOT].decode() if META_ROOT in meta else None)


def embeddings(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A FixedSizeList column as one float32 block (zeros for nulls) and its valid mask."""
    dim = column.type.list_size
    blocks, masks = [], []
    for chunk in column.chunks:
        values = chunk.values.slice(chunk.offset * dim, len(chunk) * dim)
        blocks.append(values.to_numpy(zero_copy_only=False).reshape(len(chunk), dim))
        masks.append(chunk.is_valid().to_numpy(zero_copy_only=False))
    if not blocks:
        return np.zeros((0, dim), np.float32), np.zeros(0, bool)
    x = np.concatenate(blocks).astype(np.float32, copy=False)
    valid = np.concatenate(masks)
    x[~valid] = 0.0
    return np.nan_to_num(x, copy=False), valid


def _model_id(meta: dict[bytes, bytes]) -> str | None:
    try:
        return json.loads(meta[META_BUNDLE])["model_id"]
    except (KeyError, ValueError, TypeError):
        return None


def task_arrays(task: TaughtTask, x: np.ndarray, valid: np.ndarray, top_k: int
                ) -> dict[str, pa.Array]:
    """The four columns of ``task`` for rows ``x`` (null where there is no embedding)."""
    n, k = len(x), min(top_k, len(task.classes))
    proba = np.zeros((n, len(task.classes)), np.float32)
    if valid.any():
        proba[valid] = task.proba(x[valid])
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(proba, order, axis=1)
    names = np.array(task.classes, dtype=object)
    mask = pa.array(~valid)
    label = pa.array(names[order[:, 0]], pa.string(), mask=~valid)
    score = pa.array(scores[:, 0], pa.float32(), mask=~valid)
    confident = pa.array(scores[:, 0] >= task.confident, pa.bool_(), mask=~valid)
    items = pa.StructArray.from_arrays(
        [pa.array(names[order].ravel(), pa.string()), pa.array(scores.ravel(), pa.float32())],
        fields=list(TOP_TYPE.value_type))
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    top = pa.ListArray.from_arrays(offsets, items, type=TOP_TYPE, mask=mask)
    t = task.task
    return {t: label, f"{t}_score": score, f"{t}_top": top, f"{t}_confident": confident}


def rewrite(file: Path, columns: dict[str, pa.Array], taught: dict[str, dict]) -> None:
    """Put ``columns`` into ``file`` (replacing same-named ones in place, else before
    ``embedding``) and note ``taught`` in its metadata; atomic."""
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as e:
        raise TeachError(f"cannot read {file} ({e})") from e
    for name, values in columns.items():
        field = pa.field(name, values.type)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), field, values)
        else:
            at = (table.column_names.index("embedding") if "embedding" in table.column_names
                  else table.num_columns)
            table = table.add_column(at, field, values)
    meta = dict(table.schema.metadata or {})
    meta[META_TAUGHT] = json.dumps(taught, ensure_ascii=False, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)

    def write(f: IO[bytes]) -> None:
        pq.write_table(table, f, compression="zstd", row_group_size=ROW_GROUP_ROWS)

    atomic_write(file, write)


def taught_note(file: Path) -> dict[str, dict]:
    """The ``artylyze.taught`` note of a file ({} when none)."""
    try:
        return json.loads((pq.read_schema(file).metadata or {})[META_TAUGHT])
    except (KeyError, ValueError, OSError, pa.ArrowException):
        return {}


def describe(tasks: Sequence[TaughtTask]) -> dict[str, dict]:
    """What the ``artylyze.taught`` note says of each task."""
    return {t.task: {"kind": t.kind, "classes": t.classes, "model_id": t.model_id,
                     "cv_accuracy": t.report.get("cv_accuracy")} for t in tasks}
