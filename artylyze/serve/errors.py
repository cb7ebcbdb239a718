"""What a request can be refused with. Each error carries its HTTP status and a ``kind``
that scripts can match on; the app turns every one into ``{"error": {...}}`` JSON.

    ServeError (ArtyLyzeError)          500 unless a subclass says
    ├── BadRequest          400 bad_request    a body or parameter the API cannot use
    ├── NotFound            404 not_found      no such work, route or picture
    ├── UploadTimeout       408 upload_timeout the body did not arrive in time
    ├── TooLarge            413 too_large      more bytes than the upload limit
    ├── NotAnImage          415 not_an_image   the bytes are no image format we decode
    ├── BadImage            422 bad_image      an image that cannot be decoded (truncated,
    │                                          corrupt, more pixels than allowed)
    ├── Busy                503 busy           too many uploads in flight; Retry-After
    └── TimedOut            503 timeout        decoding + inference ran past the deadline
    ServeConfigError (ArtyLyzeError)    the service cannot start with these options
"""

from __future__ import annotations

from typing import ClassVar

from artylyze.errors import ArtyLyzeError


class ServeConfigError(ArtyLyzeError):
    """Options or files that keep the service from starting."""


class ServeError(ArtyLyzeError):
    """A request refused on purpose: ``status`` and ``kind`` say how, ``str()`` says why.

    A subclass names its HTTP status and kind in its class line, as in the table above."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "error"

    def __init_subclass__(cls, status: int | None = None, kind: str | None = None,
                          **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if kind is not None:
            cls.kind = kind

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"status": self.status, "kind": self.kind, "message": self.message}}


class BadRequest(ServeError, status=400, kind="bad_request"):
    """A body or parameter the API cannot use."""


class NotFound(ServeError, status=404, kind="not_found"):
    """No such work, route or picture."""


class UploadTimeout(ServeError, status=408, kind="upload_timeout"):
    """The body did not arrive in time."""


class TooLarge(ServeError, status=413, kind="too_large"):
    """More bytes than the upload limit."""


class NotAnImage(ServeError, status=415, kind="not_an_image"):
    """The bytes are no image format we decode."""


class BadImage(ServeError, status=422, kind="bad_image"):
    """An image that cannot be decoded: truncated, corrupt, more pixels than allowed."""


class Busy(ServeError, status=503, kind="busy"):
    """Too many uploads in flight; the response says when to retry (Retry-After)."""


class TimedOut(ServeError, status=503, kind="timeout"):
    """Decoding and inference ran past the deadline."""
