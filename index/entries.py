"""Read a meta.parquet into what an index needs: vectors, one model id, per-entry metadata.

Only ``status == ok`` rows become entries; error rows are counted, never indexed.
``true_<task>`` columns already in the Parquet pass through as ground truth (``labels``
adds them from a CSV); themes prefer them to the predictions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from artylyze.index.errors import IndexBuildError
from artylyze.index.filenames import DEFAULT, FileNames, with_accessions
from artylyze.store import META_BUNDLE, META_ROOT
from artylyze.untrusted import UntrustedFileError, parse_json

TRUE_PREFIX = "true_"
#: Columns of meta.parquet copied into the index's rows as they are (record_id: the museum's).
PASSTHROUGH = ("split", "record_id")
#: Fields a theme describes, in the order names are made of them.
THEME_FIELDS = ("style", "genre", "artist", "nationality", "period")
#: Predicted columns an index keeps beside the labels (``year`` is the file name's year there).
PREDICTED_EXTRAS = {"year_estimate": pa.int32(), "year_low": pa.int32(),
                    "year_high": pa.int32(), "novelty": pa.float32(),
                    "domain": pa.string(), "domain_score": pa.float32()}


@dataclass(frozen=True)
class Entries:
    """The indexable rows of one meta.parquet: unit vectors plus a metadata table."""

    vectors: np.ndarray  # float32 [n, D], L2-normalized
    rows: pa.Table  # path, sha256, title, artist_slug, year, <task>, <task>_score, true_<f>...
    model_id: str
    bundle: dict[str, Any] | None  # the bundle manifest stored in the Parquet metadata
    tasks: tuple[str, ...]  # predicted tasks, in bundle order
    root: str | None
    rows_total: int
    rows_error: int
    source: str = ""
    labels_file: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def ground_truth(self, name: str) -> list[str | None] | None:
        """The ground-truth column for ``name`` if it has any value, else None."""
        col = TRUE_PREFIX + name
        if col not in self.rows.column_names:
            return None
        values = [clean(v) for v in self.rows.column(col).to_pylist()]
        return values if any(v is not None for v in values) else None

    def theme_labels(self) -> tuple[dict[str, list[str | None]], dict[str, str]]:
        """Per field, the labels themes use (ground truth if present, else predicted)."""
        labels: dict[str, list[str | None]] = {}
        sources: dict[str, str] = {}
        names = list(dict.fromkeys([*THEME_FIELDS, *self.tasks]))
        for name in names:
            truth = self.ground_truth(name)
            if truth is not None:
                labels[name], sources[name] = truth, "ground truth"
            elif name in self.tasks:
                labels[name] = [clean(v) for v in self.rows.column(name).to_pylist()]
                sources[name] = "predicted"
        return labels, sources


def clean(value: Any) -> str | None:
    """A label as text, or None for empty / NaN (unknown)."""
    if value is None:
        return None
    if isinstance(value, float):
        if not np.isfinite(value):
            return None
        value = int(value) if value.is_integer() else value
    text = str(value).strip()
    return text or None


def parse_file_name(path: str, names: FileNames = DEFAULT
                    ) -> tuple[str | None, str | None, int | None]:
    """``artist-name_title-of-work-1890.jpg`` -> (artist slug, "Title of work", 1890); a name
    of no known shape gives (None, None, None): see :mod:`artylyze.index.filenames`."""
    found = names.parse(path)
    return found.artist, found.title, found.year


def pretty_artist(slug: str | None) -> str | None:
    """``claude-monet`` -> ``Claude Monet`` (display only; the slug stays the label)."""
    if not slug:
        return None
    return " ".join(w.capitalize() for w in re.split(r"[-_ ]+", slug) if w)


def schema_metadata(schema: pa.Schema) -> tuple[dict[str, Any] | None, str | None]:
    meta = schema.metadata or {}
    bundle = None
    if META_BUNDLE in meta:
        try:
            bundle = parse_json(meta[META_BUNDLE], "artylyze.bundle")
        except UntrustedFileError as e:
            raise IndexBuildError(f"the Parquet's artylyze.bundle metadata: {e.reason}") from e
        if not isinstance(bundle, dict):
            raise IndexBuildError("the Parquet's artylyze.bundle metadata is not an object")
    try:
        root = meta[META_ROOT].decode() if META_ROOT in meta else None  # as the store wrote it
    except UnicodeDecodeError as e:
        raise IndexBuildError("the Parquet's artylyze.root metadata is not UTF-8") from e
    return bundle, root


def schema_tasks(schema: pa.Schema) -> tuple[str, ...]:
    """The label tasks of a meta.parquet, in column order: each has ``<task>`` and its
    ``<task>_top`` (a year head's ``year`` is a date, not a label)."""
    return tuple(n[: -len("_top")] for n in schema.names
                 if n.endswith("_top") and n[: -len("_top")] in schema.names)


def embedding_matrix(table: pa.Table, source: str) -> np.ndarray:
    col = table.column("embedding").combine_chunks()
    if col.null_count:
        raise IndexBuildError(
            f"{source}: {col.null_count} rows with status ok have no embedding")
    if not pa.types.is_fixed_size_list(col.type) and not pa.types.is_list(col.type):
        raise IndexBuildError(
            f"{source}: column embedding is {col.type}, expected a list of floats")
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n = len(col)
    if n == 0 or flat.size % n:
        raise IndexBuildError(f"{source}: embeddings do not all have the same length")
    vectors = flat.reshape(n, flat.size // n)
    if not np.isfinite(vectors).all():
        raise IndexBuildError(f"{source}: some embeddings hold NaN or infinity")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise IndexBuildError(f"{source}: some embeddings are all zeros")
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def parquet_files(path: Path) -> list[Path]:
    """A meta.parquet file, or the part files of a ``tag --out DIR/`` dataset."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_")))
        if files:
            return files
        raise IndexBuildError(f"{path}: a directory without .parquet files")
    raise IndexBuildError(f"{path}: no such file")


def _read_parquet(path: Path) -> tuple[pa.Schema, pa.Table]:
    files = parquet_files(path)
    try:
        first = pq.ParquetFile(files[0])
        schema = first.schema_arrow
        tables = [first.read()] + [pq.ParquetFile(f).read() for f in files[1:]]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, OSError) as e:
        raise IndexBuildError(f"{path}: not a readable Parquet file ({e})") from e
    return schema, table


def check_columns(schema: pa.Schema, source: str) -> None:
    missing = [c for c in ("path", "status", "embedding", "model") if c not in schema.names]
    if missing:
        raise IndexBuildError(f"{source}: not an ArtyLyze meta.parquet, missing columns {missing}")


def single_model(models: dict[str | None, int], total: int, bundle: dict[str, Any] | None,
                 source: str) -> str:
    """The one model id of the ok rows (``models``: id -> ok rows); an index is meaningless
    over embeddings of different models, so anything else is refused."""
    if not models:
        raise IndexBuildError(f"{source}: no rows with status ok ({total} rows in all)")
    if len(models) != 1 or None in models:
        seen = ", ".join(f"{m!r} ({c} rows)" for m, c in models.items())
        raise IndexBuildError(f"{source}: rows were embedded by different models: {seen}; "
                              "an index needs one model (re-tag with one bundle)")
    model_id = str(next(iter(models)))
    if bundle and bundle.get("model_id") not in (None, model_id):
        raise IndexBuildError(f"{source}: rows say model {model_id!r} but the Parquet metadata "
                              f"describes bundle {bundle.get('model_id')!r}")
    return model_id


def read_meta(path: str | Path, names: FileNames = DEFAULT) -> Entries:
    """Load the ``status == ok`` rows of a meta.parquet (file, or dataset directory);
    refuse one that mixes models. ``names`` reads titles from file names."""
    source = str(path)
    schema, table = _read_parquet(Path(path))
    check_columns(schema, source)
    bundle, root = schema_metadata(schema)
    tasks = schema_tasks(schema)
    total = table.num_rows
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    models = {m["values"]: m["counts"] for m in pc.value_counts(ok.column("model")).to_pylist()}
    model_id = single_model(models, total, bundle, source)
    vectors = embedding_matrix(ok, source)
    if bundle and int(bundle.get("embedding_dim", vectors.shape[1])) != vectors.shape[1]:
        raise IndexBuildError(f"{source}: embeddings have {vectors.shape[1]} dims, the bundle "
                              f"says {bundle.get('embedding_dim')}")
    rows = entry_rows(ok, tasks, names)
    return Entries(vectors=vectors, rows=rows, model_id=model_id, bundle=bundle, tasks=tasks,
                   root=root, rows_total=total, rows_error=total - ok.num_rows, source=source)


def entry_rows(ok: pa.Table, tasks: tuple[str, ...], names: FileNames = DEFAULT) -> pa.Table:
    paths = [str(p) for p in ok.column("path").to_pylist()]
    cols: dict[str, pa.Array] = {
        "path": pa.array(paths, pa.string()),
        "sha256": (ok.column("sha256").combine_chunks().cast(pa.string())
                   if "sha256" in ok.column_names else pa.nulls(len(paths), pa.string())),
        **names.columns(paths),
    }
    for task in tasks:
        cols[task] = ok.column(task).combine_chunks().cast(pa.string())
        if f"{task}_score" in ok.column_names:
            cols[f"{task}_score"] = ok.column(f"{task}_score").combine_chunks().cast(pa.float32())
    for name, typ in PREDICTED_EXTRAS.items():  # date estimate, novelty, domain
        source_name = "year" if name == "year_estimate" else name
        if source_name in ok.column_names:
            cols[name] = ok.column(source_name).combine_chunks().cast(typ)
    for task in tasks:
        if f"{task}_confident" in ok.column_names:
            cols[f"{task}_confident"] = ok.column(f"{task}_confident").combine_chunks()
    for name in ok.column_names:
        if name.startswith(TRUE_PREFIX) or name in PASSTHROUGH:
            cols[name] = ok.column(name).combine_chunks().cast(pa.string())
    rows = pa.table(cols)
    accessions = names.accessions(paths)
    return rows if accessions is None else with_accessions(rows, accessions)
