"""Relative paths as ``path`` column text: any byte name round-trips through valid UTF-8."""

from __future__ import annotations

import os


def encode_path(rel: str) -> str:
    r"""Relative path (str with surrogate escapes) -> valid UTF-8 text for the ``path`` column.

    Names that are valid UTF-8 without a backslash are stored as they are. Otherwise each
    undecodable byte becomes ``\xHH`` and a literal backslash ``\\``, so the text is
    reversible with :func:`decode_path` and still readable.
    """
    if "\\" not in rel and not any("\udc80" <= c <= "\udcff" for c in rel):
        return rel
    out = []
    for c in rel:
        if c == "\\":
            out.append("\\\\")
        elif "\udc80" <= c <= "\udcff":
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(c)
    return "".join(out)


def decode_path(text: str) -> str:
    """Inverse of :func:`encode_path`: the relative path to open (str, surrogate escapes)."""
    if "\\" not in text:
        return text
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "\\":
            raw += b"\\"
            i += 2
        elif c == "\\" and text[i + 1:i + 2] == "x":
            raw.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raw += c.encode("utf-8")
            i += 1
    return os.fsdecode(bytes(raw))


def file_path(root: str | os.PathLike[str], path: str) -> str:
    """The real file behind a ``path`` value of meta.parquet."""
    return os.path.join(os.fspath(root), decode_path(path))
