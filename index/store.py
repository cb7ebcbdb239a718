"""The index directory on disk: write every part atomically, load it back with checks.

Layout::

    manifest.json   model id, dims, count, index type + search params, recall, file hashes
    vectors.faiss   the FAISS index (inner product over unit vectors)
    rows.parquet    row id -> path, sha256, title, year, labels, cluster
    pca.npz         mean + components of the optional PCA (absent without PCA)
    clusters.npz    clustering-space PCA, GMM and KMeans parameters, per-row coordinates
    themes.json     one theme per GMM cluster, inter-cluster affinity, sweep metrics
    thumbs.parquet  optional: one small WebP per row (``--thumbnails``), read on first use

Every build writes a new temp folder and swaps it in whole (see :func:`write_index_dir`), and
``manifest.json`` is written last, so a directory with a manifest is complete; loading
checks the format version, every file's size and sha256, and that the parts agree on dims
and counts, so a corrupt or mixed-up directory fails with a message that names the file.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write, recover_dir, replace_dir
from artylyze.errors import writing
from artylyze.index.clusters import Gmm
from artylyze.index.errors import IndexStoreError
from artylyze.index.faiss_index import load_index, save_index, set_params
from artylyze.index.manifest import (
    CLUSTERS_FILE,
    FAISS_FILE,
    INDEX_FILES,
    PCA_FILE,
    ROWS_FILE,
    THEMES_FILE,
    THUMBS_FILE,
    IndexManifest,
    listed_files,
    read_manifest,
    seal,
    write_json,
)
from artylyze.index.manifest import MANIFEST_FILE as MANIFEST_FILE  # re-exported
from artylyze.index.reduce import PCA
from artylyze.model.bundle import DEFAULT_BUNDLE_DIR, sha256_file
from artylyze.signals import critical
from artylyze.store.lock import FileLock

#: The reference gallery that ships with ArtyLyze (wikiart11, default bundle).
DEFAULT_GALLERY_DIR = DEFAULT_BUNDLE_DIR.parent / "gallery"


@dataclass(frozen=True)
class ClusterModel:
    """Clustering space (a PCA of the raw embeddings), its GMM and KMeans, row coordinates."""

    pca: PCA
    gmm: Gmm
    kmeans_centres: np.ndarray  # [k, d]
    coords: np.ndarray  # float16 [n, d]: every indexed row in the clustering space

    def space(self, raw: np.ndarray) -> np.ndarray:
        return self.pca.project(raw)

    def posteriors(self, raw: np.ndarray) -> np.ndarray:
        """GMM membership [n, k] of raw (bundle-space) embeddings."""
        return self.gmm.posteriors(self.space(raw))

    def row_posteriors(self, rows: list[int]) -> np.ndarray:
        return self.gmm.posteriors(self.coords[rows].astype(np.float32))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**self.pca.to_arrays("pca_"), **self.gmm.to_arrays("gmm_"),
                "kmeans_centres": self.kmeans_centres, "coords": self.coords}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ClusterModel:
        for name in ("kmeans_centres", "coords"):
            if name not in arrays:
                raise IndexStoreError(f"{CLUSTERS_FILE}: missing array {name!r}")
        model = cls(PCA.from_arrays(arrays, "pca_"), Gmm.from_arrays(arrays, "gmm_"),
                    np.asarray(arrays["kmeans_centres"], np.float32),
                    np.asarray(arrays["coords"]))
        d = model.pca.out_dim
        if model.gmm.dim != d or model.kmeans_centres.shape[1:] != (d,) or \
                model.coords.ndim != 2 or model.coords.shape[1] != d:
            raise IndexStoreError(f"{CLUSTERS_FILE}: clustering parts disagree on dimensions")
        return model


@dataclass
class IndexDir:
    """A loaded index directory. ``to_index_space`` maps bundle embeddings to FAISS space."""

    path: Path
    manifest: IndexManifest
    index: faiss.Index
    rows: pa.Table
    pca: PCA | None
    clusters: ClusterModel
    themes: dict[str, Any]
    _thumbs: list[bytes | None] | None = field(default=None, repr=False)

    def packed_thumbnail(self, row: int) -> bytes | None:
        """The row's packed thumbnail bytes, or None when the index has none."""
        if THUMBS_FILE not in self.manifest.files:
            return None
        if self._thumbs is None:
            from artylyze.index.thumbs import THUMB_COLUMN

            table = _parquet(self.path / THUMBS_FILE)
            if table.num_rows != self.count or THUMB_COLUMN not in table.column_names:
                raise IndexStoreError(f"{self.path / THUMBS_FILE}: {table.num_rows} "
                                      f"thumbnails for {self.count} rows")
            self._thumbs = table.column(THUMB_COLUMN).to_pylist()
        return self._thumbs[row]

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def count(self) -> int:
        return self.manifest.count

    @property
    def root(self) -> str | None:
        return self.manifest.root

    def to_index_space(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, np.float32)
        if raw.ndim != 2 or raw.shape[1] != self.manifest.dim:
            raise IndexStoreError(f"embeddings have shape {list(raw.shape)}; this index takes "
                                  f"{self.manifest.dim}-dim embeddings")
        if self.pca is not None:
            return self.pca.transform(raw)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.ascontiguousarray(raw / np.maximum(norms, 1e-12), np.float32)


def write_index_dir(out: str | Path, manifest: IndexManifest, index: faiss.Index,
                    rows: pa.Table, pca: PCA | None, clusters: ClusterModel,
                    themes: dict[str, Any], thumbs: pa.Table | None = None) -> Path:
    """Write an index directory at ``out`` so that a reader, or a crash at any moment, sees
    the old index or the new one whole: every part goes into a new temp folder beside it,
    which is then swapped in. ``out`` must be new, empty or an index already (see
    :func:`check_index_target`); a lock keeps two builds of one ``out`` apart."""
    final = Path(out)
    with building(final) as tmp:
        _write_parts(tmp, manifest, index, rows, pca, clusters, themes, thumbs)
    return final


def check_index_target(out: str | Path) -> None:
    """Refuse an ``--out`` that is not new, empty or an index: the folder is replaced as a
    whole, so anything else in it (the image collection, a home folder) would be lost."""
    out = Path(out)
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise IndexStoreError(f"--out {out} is a file, not an index folder", kind="foreign")
    ours = INDEX_FILES | (listed_files(out) or set())
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours or not p.is_file())
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise IndexStoreError(f"--out {out} holds files that are not part of an index ({shown}); "
                              "an index folder is replaced as a whole, so give a new or empty "
                              "one", kind="foreign")


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """A new temp folder beside ``out`` to write an index into; swapped in at ``out`` when
    the block ends well, removed when it does not (error, signal). Temp folders of killed
    builds are removed first (the lock says none of them is still being written)."""
    out = Path(os.path.realpath(out)) if out.is_symlink() else out
    out.parent.mkdir(parents=True, exist_ok=True)
    with writing(out, IndexStoreError), FileLock(out.with_name(out.name + ".lock")):
        recover_dir(out)
        check_index_target(out)
        for stale in out.parent.glob(f".{glob.escape(out.name)}.build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700; an index is meant to be shared
            with critical():  # a stop signal waits for the swap and the old folder's removal
                replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _write_parts(out: Path, manifest: IndexManifest, index: faiss.Index, rows: pa.Table,
                 pca: PCA | None, clusters: ClusterModel, themes: dict[str, Any],
                 thumbs: pa.Table | None) -> None:
    """Write all parts, then the manifest (with each file's size and sha256)."""
    save_index(index, out / FAISS_FILE)
    atomic_write(out / ROWS_FILE, lambda f: pq.write_table(rows, f, compression="zstd"))
    files = [FAISS_FILE, ROWS_FILE, CLUSTERS_FILE, THEMES_FILE]
    if pca is not None:
        atomic_write(out / PCA_FILE, lambda f: np.savez(f, **pca.to_arrays()))
        files.append(PCA_FILE)
    else:
        (out / PCA_FILE).unlink(missing_ok=True)
    if thumbs is not None:
        atomic_write(out / THUMBS_FILE, lambda f: pq.write_table(thumbs, f, compression="none"))
        files.append(THUMBS_FILE)
    else:
        (out / THUMBS_FILE).unlink(missing_ok=True)
    atomic_write(out / CLUSTERS_FILE, lambda f: np.savez(f, **clusters.to_arrays()))
    write_json(out / THEMES_FILE, themes)
    seal(out, manifest, files)


def _verify(path: Path, files: dict[str, Any]) -> None:
    for name, info in files.items():
        file = path / name
        if not file.is_file():
            raise IndexStoreError(f"{file}: missing from the index directory")
        if file.stat().st_size != info.get("bytes"):
            raise IndexStoreError(f"{file}: size {file.stat().st_size} differs from the "
                                  f"manifest's {info.get('bytes')} (truncated or replaced)")
        if sha256_file(file) != info.get("sha256"):
            raise IndexStoreError(f"{file}: content does not match the manifest's sha256 "
                                  "(corrupt or replaced); rebuild the index")


def _npz(file: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise IndexStoreError(f"{file}: not a readable npz file ({e})") from e


def _parquet(file: Path) -> pa.Table:
    try:  # ParquetFile, not read_table: it skips pyarrow.dataset (and its pandas import)
        return pq.ParquetFile(file).read()
    except (pa.ArrowInvalid, OSError) as e:
        raise IndexStoreError(f"{file}: not a readable Parquet file ({e})") from e


def load_index_dir(path: str | Path, verify: bool = True) -> IndexDir:
    """Load an index directory; ``verify`` checks every file's sha256 (cheap for galleries,
    about a second per GB for large indexes)."""
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        _verify(path, manifest.files)
    index = load_index(path / FAISS_FILE)
    count, dim = manifest.count, manifest.index_dim
    if index.ntotal != count or index.d != dim:
        raise IndexStoreError(f"{path / FAISS_FILE}: holds {index.ntotal} vectors of {index.d} "
                              f"dims, the manifest says {count} of {dim}")
    set_params(index, manifest.search_params)
    rows = _parquet(path / ROWS_FILE)
    if rows.num_rows != count or "path" not in rows.column_names:
        raise IndexStoreError(f"{path / ROWS_FILE}: {rows.num_rows} rows, the manifest says "
                              f"{count}")
    pca = None
    if manifest.pca:
        pca = PCA.from_arrays(_npz(path / PCA_FILE))
        if pca.in_dim != manifest.dim or pca.out_dim != dim:
            raise IndexStoreError(f"{path / PCA_FILE}: maps {pca.in_dim} -> {pca.out_dim} dims, "
                                  f"the manifest says {manifest.dim} -> {dim}")
    clusters = ClusterModel.from_arrays(_npz(path / CLUSTERS_FILE))
    if clusters.pca.in_dim != manifest.dim or len(clusters.coords) != count:
        raise IndexStoreError(f"{path / CLUSTERS_FILE}: does not match the index's dims or rows")
    try:
        themes = json.loads((path / THEMES_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexStoreError(f"{path / THEMES_FILE}: not readable JSON ({e})") from e
    if len(themes.get("themes", [])) != clusters.gmm.k:
        raise IndexStoreError(f"{path / THEMES_FILE}: {len(themes.get('themes', []))} themes "
                              f"for {clusters.gmm.k} clusters")
    return IndexDir(path, manifest, index, rows, pca, clusters, themes)
