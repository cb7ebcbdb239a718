"""Relative paths as ``path`` column text: any byte name round-trips through valid UTF-8."""

from __future__ import annotations

import os
import re

from artylyze.errors import ArtyLyzeError

_HEX2 = re.compile(r"[0-9a-fA-F]{2}")


class BadPathError(ArtyLyzeError, ValueError):
    """A ``path`` value that no ``tag`` run writes: a broken ``\\xHH`` escape or a NUL byte
    (an index or meta.parquet from elsewhere). A ValueError too, so a caller that guards
    ``open()`` against embedded NULs catches it the same way."""


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
    """Inverse of :func:`encode_path`: the relative path to open (str, surrogate escapes).

    Untrusted text (an index can come from anyone) fails one way only, with BadPathError:
    ``\\x`` not followed by two hex digits, or a NUL (literal or escaped), which no file
    name holds. A backslash before anything else is kept as it is, as it always was."""
    if "\x00" in text:
        raise BadPathError(f"path {text!r} holds a NUL byte")
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
            if not _HEX2.fullmatch(text[i + 2:i + 4]):
                raise BadPathError(f"path {text!r} has a broken \\xHH escape")
            if text[i + 2:i + 4] == "00":
                raise BadPathError(f"path {text!r} holds an escaped NUL byte")
            raw.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raw += c.encode("utf-8", "surrogateescape")
            i += 1
    return os.fsdecode(bytes(raw))


def file_path(root: str | os.PathLike[str], path: str) -> str:
    """The real file behind a ``path`` value of meta.parquet."""
    return os.path.join(os.fspath(root), decode_path(path))
