"""uvicorn's own refusals (malformed HTTP, more connections than ``--max-connections``)
answer in the API's JSON error shape, as ``serve`` runs it (issue #24)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from serve_support import ERROR_KEYS, free_port

from artylyze.serve.options import ServeOptions
from artylyze.serve.protocol import JsonH11Protocol
from artylyze.serve.server import uvicorn_settings


async def hello(scope, receive, send) -> None:
    """The smallest app: ``/`` answers 200."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture()
def server() -> Iterator[int]:
    """uvicorn as ``serve`` configures it, on loopback, with room for one connection
    (uvicorn counts the asking one against ``limit_concurrency``)."""
    port = free_port()
    settings = uvicorn_settings(ServeOptions(port=port, max_connections=2))
    assert settings["http"] is JsonH11Protocol
    runner = uvicorn.Server(uvicorn.Config(hello, **settings))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    for _ in range(200):
        if runner.started:
            break
        time.sleep(0.05)
    assert runner.started
    yield port
    runner.should_exit = True
    thread.join(timeout=10)


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` and read one response (the server closes refused connections)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def error_of(status: int, headers: dict[str, str], body: bytes, want: int, kind: str) -> str:
    assert status == want, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == ERROR_KEYS and error["status"] == want and error["kind"] == kind
    assert headers["x-content-type-options"] == "nosniff"
    return error["message"]


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n",
    b"GET /\xc2\xb2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n"],
    ids=["space-in-name", "nul", "non-ascii-target", "garbage", "huge-header"])
def test_malformed_http_is_a_json_400(server, request_bytes) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        message = error_of(*exchange(sock, request_bytes), 400, "bad_request")
        assert sock.recv(1) == b""  # and the connection is closed, as uvicorn's own 400 does
    assert "not a valid HTTP/1.1 request" in message


def test_past_the_connection_limit_is_a_json_503_with_retry_after(server) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as held:
        ok = exchange(held, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: counts
        assert ok[0] == 200 and ok[2] == b"hello"
        with socket.create_connection(("127.0.0.1", server), timeout=10) as extra:
            status, headers, body = exchange(extra, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert "connections" in error_of(status, headers, body, 503, "busy")
        assert headers["retry-after"].isdigit()
