"""The refusals uvicorn makes itself, before the app sees a request, in the API's JSON
shape ``{"error": {"status", "kind", "message"}}`` instead of uvicorn's plain text:

* a request that is not valid HTTP/1.1 (bad header, bad request line, headers too large):
  400 ``bad_request``, by :class:`JsonH11Protocol` (``serve`` runs uvicorn with it);
* more connections or requests than ``--max-connections`` (uvicorn's
  ``limit_concurrency``): 503 ``busy`` with ``Retry-After``, by swapping uvicorn's
  ``service_unavailable`` app for :func:`busy` (:func:`install`).

Both hook uvicorn's h11 protocol (``uvicorn.protocols.http.h11_impl``), which ``serve``
always uses (also where httptools is installed); ``tests/test_serve_protocol.py`` fails
if a uvicorn release moves them. Not JSON, because there is no HTTP answer to give: a
connection closed by the keep-alive or graceful-shutdown timeouts, and a client that
goes away mid-request.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http import h11_impl

from artylyze.serve.middleware import SECURITY_HEADERS

RETRY_AFTER_S = 2
MAX_MESSAGE = 200


def refusal(status: int, kind: str, message: str) -> bytes:
    """The JSON body of a refusal, ASCII only (it is written under h11's rules)."""
    return json.dumps({"error": {"status": status, "kind": kind,
                                 "message": message[:MAX_MESSAGE]}}).encode("ascii")


def _headers(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), *extra,
            *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]


async def busy(scope: dict, receive: object, send: object) -> None:
    """What uvicorn answers past ``limit_concurrency``: 503 ``busy`` as JSON."""
    body = refusal(503, "busy", "the server has too many connections open; retry in "
                   f"{RETRY_AFTER_S} s")
    await send({"type": "http.response.start", "status": 503,  # type: ignore[operator]
                "headers": _headers(body, (b"retry-after", str(RETRY_AFTER_S).encode()))})
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


def install() -> None:
    """Make uvicorn's over-the-limit answer :func:`busy` (it looks the name up per request)."""
    h11_impl.service_unavailable = busy


class JsonH11Protocol(h11_impl.H11Protocol):
    """uvicorn's h11 protocol with its 400 for malformed HTTP sent as JSON."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        install()  # wherever this protocol runs (each worker process too), busy is JSON
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def send_400_response(self, msg: str) -> None:
        body = refusal(400, "bad_request", f"{msg.rstrip('.')}: not a valid HTTP/1.1 "
                       "request (a bad request line or header, or headers too large)")
        for event in (h11.Response(status_code=400, headers=_headers(body),
                                   reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
