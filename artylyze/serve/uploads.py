"""An uploaded painting: the body read within a byte limit and a deadline, taken from a
multipart form (field ``image``) or sent raw, and sniffed so only image formats that the
guarded loader decodes go on to it.

The declared ``Content-Type`` of a part is not trusted; the first bytes decide. The limit
is checked on ``Content-Length`` before a byte is read and again while the body streams
in, so a lying or chunked client is cut off too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from artylyze.serve.errors import BadRequest, NotAnImage, TooLarge, UploadTimeout

FIELD = "image"
FORM_SLACK = 64 * 1024  # what a multipart envelope may add to the image's own bytes
MAX_NAME = 200
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"II*\x00", "image/tiff"),
          (b"MM\x00*", "image/tiff"), (b"BM", "image/bmp"))
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
ACCEPTED = "JPEG, PNG, WebP, TIFF, BMP or GIF"


def sniff(head: bytes) -> str | None:
    """The image media type that ``head`` (the first bytes of a file) starts with, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if head.startswith(magic)), None)


@dataclass(frozen=True)
class Upload:
    """The bytes of one uploaded image, what they are, and the name the client gave."""

    data: bytes
    media_type: str
    filename: str | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def name(self) -> str:
        return self.filename or "upload"


def clean_name(name: str | None) -> str | None:
    """The client's file name without folders or control characters, not too long."""
    if not name:
        return None
    base = _UNPRINTABLE.sub("", os.path.basename(name.replace("\\", "/")))[:MAX_NAME]
    return base or None


def check_length(request: Request, limit: int) -> None:
    """Refuse a declared body larger than ``limit`` (+ the form's envelope) before reading it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest(f"Content-Length {declared[:40]!r} is not a number")
    if int(declared) > limit + FORM_SLACK:
        raise TooLarge(too_large(int(declared), limit))


def too_large(size: int, limit: int) -> str:
    return f"upload of {size:,} bytes exceeds the limit of {limit:,} bytes"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused once it passes ``limit`` (+ envelope) or ``timeout`` seconds."""
    check_length(request, limit)

    async def collect() -> bytes:
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + FORM_SLACK:
                raise TooLarge(f"upload exceeds the limit of {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise UploadTimeout(f"the upload did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise BadRequest("the client went away before the upload was complete") from None


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def form_image(headers: Headers, body: bytes) -> tuple[bytes, str | None]:
    """The ``image`` file of a multipart form, and its file name."""
    parser = MultiPartParser(headers, _once(body), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise BadRequest(f"malformed multipart form: {e.message}") from None
    try:
        part = form.get(FIELD)
        if not isinstance(part, UploadFile):
            raise BadRequest(f"the form has no file field {FIELD!r}")
        return await part.read(), part.filename
    finally:
        await form.close()


async def read_upload(request: Request, limit: int, timeout: float) -> Upload:
    """The uploaded image: multipart field ``image``, or the raw body; sniffed and sized."""
    body = await read_body(request, limit, timeout)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        data, filename = await form_image(request.headers, body)
    else:
        data, filename = body, None
    if not data:
        raise BadRequest(f"no image in the request: send it as the multipart form field "
                         f"{FIELD!r} or as the raw body")
    if len(data) > limit:
        raise TooLarge(too_large(len(data), limit))
    media_type = sniff(data[:16])
    if media_type is None:
        raise NotAnImage(f"the upload is not an image: it does not start like {ACCEPTED}")
    return Upload(data, media_type, clean_name(filename))
