"""The index directory's ``manifest.json``: one typed record, written and read only here.

Builds, merges and the shipped gallery all describe an index with :class:`IndexManifest`;
readers get attributes, not dict keys. The JSON is untrusted input, so :func:`read_manifest`
checks every field's type and names the file when one is wrong. Keys this version does not
know are kept (``extra``) and written back, so rewriting a newer manifest loses nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from artylyze.atomic import atomic_write_text
from artylyze.index.errors import IndexStoreError
from artylyze.model.bundle import sha256_file
from artylyze.untrusted import UntrustedFileError, read_json

FORMAT_VERSION = 1
KIND = "artylyze-index"
MANIFEST_FILE = "manifest.json"
FAISS_FILE = "vectors.faiss"
ROWS_FILE = "rows.parquet"
PCA_FILE = "pca.npz"
CLUSTERS_FILE = "clusters.npz"
THEMES_FILE = "themes.json"
THUMBS_FILE = "thumbs.parquet"
#: A manifest lists a few files and settings: a few KB; anything this big is not one.
MAX_MANIFEST_BYTES = 16 * 1024**2
INDEX_FILES = frozenset({MANIFEST_FILE, FAISS_FILE, ROWS_FILE, PCA_FILE, CLUSTERS_FILE,
                         THEMES_FILE, THUMBS_FILE})
#: Keys written only when set, so an index without them keeps the JSON it always had.
_OPTIONAL = ("trained", "stream", "recall_measured_on")
_TYPES: dict[str, tuple[type, ...]] = {
    "model_id": (str,), "index_type": (str,), "dim": (int,), "index_dim": (int,),
    "count": (int,), "files": (dict,), "source": (dict, type(None)),
    "search_params": (dict, type(None)), "pca": (dict, type(None)),
    "bundle_dir": (str, type(None)), "tasks": (list,), "clusters": (dict,),
    "trained": (dict, type(None)), "stream": (dict, type(None)),
    "bundle": (dict, type(None)), "label_sources": (dict,), "metric": (str,),
    "recall_at_10": (float, int), "recall_queries": (int,), "created": (str,),
}
_REQUIRED = ("model_id", "dim", "index_dim", "count", "files", "index_type")


@dataclass(frozen=True)
class IndexManifest:
    """What an index directory holds and how it was made (see ``index/store.py``)."""

    model_id: str
    dim: int  # bundle embedding dims
    index_dim: int  # dims in the FAISS index (after the optional PCA)
    count: int
    index_type: str  # FAISS factory string
    bundle: dict[str, Any] | None = None
    bundle_dir: str | None = None  # relative to the index when possible
    metric: str = "inner_product"
    search_params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float = 1.0
    recall_queries: int = 0
    pca: dict[str, Any] | None = None  # components, explained_variance
    tasks: tuple[str, ...] = ()
    label_sources: dict[str, str] = field(default_factory=dict)
    clusters: dict[str, Any] = field(default_factory=dict)  # kmeans_k, gmm_k, covariance, dims
    source: dict[str, Any] = field(default_factory=dict)  # parquet/shards, root, rows, labels
    trained: dict[str, Any] | None = None  # sha256, sample_rows, from, empty
    stream: dict[str, Any] | None = None  # chunk_rows, files (Parquet builds)
    recall_measured_on: str | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> bytes, sha256
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def root(self) -> str | None:
        return self.source.get("root")

    @property
    def fingerprint(self) -> str | None:
        """sha256 of the trained parts (shards with equal ones can be merged)."""
        return (self.trained or {}).get("sha256") or None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        d["tasks"] = list(self.tasks)
        for key in _OPTIONAL:
            if d[key] is None:
                del d[key]
        created, files = d.pop("created"), d.pop("files")
        return {"format_version": FORMAT_VERSION, "kind": KIND, **d, **self.extra,
                "created": created, "files": files}

    @classmethod
    def from_dict(cls, d: dict[str, Any], file: Path | str = MANIFEST_FILE) -> IndexManifest:
        """Check and convert a parsed manifest; every failure names ``file``."""
        if not isinstance(d, dict) or d.get("kind") != KIND:
            raise IndexStoreError(f"{file}: not an ArtyLyze index manifest")
        if d.get("format_version") != FORMAT_VERSION:
            raise IndexStoreError(f"{file}: index format {d.get('format_version')!r} is not "
                                  f"supported (expected {FORMAT_VERSION}); rebuild the index")
        for key in _REQUIRED:
            if key not in d:
                raise IndexStoreError(f"{file}: manifest lacks {key!r}")
        _check_types(d, Path(file))
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in d.items() if k in known and v is not None}
        values["tasks"] = tuple(values.get("tasks", ()))
        for key in ("bundle", "bundle_dir", "pca", "trained", "stream", "recall_measured_on"):
            values[key] = d.get(key)
        extra = {k: v for k, v in d.items() if k not in known | {"format_version", "kind"}}
        return cls(**values, extra=extra)


def _check_types(d: dict[str, Any], file: Path) -> None:
    """Wrong types fail here, with the file named, not as a traceback deep in a query."""
    for key, types in _TYPES.items():
        value = d.get(key, None if type(None) in types else types[0]())
        if not isinstance(value, types) or isinstance(value, bool):
            raise IndexStoreError(f"{file}: {key!r} is {type(value).__name__}, not "
                                  f"{' or '.join(t.__name__ for t in types)}")
    for key in ("dim", "index_dim", "count"):
        if d[key] < 0:
            raise IndexStoreError(f"{file}: {key!r} is negative")
    if not all(isinstance(t, str) for t in d["tasks"]):
        raise IndexStoreError(f"{file}: 'tasks' holds a value that is not text")
    for key in ("search_params", "clusters", "label_sources"):
        for name, value in (d.get(key) or {}).items():
            ok = isinstance(value, int) if key == "search_params" else True
            if not isinstance(name, str) or not ok or isinstance(value, bool):
                raise IndexStoreError(f"{file}: {key!r} holds {name!r}: {value!r}")
    for name, info in d["files"].items():
        if name not in INDEX_FILES and (Path(name).name != name or name.startswith(".")):
            raise IndexStoreError(f"{file}: lists {name!r}, which is not a file of the index "
                                  "folder")
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or \
                not isinstance(info.get("sha256"), str):
            raise IndexStoreError(f"{file}: the entry of {name!r} needs 'bytes' and 'sha256'")


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_manifest(index_dir: str | Path, manifest: IndexManifest) -> None:
    """Write ``manifest`` as it is (``files`` and ``created`` included)."""
    write_json(Path(index_dir) / MANIFEST_FILE, manifest.to_dict())


def seal(index_dir: Path, manifest: IndexManifest, files: list[str]) -> IndexManifest:
    """Write the manifest of a finished directory: now, and each file's size and sha256.
    Written last, so a directory with a manifest is complete."""
    sealed = replace(manifest, created=dt.datetime.now(dt.timezone.utc).isoformat(
        timespec="seconds"), files={name: {"bytes": (index_dir / name).stat().st_size,
                                           "sha256": sha256_file(index_dir / name)}
                                    for name in sorted(files)})
    write_manifest(index_dir, sealed)
    return sealed


def read_manifest(path: str | Path) -> IndexManifest:
    """The manifest of an index directory, with its format checked."""
    path = Path(path)
    file = path / MANIFEST_FILE
    if not path.is_dir():
        raise IndexStoreError(f"{path}: index directory not found")
    if not file.is_file():
        raise IndexStoreError(f"{path}: no {MANIFEST_FILE}; not an ArtyLyze index (or its "
                              "build did not finish)")
    try:  # a regular file of bounded size, parsed without ValueError or RecursionError
        data = read_json(file, MAX_MANIFEST_BYTES)
    except UntrustedFileError as e:
        raise IndexStoreError(f"{file}: {e.reason}") from e
    return IndexManifest.from_dict(data, file)


def listed_files(index_dir: Path) -> set[str] | None:
    """The file names an existing folder's manifest lists: None without a manifest;
    raises when the manifest is another program's (the folder is not ours to replace)."""
    file = index_dir / MANIFEST_FILE
    if not os.path.lexists(file):
        return None
    try:
        data = read_json(file, MAX_MANIFEST_BYTES)
    except UntrustedFileError:
        data = {}
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise IndexStoreError(f"--out {index_dir}: its {MANIFEST_FILE} is not an ArtyLyze "
                              "index's; give a new or empty folder", kind="foreign")
    listed = data.get("files")
    return set(listed) if isinstance(listed, dict) else set()

