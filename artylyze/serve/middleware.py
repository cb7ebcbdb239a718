"""Two small ASGI middlewares: a structured access log, and headers every response gets.

The access log is one JSON object a line on the ``artylyze.access`` logger: time, request
id, client, method, path, status, bytes, milliseconds. It never records query strings,
headers, cookies or bodies, so nothing secret a client sends ends up in it. A client's
``X-Request-ID`` is kept when it is short and plain, else one is made; either way it is
sent back, so a user's report can be matched to a log line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "artylyze.access"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_LOGGED_PATH = 300
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin"}


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex[:16]


class AccessLog:
    """Log every HTTP request once it has been answered (or has failed)."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        seen: dict[str, Any] = {"status": 0, "bytes": 0}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", rid)
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client")
            self.log.info(json.dumps({
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                "request_id": rid, "client": client[0] if client else None,
                "method": scope["method"], "path": scope["path"][:MAX_LOGGED_PATH],
                "status": seen["status"] or 500, "bytes": seen["bytes"],
                "ms": round((time.perf_counter() - start) * 1000, 2)}))


class SecurityHeaders:
    """``nosniff``, no referrer, no framing: on every response, the API's as the page's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
