"""meta.parquet's columns, its Parquet metadata keys, and the one place a file becomes a row."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import Manifest
from artylyze.model.predict import Prediction
from artylyze.store.paths import encode_path

SCHEMA_VERSION = "1"
META_BUNDLE = b"artylyze.bundle"
META_ROOT = b"artylyze.root"
META_SCHEMA_VERSION = b"artylyze.schema_version"
META_TOP_K = b"artylyze.top_k"
META_REUSED = b"artylyze.reused"
ROW_GROUP_ROWS = 8192
FIXED_COLUMNS = ("path", "size", "mtime_ns", "sha256", "width", "height", "status", "error")
KNOWN_COLUMNS = ["path", "size", "mtime_ns", "sha256", "status"]  # what the state needs
TOP_TYPE = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))
YEAR_COLUMNS = ("year", "year_low", "year_high")  # estimate and its interval (Model v2)
DOMAIN_COLUMNS = ("domain", "domain_score")  # what the image is (Model v5)
# Rows of a IIIF run only (artylyze.tagging.iiif_source); ``path`` is then the canvas id
IIIF_COLUMNS = ("iiif_manifest", "iiif_manifest_label", "iiif_canvas_label", "iiif_service",
                "iiif_image", "iiif_region", "iiif_size", "iiif_manifest_source")


class StoreError(ArtyLyzeError):
    """The output cannot be read, written or locked."""


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
    if manifest.domain_task is not None:
        cols += list(DOMAIN_COLUMNS)
    return cols


def _column_type(name: str) -> pa.DataType:
    if name.endswith("_top"):
        return TOP_TYPE
    if name.endswith("_confident"):
        return pa.bool_()
    if name in YEAR_COLUMNS:
        return pa.int32()
    return pa.float32() if name.endswith("_score") or name == "novelty" else pa.string()


def make_schema(manifest: Manifest, root: str = "", top_k: int = 3,
                extra: tuple[str, ...] = ()) -> pa.Schema:
    """The fixed meta.parquet schema for a bundle (column order per the team contract);
    ``extra``: string columns a source adds after ``error`` (IIIF_COLUMNS), none for a folder."""
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
    fields += [pa.field(name, pa.string()) for name in extra]
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
              error: str | None = None,
              extra: tuple[tuple[str, str | None], ...] = ()) -> dict[str, Any]:
    """The one place a file becomes a row: ok when it has a prediction, else an error row."""
    if (prediction is None) == (error is None):
        raise ValueError("a row needs exactly one of prediction and error")
    row: dict[str, Any] = {
        "path": path, "size": size, "mtime_ns": mtime_ns, "sha256": sha256,
        "width": width, "height": height, "status": "ok" if error is None else "error",
        "error": error, "embedding": None, "model": model, "tagged_at": tagged_at,
        **dict(extra),
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
        if prediction.domain is not None:
            row["domain"], row["domain_score"] = prediction.domain
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


def key_from_metadata(meta: dict[bytes, bytes]) -> str | None:
    """The :func:`result_key` an output was written with (None: not ours, or another schema)."""
    try:
        manifest = Manifest.from_dict(json.loads(meta[META_BUNDLE]))
        if meta.get(META_SCHEMA_VERSION) != SCHEMA_VERSION.encode():
            return None
        return result_key(manifest, int(meta[META_TOP_K]))
    except (KeyError, ValueError, TypeError, RecursionError, ArtyLyzeError):
        return None
