"""A polite, bounded HTTP client for IIIF documents and images (httpx underneath).

What a museum's server and our memory can count on:

- one connection pool for the run, at most ``max_per_host`` requests at once per host;
- only ``http``/``https`` URLs, from the document and from every redirect (no ``file:``);
- redirects followed by hand, at most ``max_redirects``, a loop stops at once;
- at most ``max_bytes`` read (a larger Content-Length is refused before the body);
- ``timeout`` seconds per connect/read, and 4x that for one whole response;
- 429 and 5xx answers and refused connections are retried ``retries`` times with exponential
  backoff; a ``Retry-After`` (seconds or an HTTP date) is honoured, for the whole host, up
  to ``max_wait`` seconds (a longer one gives up on that request); timeouts are not retried
  (a slow server gets no more load from us);
- an identifying User-Agent.

Every failure is a :class:`FetchError` whose ``kind`` the summary counts per canvas: ``http``
(the status is in the message), ``timeout``, ``too_large``, ``redirect``, ``scheme``,
``network``.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

from artylyze import __version__
from artylyze.errors import ArtyLyzeError
from artylyze.options import Tag as O

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
SCHEMES = ("http", "https")
USER_AGENT = f"ArtyLyze/{__version__} (IIIF batch tagger; python-httpx)"
CHUNK = 1 << 16


class FetchError(ArtyLyzeError):
    """A URL that could not be fetched; ``kind`` says why (see the module docstring)."""


@dataclass(frozen=True)
class FetchOptions:
    max_per_host: int = O.max_per_host.default
    timeout: float = O.timeout.default
    retries: int = O.retries.default
    max_redirects: int = O.max_redirects.default
    max_bytes: int = O.max_bytes.default
    backoff: float = 1.0  # first retry waits this long, doubled each time
    max_wait: float = O.max_wait.default
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content: bytes
    content_type: str
    etag: str | None
    last_modified: str | None


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL, else a FetchError (kind ``scheme``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.netloc:
        raise FetchError(f"refused URL {url[:200]!r}: only http and https are fetched",
                         kind="scheme")
    return url


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class Fetcher:
    """One run's HTTP client; thread-safe (decode workers share it)."""

    def __init__(self, options: FetchOptions | None = None) -> None:
        import httpx  # only the IIIF path needs it

        self.options = o = options or FetchOptions()
        self._httpx = httpx
        self._client = httpx.Client(
            timeout=httpx.Timeout(o.timeout), follow_redirects=False, trust_env=False,
            headers={"User-Agent": o.user_agent},
            limits=httpx.Limits(max_connections=max(8, 4 * o.max_per_host),
                                max_keepalive_connections=max(8, 4 * o.max_per_host)))
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._not_before: dict[str, float] = {}
        self.requests = 0  # for the summary and the tests
        self.bytes = 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, sink: IO[bytes] | None = None, accept: str | None = None,
            max_bytes: int | None = None) -> Fetched:
        """GET ``url`` with the rules of the module docstring. With ``sink`` the body is
        written there (``content`` is then empty), else it is returned in memory."""
        limit = max_bytes or self.options.max_bytes
        attempt = 0
        while True:
            try:
                return self._follow(check_url(url), sink, accept, limit)
            except _Retry as r:
                attempt += 1
                if attempt > self.options.retries:
                    raise FetchError(f"{r.message} after {attempt} tries", kind=r.kind) from None
                wait = r.wait if r.wait is not None else (
                    self.options.backoff * 2 ** (attempt - 1) * (1 + random.random() / 10))
                if wait > self.options.max_wait:
                    raise FetchError(f"{r.message}: Retry-After {wait:.0f} s is longer than "
                                     f"{self.options.max_wait:.0f} s", kind=r.kind) from None
                self._pause(r.host, wait)
                if sink is not None:
                    sink.seek(0)
                    sink.truncate()

    def _follow(self, url: str, sink: IO[bytes] | None, accept: str | None,
                limit: int) -> Fetched:
        first, seen = url, {url}
        for _ in range(self.options.max_redirects + 1):
            location = self._once(url, sink, accept, limit)
            if isinstance(location, Fetched):
                return location
            nxt = urljoin(url, location)
            if urlsplit(nxt).scheme.lower() not in SCHEMES:
                raise FetchError(f"{url} redirects to {nxt[:200]!r}: only http and https are "
                                 "followed", kind="scheme")
            if nxt in seen:
                raise FetchError(f"redirect loop at {url}", kind="redirect")
            seen.add(nxt)
            url = nxt
        raise FetchError(f"more than {self.options.max_redirects} redirects from {first}",
                         kind="redirect")

    def _once(self, url: str, sink: IO[bytes] | None, accept: str | None,
              limit: int) -> Fetched | str:
        """One request: the response, a redirect's Location, or _Retry/FetchError."""
        httpx = self._httpx
        host = urlsplit(url).netloc.lower()
        headers = {"Accept": accept} if accept else {}
        with self._host(host):
            try:
                with self._client.stream("GET", url, headers=headers) as r:
                    self.requests += 1
                    if r.status_code in REDIRECTS and "location" in r.headers:
                        return r.headers["location"]
                    if r.status_code in RETRY_STATUS:
                        raise _Retry(f"HTTP {r.status_code} from {url}", "http", host,
                                     retry_after(r.headers.get("retry-after")))
                    if r.status_code != 200:
                        raise FetchError(f"HTTP {r.status_code} from {url}", kind="http")
                    body = self._read(r, url, sink, limit)
                    return Fetched(str(r.url), body, r.headers.get("content-type", ""),
                                   r.headers.get("etag"), r.headers.get("last-modified"))
            except httpx.TimeoutException as e:
                raise FetchError(f"timed out after {self.options.timeout:g} s: {url}",
                                 kind="timeout") from e
            except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
                raise _Retry(f"cannot connect to {host} ({e})", "network", host, None) from e
            except httpx.HTTPError as e:
                raise FetchError(f"{type(e).__name__} for {url}: {e}", kind="network") from e

    def _read(self, r, url: str, sink: IO[bytes] | None, limit: int) -> bytes:
        declared = r.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{url} is {int(declared):,} bytes, over the limit of {limit:,} "
                             "(--max-bytes)", kind="too_large")
        deadline = time.monotonic() + 4 * self.options.timeout
        chunks: list[bytes] = []
        n = 0
        for chunk in r.iter_bytes(CHUNK):
            n += len(chunk)
            if n > limit:
                raise FetchError(f"{url} is over the limit of {limit:,} bytes (--max-bytes)",
                                 kind="too_large")
            if time.monotonic() > deadline:
                raise FetchError(f"timed out reading {url}", kind="timeout")
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)
        self.bytes += n
        return b"".join(chunks)

    @contextmanager
    def _host(self, host: str) -> Iterator[None]:
        with self._lock:
            sem = self._hosts.setdefault(
                host, threading.BoundedSemaphore(self.options.max_per_host))
        with sem:
            while (wait := self._not_before.get(host, 0.0) - time.monotonic()) > 0:
                time.sleep(min(wait, 1.0))
            yield

    def _pause(self, host: str, wait: float) -> None:
        """Hold every request to ``host`` for ``wait`` seconds (Retry-After, backoff)."""
        until = time.monotonic() + wait
        with self._lock:
            self._not_before[host] = max(self._not_before.get(host, 0.0), until)
        time.sleep(max(0.0, until - time.monotonic()))


class _Retry(Exception):
    def __init__(self, message: str, kind: str, host: str, wait: float | None) -> None:
        super().__init__(message)
        self.message, self.kind, self.host, self.wait = message, kind, host, wait
