"""Small indexes to attack: a tagged-looking collection of real images, its index (with packed
thumbnails), and a way to copy an index and reseal its manifest after changing a part, so
that the sha256 check passes and only the checks behind it stand between the change and
the reader."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from PIL import Image
from test_index_support import COLOURS, planted_meta

from artylyze.index.build import BuildOptions, build


def images_for(meta_paths: list[str], root: Path) -> None:
    """A small real JPEG at every path (colour by position, so thumbnails differ)."""
    for i, rel in enumerate(meta_paths):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), COLOURS[i % len(COLOURS)]).save(path, "JPEG")


def small_index(tmp: Path, index_type: str | None = None, thumbnails: int | None = 32,
                n_per: int = 10, paths: list[str] | None = None,
                pca: int | None = None) -> tuple[Path, Path]:
    """(meta.parquet, index dir) over 3 * n_per planted works whose images exist."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp.mkdir(parents=True, exist_ok=True)
    meta = planted_meta(tmp, n_per=n_per)
    table = pq.read_table(meta)
    if paths is not None:
        names = paths + table.column("path").to_pylist()[len(paths):]
        table = table.set_column(0, "path", pa.array(names, pa.string()))
        pq.write_table(table, meta)
    images_for(table.column("path").to_pylist(), tmp)
    out = tmp / "idx"
    build(meta, out, BuildOptions(gmm_k=3, kmeans_k=3, index_type=index_type,
                                  thumbnails=thumbnails, pca=pca))
    return meta, out


def copy_index(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def reseal(index_dir: Path, **manifest_changes: object) -> None:
    """Recompute every listed file's size and sha256 (and apply ``manifest_changes``), as
    someone who hands out a doctored index would."""
    file = index_dir / "manifest.json"
    man = json.loads(file.read_text())
    man.update(manifest_changes)
    for name in man["files"]:
        data = (index_dir / name).read_bytes()
        man["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    file.write_text(json.dumps(man, indent=2))
