"""Checks of an index's parts that its sha256s cannot give: an index can come from anyone,
and a manifest resealed over hostile parts passes the integrity check.

Each part is checked before anything trusts it: the rows' column types and cluster ids, the
thumbnails' column type and count, each npz array's declared size against the bytes that
hold it (``np.load`` allocates what the header declares), and packed thumbnails are decoded
under a pixel limit read from their header (a 40-byte WebP can declare 13000x13000).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from artylyze.index.errors import IndexStoreError

#: Packed thumbnails are at most 512 px a side (``--thumbnails``); this leaves room and
#: refuses a bomb on its header, before a pixel is decoded.
THUMB_MAX_PIXELS = 1024 * 1024
#: How much an npz may expand (savez stores; savez_compressed of float data rarely beats 4x).
NPZ_MAX_EXPANSION = 16
NPZ_SLACK = 1 << 20

_TEXT = ("path", "sha256", "title", "artist_slug", "split", "record_id")
_INTS = ("year", "year_estimate", "year_low", "year_high", "kmeans", "cluster")


def _family(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _wanted(name: str, tasks: tuple[str, ...]) -> str | None:
    """The type family a known column must have (None: not a column the readers use)."""
    if name in _TEXT or name in tasks or name.startswith("true_"):
        return "text"
    if name in _INTS:
        return "integer"
    if name.endswith("_score") or name == "novelty":
        return "float"
    if name.endswith("_confident"):
        return "bool"
    return None


def check_rows(rows: pa.Table, file: Path, tasks: tuple[str, ...], gmm_k: int,
               kmeans_k: int) -> None:
    """Refuse rows whose known columns have another type (a number where text belongs
    fails deep in a page as a TypeError otherwise), or whose cluster ids are out of range."""
    if "path" not in rows.column_names:
        raise IndexStoreError(f"{file}: no 'path' column")
    for f in rows.schema:
        want = _wanted(f.name, tasks)
        have = _family(f.type)
        if want is not None and have not in (want, "null"):
            raise IndexStoreError(f"{file}: column {f.name!r} is {f.type}, not {want}")
    for name, k in (("cluster", gmm_k), ("kmeans", kmeans_k)):
        if name in rows.column_names and rows.num_rows:
            import pyarrow.compute as pc

            low, high = pc.min_max(rows.column(name)).values()
            if low.is_valid and (low.as_py() < 0 or high.as_py() >= k):
                raise IndexStoreError(f"{file}: {name} ids outside 0..{k - 1}")


def thumb_column(table: pa.Table, file: Path, count: int) -> list[bytes | None]:
    """The packed thumbnails as bytes (or None), after checking count and type."""
    from artylyze.index.thumbs import THUMB_COLUMN

    if table.num_rows != count or THUMB_COLUMN not in table.column_names:
        raise IndexStoreError(f"{file}: {table.num_rows} thumbnails for {count} rows")
    column = table.column(THUMB_COLUMN)
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise IndexStoreError(f"{file}: column {THUMB_COLUMN!r} is {column.type}, not binary")
    return column.to_pylist()


def decode_thumbnail(data: bytes, size: int) -> Any:
    """A packed thumbnail as an RGB PIL image at most ``size`` px, or None when it is not a
    small image: refused on its header above :data:`THUMB_MAX_PIXELS`, never decoded."""
    from PIL import Image

    from artylyze.errors import ArtyLyzeError
    from artylyze.imaging import load_thumbnail

    try:
        return Image.fromarray(load_thumbnail(bytes(data), size, THUMB_MAX_PIXELS).pixels)
    except (ArtyLyzeError, OSError, ValueError, TypeError):
        return None


def _member_bytes(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """What the .npy member's header declares its array takes, in bytes."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format {version} is not one numpy.savez writes")
    if dtype.hasobject:
        raise ValueError("holds Python objects")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def read_npz(file: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz, each checked before it is read: its header's shape times item
    size must fit the member's bytes, and all members together may expand the file at most
    :data:`NPZ_MAX_EXPANSION` times, so a header declaring 2^40 floats is refused, not
    allocated."""
    try:
        size = file.stat().st_size
        with zipfile.ZipFile(file) as z:
            members = z.infolist()
            total = sum(m.file_size for m in members)
            if total > NPZ_MAX_EXPANSION * size + NPZ_SLACK:
                raise ValueError(f"its members expand to {total:,} bytes")
            for m in members:
                if _member_bytes(z, m) > m.file_size:
                    raise ValueError(f"array {m.filename!r} declares more than its bytes")
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        for name, arr in arrays.items():  # NaN in a mixture or PCA turns every answer NaN
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                raise ValueError(f"array {name!r} holds NaN or infinity")
        return arrays
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, SyntaxError,
            TypeError, MemoryError, OverflowError) as e:
        raise IndexStoreError(f"{file}: not a readable npz file ({e})") from e


# -- themes.json: every field a page or command reads, with its type -----------------------

_NUM = "number"


def _is(value: Any, kind: Any) -> bool:
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _need(d: Any, key: str, kind: Any, where: str, optional: bool = False) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where} is not an object")
    if key not in d and optional:
        return None
    value = d.get(key)
    if not _is(value, kind):
        name = kind if isinstance(kind, str) else kind.__name__
        raise ValueError(f"{where}.{key} is {type(value).__name__}, not {name}")
    return value


def _sweep(d: dict[str, Any], where: str, fields: tuple[str, ...]) -> None:
    _need(d, "k", int, where)
    _need(d, "chosen_by", str, where)
    for i, row in enumerate(_need(d, "sweep", list, where)):
        _need(row, "k", int, f"{where}.sweep[{i}]")
        for name in fields:
            _need(row, name, _NUM, f"{where}.sweep[{i}]", optional=name != fields[0])


def check_themes(themes: Any, k: int, file: Path) -> None:
    """Refuse a themes document that a page would trip over (a number where a name belongs,
    a cluster id out of range, an affinity matrix of the wrong shape)."""
    try:
        items = _need(themes, "themes", list, "themes.json")
        if len(items) != k:
            raise ValueError(f"{len(items)} themes for {k} clusters")
        for i, t in enumerate(items):
            where = f"themes[{i}]"
            if _need(t, "id", int, where) != i:
                raise ValueError(f"{where}.id is not {i}")
            if _need(t, "size", int, where) < 0:
                raise ValueError(f"{where}.size is negative")
            _need(t, "name", str, where)
            _need(t, "weight", _NUM, where, optional=True)
            for field, v in _need(t, "labels", dict, where).items():
                _need(v, "source", str, f"{where}.labels.{field}")
                for j, top in enumerate(_need(v, "top", list, f"{where}.labels.{field}")):
                    _need(top, "label", str, f"{where}.labels.{field}.top[{j}]")
                    _need(top, "share", _NUM, f"{where}.labels.{field}.top[{j}]")
            for j, c in enumerate(_need(t, "closest", list, where, optional=True) or []):
                if not 0 <= _need(c, "id", int, f"{where}.closest[{j}]") < k:
                    raise ValueError(f"{where}.closest[{j}].id is out of range")
                _need(c, "name", str, f"{where}.closest[{j}]")
                _need(c, "similarity", _NUM, f"{where}.closest[{j}]")
        affinity = _need(themes, "affinity", list, "themes.json")
        if len(affinity) != k or not all(isinstance(r, list) and len(r) == k and
                                         all(_is(x, _NUM) for x in r) for r in affinity):
            raise ValueError(f"affinity is not a {k} x {k} matrix of numbers")
        for source in _need(themes, "label_sources", dict, "themes.json").values():
            if not isinstance(source, str):
                raise ValueError("label_sources holds a non-text value")
        _sweep(_need(themes, "kmeans", dict, "themes.json"), "kmeans",
               ("inertia", "silhouette", "davies_bouldin"))
        gmm = _need(themes, "gmm", dict, "themes.json")
        _sweep(gmm, "gmm", ("bic",))
        _need(gmm, "covariance", str, "gmm")
        _need(gmm, "dims", int, "gmm")
    except ValueError as e:
        raise IndexStoreError(f"{file}: {e}") from e
