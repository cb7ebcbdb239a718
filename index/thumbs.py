"""Thumbnails for pages and contact sheets; a missing or unreadable image becomes a grey tile,
so one lost file never breaks a report."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path, PurePath

from PIL import Image

from artylyze.errors import ArtyLyzeError

GREY = (150, 150, 150)


def locate(root: str | None, rel_path: str) -> Path | None:
    """The file of an indexed row: ``root/path``; names that are not UTF-8 are stored escaped
    in meta.parquet and decoded here. Row paths are untrusted (an index can come from
    anyone): an absolute one, or one that climbs out of the root with ``..``, is never
    opened, so a page or contact sheet cannot embed a file from outside the collection."""
    from artylyze.store import decode_path, file_path

    rel = decode_path(rel_path)
    if not root or os.path.isabs(rel) or ".." in PurePath(rel).parts:
        return None
    path = Path(file_path(root, rel_path))
    return path if path.is_file() else None


def thumbnail(path: str | Path | None, size: int = 160) -> Image.Image:
    """An RGB thumbnail at most ``size`` px on its long side, or a grey square. Decoded
    straight to that size (see :func:`artylyze.imaging.load_thumbnail`), so a page of
    large scans does not hold full-size copies of them."""
    if path is not None:
        from artylyze.imaging import load_thumbnail

        try:
            return Image.fromarray(load_thumbnail(path, size).pixels)
        except (ArtyLyzeError, OSError, ValueError):
            pass
    return Image.new("RGB", (size, size), GREY)


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
