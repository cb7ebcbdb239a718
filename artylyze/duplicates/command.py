"""``artylyze duplicates`` without the CLI: open the source, find the groups, write the table
(atomically) and the optional page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from artylyze.atomic import atomic_write
from artylyze.duplicates.find import Found, Options, find_duplicates, image_loader
from artylyze.duplicates.source import Collection, DuplicatesError, open_collection


def _index_thumbnails(collection: Collection) -> Callable[[int], Image.Image | None] | None:
    """Packed thumbnails of an index source (its files may be elsewhere), else None."""
    if not (collection.source / "manifest.json").is_file():
        return None
    from artylyze.index.store import load_index_dir
    from artylyze.index.thumbs import row_image

    index = load_index_dir(collection.source, verify=False)
    return lambda i: row_image(index, i, 160)


def run(source: str | Path, out: str | Path, html: str | Path | None = None,
        root: str | Path | None = None, opts: Options | None = None,
        log: Callable[[str], None] | None = None) -> Found:
    """Find the duplicate groups of ``source``; ``root`` overrides where its files are."""
    out = Path(out)
    if out.is_dir():
        raise DuplicatesError(f"--out {out} is a folder; give a file name (groups.parquet)")
    collection = open_collection(source)
    if root is not None:
        collection.root = str(root)
    thumbs = _index_thumbnails(collection)
    load = image_loader(collection, thumbs)
    found = find_duplicates(collection, opts, load, log)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: pq.write_table(found.table, f, compression="zstd"))
    if html is not None:
        from artylyze.duplicates.page import write_groups_html

        by_path = {p: i for i, p in enumerate(collection.paths)}
        write_groups_html(html, found.table, lambda p: load(by_path[p]))
    return found
