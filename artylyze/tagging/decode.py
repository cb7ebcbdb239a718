"""The decode step: one file -> sha256 and pixels, or an error with its kind; never raises.

Module level with plain-data arguments, so a ``spawn`` process or a Ray task can run it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from artylyze.imaging import DEFAULT_MAX_BYTES, ImageError, load_image, open_image_file


@dataclass(frozen=True)
class DecodeJob:
    abspath: str
    hints: tuple[str, ...] = ()  # sha256 values whose predictions exist: then skip the decode
    ref: Any = None  # a source's own job data (FileEntry.ref), for its decode step


@dataclass(frozen=True)
class DecodeResult:
    sha256: str | None
    pixels: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    kind: str | None = None  # the error's kind (see ImageError), counted by the summary
    known: bool = False  # sha256 was one of the hints: not decoded
    extra: tuple[tuple[str, str | None], ...] = ()  # more columns of its row (IIIF: as fetched)


READ_CHUNK = 1 << 20
SLURP_MAX = 64 << 20  # files up to this size are read into memory once, for hash and decode


def decode_file(job: DecodeJob, size: int, resize: str, max_pixels: int,
                max_bytes: int = DEFAULT_MAX_BYTES) -> DecodeResult:
    """Hash and decode one file; never raises for a bad file.

    The file is opened once and judged on its descriptor (a FIFO swapped in after the walk
    is refused, not waited on; see :func:`artylyze.imaging.open_image_file`). Up to
    ``SLURP_MAX`` bytes it is read once and the same bytes are hashed and decoded; a larger
    one is hashed in chunks and decoded from the file, so memory never grows with file size
    beyond ``SLURP_MAX`` per worker. Module level with plain-data arguments, so a ``spawn``
    worker can run it.
    """
    try:
        f = open_image_file(job.abspath, max_bytes)
    except ImageError as e:
        failed_open = isinstance(e.__cause__, OSError)
        return DecodeResult(None, error=f"cannot read file: {e.reason}" if failed_open
                            else e.reason, kind=e.kind)
    with f:
        try:
            if os.fstat(f.fileno()).st_size <= SLURP_MAX:
                source: bytes | BinaryIO = f.read()
                sha = hashlib.sha256(source).hexdigest()
            else:
                sha, source = _sha256(f), f
                f.seek(0)
        except OSError as e:
            return DecodeResult(None, error=f"cannot read file: {(e.strerror or str(e)).lower()}",
                                kind="unreadable")
        if sha in job.hints:
            return DecodeResult(sha, known=True)
        try:
            img = load_image(source, size=size, resize=resize, max_pixels=max_pixels)
        except ImageError as e:
            return DecodeResult(sha, error=e.reason, kind=e.kind)
    return DecodeResult(sha, img.pixels, img.width, img.height)


def _sha256(f) -> str:
    digest = hashlib.sha256()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    while n := f.readinto(buf):
        digest.update(view[:n])
    return digest.hexdigest()
