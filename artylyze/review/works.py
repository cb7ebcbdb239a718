"""The works of a meta.parquet as a review sees them: how a path or record id finds a work's
sha256, what the machine says about it now, and which labels each built-in task allows.

Read with pyarrow directly (this layer sits below :mod:`artylyze.metadata`), only the few
columns a review needs, never the embeddings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import Manifest
from artylyze.review.store import ReviewError
from artylyze.store import META_BUNDLE, OutputTarget

RECORD_ID = "record_id"


@dataclass
class Works:
    """The ok rows of one output: lookups by path and record id, the machine's labels."""

    model: str | None
    classes: dict[str, tuple[str, ...]]  # built-in task -> its labels (class heads only)
    tasks: tuple[str, ...]  # tasks with a label column
    by_path: dict[str, int] = field(default_factory=dict)
    by_record: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, object]] = field(default_factory=list)

    def find(self, path: str | None = None, record_id: str | None = None) -> dict[str, object]:
        """The row of a work named by its path (as meta.parquet has it) or record id."""
        if path:
            key = path[2:] if path.startswith("./") else path
            if key in self.by_path:
                return self.rows[self.by_path[key]]
            raise ReviewError(f"no tagged work with path {path!r}")
        if record_id:
            if record_id in self.by_record:
                return self.rows[self.by_record[record_id]]
            raise ReviewError(f"no tagged work with record_id {record_id!r}")
        raise ReviewError("a row needs a path or a record_id")

    def check_label(self, task: str, label: str) -> None:
        """Refuse a label a built-in task cannot have (a typo would never match again)."""
        allowed = self.classes.get(task)
        if allowed is not None and label not in allowed:
            shown = ", ".join(allowed[:12]) + (", ..." if len(allowed) > 12 else "")
            raise ReviewError(f"{label!r} is not a {task} label; {task} labels are {shown}")


def read_works(meta: str | os.PathLike[str]) -> Works:
    """The ok rows of ``meta`` (a meta.parquet file or folder of parts)."""
    path = Path(meta)
    if not path.exists():
        raise ReviewError(f"{path}: no such meta.parquet")
    files = OutputTarget(path.absolute(), dataset=path.is_dir()).files()
    if not files:
        raise ReviewError(f"{path}: a folder without .parquet files")
    try:
        schema = pq.read_schema(files[0])
        manifest = Manifest.from_dict(json.loads((schema.metadata or {})[META_BUNDLE]))
    except (OSError, pa.ArrowException, KeyError, ValueError, ArtyLyzeError) as e:
        raise ReviewError(f"{path}: not a meta.parquet written by `artylyze tag` ({e})") from e
    classes = {t.name: t.labels for t in manifest.tasks if t.kind == "class"}
    tasks = tuple(t for t in manifest.label_tasks if t in schema.names)
    works = Works(manifest.model_id, classes, tasks)
    wanted = ["path", "sha256", "status", "model", RECORD_ID,
              *(c for t in tasks for c in (t, f"{t}_score"))]
    for file in files:
        try:
            have = set(pq.read_schema(file).names)
            table = pq.read_table(file, columns=[c for c in wanted if c in have])
        except (OSError, pa.ArrowException) as e:
            raise ReviewError(f"{file}: not a readable Parquet file ({e})") from e
        for row in table.to_pylist():
            if row.get("status") != "ok" or not row.get("sha256"):
                continue
            works.by_path.setdefault(row["path"], len(works.rows))
            if row.get(RECORD_ID):
                works.by_record.setdefault(str(row[RECORD_ID]), len(works.rows))
            works.rows.append(row)
    return works
