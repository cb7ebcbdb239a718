"""What ``artylyze duplicates`` reads: a meta.parquet, a folder of part files, or an index.

Either way it comes down to the ok rows' paths, sha256, pixel sizes (when known) and their
embeddings as one float32 matrix (1M x 256 dims is 1 GB), read in batches so that no
other column of a large collection is ever held whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from artylyze.errors import ArtyLyzeError

BATCH = 65_536


class DuplicatesError(ArtyLyzeError):
    """A source or option the duplicate search cannot use; the message says which."""


@dataclass
class Collection:
    """The ok rows of one collection, in order."""

    source: Path
    root: str | None  # where relative paths are found (None: as given)
    paths: list[str]
    sha256: list[str | None]
    width: list[int | None]
    height: list[int | None]
    vectors: np.ndarray  # float32 [n, d]

    def __len__(self) -> int:
        return len(self.paths)

    def file(self, i: int) -> Path:
        p = Path(self.paths[i])
        return p if p.is_absolute() or not self.root else Path(self.root) / p


def open_collection(source: str | Path) -> Collection:
    """Read ``source``: an index directory (it holds ``manifest.json``), else Parquet."""
    source = Path(source)
    if not source.exists():
        raise DuplicatesError(f"{source}: no such file or folder")
    if source.is_dir() and (source / "manifest.json").is_file():
        return _from_index(source)
    return _from_parquet(source)


def _from_index(path: Path) -> Collection:
    from artylyze.index.faiss_index import reconstruct
    from artylyze.index.store import load_index_dir

    index = load_index_dir(path, verify=False)
    rows = index.rows
    n = rows.num_rows
    vectors = np.zeros((n, index.index.d), np.float32)
    for s in range(0, n, BATCH):
        vectors[s:s + BATCH] = reconstruct(index.index, list(range(s, min(n, s + BATCH))))
    col = {c: _column(rows, c) for c in ("path", "sha256", "width", "height")}
    return Collection(path, index.root, [str(p) for p in col["path"]], col["sha256"],
                      col["width"], col["height"], vectors)


def _column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names \
        else [None] * table.num_rows


def _files(path: Path) -> list[Path]:
    from artylyze.index.entries import parquet_files
    from artylyze.index.errors import IndexBuildError

    try:
        return parquet_files(path)
    except IndexBuildError as e:
        raise DuplicatesError(str(e)) from e


def _from_parquet(path: Path) -> Collection:
    from artylyze.index.entries import embedding_matrix, schema_metadata
    from artylyze.index.errors import IndexBuildError

    files = _files(path)
    paths: list[str] = []
    sha: list[str | None] = []
    width: list[int | None] = []
    height: list[int | None] = []
    blocks: list[np.ndarray] = []
    root = None
    for file in files:
        try:
            reader = pq.ParquetFile(file)
        except (pa.ArrowInvalid, OSError) as e:
            raise DuplicatesError(f"{file}: not a readable Parquet file ({e})") from e
        names = reader.schema_arrow.names
        missing = [c for c in ("path", "embedding") if c not in names]
        if missing:
            raise DuplicatesError(f"{file}: no column {', '.join(missing)} (not a meta.parquet "
                                  "written by `artylyze tag`)")
        if root is None:
            root = schema_metadata(reader.schema_arrow)[1]
        want = [c for c in ("path", "sha256", "status", "width", "height", "embedding")
                if c in names]
        for batch in reader.iter_batches(batch_size=BATCH, columns=want):
            table = pa.Table.from_batches([batch])
            if "status" in names:
                table = table.filter(pc.equal(table.column("status"), "ok"))
            if not table.num_rows:
                continue
            paths += [str(p) for p in _column(table, "path")]
            sha += _column(table, "sha256")
            width += _column(table, "width")
            height += _column(table, "height")
            try:
                blocks.append(embedding_matrix(table, str(file)))
            except IndexBuildError as e:
                raise DuplicatesError(str(e)) from e
    if not paths:
        raise DuplicatesError(f"{path}: no rows with status ok")
    dims = {b.shape[1] for b in blocks}
    if len(dims) > 1:
        raise DuplicatesError(f"{path}: embeddings of different sizes {sorted(dims)}; "
                              "one collection needs one model")
    return Collection(path, root, paths, sha, width, height, np.concatenate(blocks))
