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
    """A request refused on purpose: ``status`` and ``kind`` say how, ``str()`` says why."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"status": self.status, "kind": self.kind, "message": self.message}}


class BadRequest(ServeError):
    status, kind = 400, "bad_request"


class NotFound(ServeError):
    status, kind = 404, "not_found"


class UploadTimeout(ServeError):
    status, kind = 408, "upload_timeout"


class TooLarge(ServeError):
    status, kind = 413, "too_large"


class NotAnImage(ServeError):
    status, kind = 415, "not_an_image"


class BadImage(ServeError):
    status, kind = 422, "bad_image"


class Busy(ServeError):
    status, kind = 503, "busy"


class TimedOut(ServeError):
    status, kind = 503, "timeout"
