"""Thumbnails for pages and contact sheets; a missing or unreadable image becomes a grey tile,
so one lost file never breaks a report.

An index can carry its own small thumbnails (``thumbs.parquet``: one WebP per row, made at
build time with ``--thumbnails PX``), so its pages show pictures on machines that do not have
the collection, as the shipped gallery must. :func:`row_thumbnail` prefers them.
"""

from __future__ import annotations

import base64
import io
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from PIL import Image

from artylyze.errors import ArtyLyzeError

if TYPE_CHECKING:
    import pyarrow as pa

    from artylyze.index.store import IndexDir

GREY = (150, 150, 150)
THUMB_COLUMN = "thumbnail"
THUMB_FORMAT = "WEBP"  # ~40% smaller than JPEG at the same look; every browser shows it
THUMB_QUALITY = 65


def locate(root: str | None, rel_path: str) -> Path | None:
    """The file of an indexed row: ``root/path``; names that are not UTF-8 are stored escaped
    in meta.parquet and decoded here. Row paths are untrusted (an index can come from
    anyone): an absolute one, one that climbs out of the root with ``..``, a symlink that
    leads out of it, a broken ``\\xHH`` escape or a NUL is never opened (the same rule as
    ``serve``), so a page or contact sheet cannot embed a file from outside the collection;
    the caller shows a grey tile."""
    from artylyze.store import decode_path

    if not root or not isinstance(rel_path, str):
        return None
    try:
        rel = decode_path(rel_path)
    except ValueError:  # BadPathError: not a name any tag run wrote
        return None
    if os.path.isabs(rel) or ".." in PurePath(rel).parts:
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, rel))
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        return None
    try:
        return Path(real) if stat.S_ISREG(os.stat(real).st_mode) else None
    except (OSError, ValueError):
        return None


def read_thumbnail(path: str | Path | None, size: int) -> Image.Image | None:
    """An RGB thumbnail at most ``size`` px on its long side, or None if unreadable. Decoded
    straight to that size (see :func:`artylyze.imaging.load_thumbnail`), so a page of large
    scans never holds full-size copies of them."""
    if path is None:
        return None
    from artylyze.imaging import load_thumbnail

    try:
        return Image.fromarray(load_thumbnail(path, size).pixels)
    except (ArtyLyzeError, OSError, ValueError):
        return None


def grey_tile(size: int) -> Image.Image:
    return Image.new("RGB", (size, size), GREY)


def thumbnail(path: str | Path | None, size: int = 160) -> Image.Image:
    """An RGB thumbnail at most ``size`` px on its long side, or a grey square."""
    return read_thumbnail(path, size) or grey_tile(size)


def fit_tile(img: Image.Image, size: int) -> Image.Image:
    """Centre a thumbnail on a square white tile (contact sheets need equal cells)."""
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    img = img.copy()
    img.thumbnail((size, size))
    tile.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return tile


def data_uri(img: Image.Image, quality: int = 80) -> str:
    """A small inline JPEG, so a page works when moved or mailed."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def encode_thumbnail(path: str | Path | None, size: int,
                     quality: int = THUMB_QUALITY) -> bytes | None:
    """A ``size`` px (long side) WebP of the file, or None when it cannot be read."""
    img = read_thumbnail(path, size)
    if img is None:
        return None
    buf = io.BytesIO()
    img.save(buf, THUMB_FORMAT, quality=quality, method=4)
    return buf.getvalue()


def pack_thumbnails(root: str | None, paths: Sequence[str], size: int,
                    tick: Callable[[int], None] | None = None) -> pa.Table:
    """One thumbnail per row (null where the file is missing), in row order."""
    import pyarrow as pa

    images = []
    for i, rel in enumerate(paths):
        images.append(encode_thumbnail(locate(root, rel), size))
        if tick is not None and (i + 1) % 500 == 0:
            tick(i + 1)
    return pa.table({THUMB_COLUMN: pa.array(images, pa.binary())})


def row_image(index: IndexDir, row: int, size: int = 160) -> Image.Image | None:
    """The picture of an indexed work: its packed thumbnail, else its file under the
    index's root; None when neither can be read."""
    data = index.packed_thumbnail(row)
    if data is not None:  # untrusted bytes: decoded under a small pixel limit, or not at all
        from artylyze.index.checks import decode_thumbnail

        img = decode_thumbnail(data, size)
        if img is not None:
            return img
    return read_thumbnail(locate(index.root, index.rows.column("path")[row].as_py()), size)


def row_thumbnail(index: IndexDir, row: int, size: int = 160) -> Image.Image:
    """:func:`row_image`, or a grey tile."""
    return row_image(index, row, size) or grey_tile(size)
