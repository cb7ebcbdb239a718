"""The file of an indexed work under the collection root, and nothing else.

A row's ``path`` comes from a meta.parquet that anyone could have written, so it is checked
as hostile: absolute paths, ``..`` and links that lead out of the root, NUL bytes, folders,
FIFOs and devices are all refused. The final file is opened with ``O_NOFOLLOW`` after its
real path was checked, so a link swapped in between is refused too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from artylyze.serve.uploads import sniff
from artylyze.store import decode_path

CHUNK = 256 * 1024


def work_file(root: Path | None, rel: str | None) -> Path | None:
    """The real path of ``rel`` when it is a regular file inside ``root``, else None.

    The ``\\xHH`` escapes of the path column are decoded first and the NUL check runs on
    the decoded name (a stored ``\\x00`` is a NUL too); a name that cannot be decoded or
    looked up is no file, never an error."""
    if root is None or not rel:
        return None
    try:
        name = decode_path(rel)
    except (ValueError, IndexError):  # a broken \xHH escape: not a name tag ever wrote
        return None
    if "\x00" in name or os.path.isabs(name) or name.startswith("\\"):
        return None
    try:
        real_root = os.path.realpath(root)
        real = os.path.realpath(os.path.join(real_root, name))
        if os.path.commonpath([real_root, real]) != real_root or real == real_root:
            return None
        return Path(real) if stat.S_ISREG(os.stat(real).st_mode) else None
    except (OSError, ValueError):
        return None


@dataclass
class OpenImage:
    """An opened work file that is an image: its media type, size, and its bytes in chunks.
    The file object closes itself when dropped, even if the body is never sent."""

    file: BinaryIO
    media_type: str
    size: int

    def chunks(self) -> Iterator[bytes]:
        with self.file:
            while block := self.file.read(CHUNK):
                yield block


def open_image(path: Path) -> OpenImage | None:
    """Open ``path`` without following a link and without blocking on a FIFO; None unless
    it is a regular file whose first bytes are an image format's."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    file = os.fdopen(fd, "rb", buffering=0)
    try:
        st = os.fstat(fd)
        media_type = sniff(os.pread(fd, 16, 0)) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        media_type = None
    if media_type is None:
        file.close()
        return None
    return OpenImage(file, media_type, st.st_size)
