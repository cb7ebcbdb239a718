"""Reading small files that someone else may have planted: sidecars, manifests, JSON parts.

``Path.read_bytes()`` and ``json.loads`` trust what they are given: a FIFO at the path hangs
the reader until someone writes to it, a link to ``/dev/zero`` or a sparse 3 GB file is read
into memory until it runs out, a 5,000-digit number or 100,000-deep nesting makes ``json``
raise ValueError or RecursionError. :func:`read_regular` judges the *open descriptor* (so a
file swapped after a check is judged too) and reads only a regular file of bounded size;
:func:`parse_json` turns every way a JSON text can fail into one :class:`UntrustedFileError`.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from artylyze.errors import ArtyLyzeError

#: Default bound for a small metadata file (manifests, themes, sidecars are KBs to a few MB).
SMALL_FILE_BYTES = 64 * 1024**2


class UntrustedFileError(ArtyLyzeError):
    """A file that is not what it should be: not a regular file, too large, not JSON.
    ``reason`` says why without the file name; ``kind``: ``not_regular``, ``too_large``,
    ``unreadable``, ``not_json``."""

    def __init__(self, path: str, reason: str, kind: str) -> None:
        super().__init__(f"{path}: {reason}", kind=kind)
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return type(self), (self.path, self.reason, self.kind)


def read_regular(path: str | os.PathLike[str], max_bytes: int = SMALL_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; refuses a FIFO
    (without waiting for a writer), a device, a folder or a larger file before reading it."""
    name = os.fsdecode(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as e:
        raise UntrustedFileError(name, (e.strerror or str(e)).lower(), "unreadable") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UntrustedFileError(name, f"{what}; not read", "not_regular")
        if st.st_size > max_bytes:
            raise UntrustedFileError(name, f"{st.st_size:,} bytes, more than the "
                                     f"{max_bytes:,} such a file may have; not read",
                                     "too_large")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise UntrustedFileError(name, (e.strerror or str(e)).lower(), "unreadable") from e
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while being read
        raise UntrustedFileError(name, f"more than {max_bytes:,} bytes; not read", "too_large")
    return data


def parse_json(data: bytes | str, name: str) -> Any:
    """``json.loads`` that fails only with :class:`UntrustedFileError`: bad syntax, bad
    UTF-8, a number longer than Python converts (ValueError), nesting deeper than the
    parser recurses (RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError as e:
        raise UntrustedFileError(name, "not usable JSON (nested too deeply)", "not_json") from e
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UntrustedFileError(name, f"not usable JSON ({reason})", "not_json") from e


def read_json(path: str | os.PathLike[str], max_bytes: int = SMALL_FILE_BYTES) -> Any:
    """:func:`read_regular` then :func:`parse_json`."""
    return parse_json(read_regular(path, max_bytes), os.fsdecode(path))
