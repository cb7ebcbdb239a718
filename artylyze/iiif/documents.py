"""Walk IIIF Presentation documents (3 and 2.1): collections -> manifests -> canvases.

Documents are streamed, never held whole: a manifest is read from a temp file (or the local
file given) with ijson, one canvas at a time, so a manifest of 100,000 canvases costs the
memory of one canvas. Collections nest (``max_depth``); the walk stops at ``max_manifests``
manifests or ``max_canvases`` canvases and says so. The document named on the command line
may be a local file; everything it references must be an ``http``/``https`` URL.

A document that cannot be read (HTTP error, not JSON, not IIIF) is a :class:`DocProblem`
when it is a member of a collection (the walk goes on) and a :class:`DocumentError` when it
is the one named on the command line (nothing can be done).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import ijson

from artylyze.errors import ArtyLyzeError
from artylyze.iiif.fetch import Fetcher, FetchError, check_url
from artylyze.options import Tag as O

DOC_MAX_BYTES = 512 << 20
ACCEPT = "application/ld+json, application/json;q=0.9, */*;q=0.1"


class DocumentError(ArtyLyzeError):
    """The document named on the command line cannot be read as a IIIF Manifest/Collection."""


@dataclass(frozen=True)
class Canvas:
    """One canvas and the image that paints it, with what a row keeps of IIIF."""

    id: str
    label: str | None
    manifest_id: str
    manifest_label: str | None
    manifest_source: str  # the URL (or top-level file) the manifest was read from
    service_id: str | None = None  # Image API service of the painting image
    service_version: int | None = None
    image_url: str | None = None  # the painting body's own URL
    width: int | None = None  # of the image as the manifest states it
    height: int | None = None
    error: str | None = None  # why this canvas cannot be fetched (no image...)


@dataclass(frozen=True)
class DocProblem:
    """A member document that was skipped (``kind``: unreadable_manifest, limit...)."""

    source: str
    kind: str
    message: str


@dataclass(frozen=True)
class WalkLimits:
    max_canvases: int = O.max_canvases.default
    max_manifests: int = O.max_manifests.default
    max_depth: int = O.max_depth.default


def is_iiif_source(arg: str) -> bool:
    """An http(s) URL or a ``.json`` file: what ``artylyze tag`` reads as IIIF."""
    scheme = urlsplit(arg).scheme.lower()
    return scheme in ("http", "https") or (arg.lower().endswith(".json")
                                           and os.path.isfile(arg))


class _Stop(Exception):
    """A walk limit was reached."""


class Walker:
    """One walk; counts what it met so the caller can report it."""

    def __init__(self, fetcher: Fetcher, limits: WalkLimits | None = None) -> None:
        self.fetcher, self.limits = fetcher, limits or WalkLimits()
        self.manifests = self.canvases = self.collections = 0

    def walk(self, source: str) -> Iterator[Canvas | DocProblem]:
        """Every canvas under ``source`` (URL or local file), depth first, in order."""
        try:
            f = self._open(source, top=True)
        except FetchError as e:
            raise DocumentError(f"cannot read {source}: {e}", kind=e.kind) from e
        try:
            yield from self._document(f, source, 0, top=True)
        except _Stop as stop:
            yield DocProblem(source, "limit", str(stop))
        finally:
            f.close()

    def _open(self, source: str, top: bool) -> IO[bytes]:
        if top and urlsplit(source).scheme.lower() not in ("http", "https"):
            try:
                return open(source, "rb")  # noqa: SIM115 - closed by the caller
            except OSError as e:
                raise DocumentError(f"cannot read {source}: {e.strerror or e}") from e
        f = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
        try:
            self.fetcher.get(check_url(source), sink=f, accept=ACCEPT,
                             max_bytes=DOC_MAX_BYTES)
        except BaseException:
            f.close()
            raise
        return f

    def _document(self, f: IO[bytes], source: str, depth: int,
                  top: bool) -> Iterator[Canvas | DocProblem]:
        try:
            head = _header(f)
        except ijson.JSONError as e:
            msg = f"{source} is not JSON ({e})"
            if top:
                raise DocumentError(msg, kind="not_json") from e
            yield DocProblem(source, "unreadable_manifest", msg)
            return
        kind = head.get("type") or head.get("@type") or ""
        version = 3 if "presentation/3" in str(head.get("@context", "")) else 2
        if kind in ("Manifest", "sc:Manifest"):
            yield from self._manifest(f, source, head, version)
        elif kind in ("Collection", "sc:Collection"):
            yield from self._collection(f, source, head, version, depth)
        else:
            msg = f"{source} is neither a IIIF Manifest nor a Collection (type {kind!r})"
            if top:
                raise DocumentError(msg, kind="not_iiif")
            yield DocProblem(source, "unreadable_manifest", msg)

    def _manifest(self, f: IO[bytes], source: str, head: dict[str, Any],
                  version: int) -> Iterator[Canvas | DocProblem]:
        self.manifests += 1
        if self.manifests > self.limits.max_manifests:
            raise _Stop(f"stopped at {self.limits.max_manifests:,} manifests (--max-manifests)")
        mid = str(head.get("id") or head.get("@id") or source)
        mlabel = label_text(head.get("label"))
        prefix = "items.item" if version == 3 else "sequences.item.canvases.item"
        parse = canvas_v3 if version == 3 else canvas_v2
        f.seek(0)
        try:
            for raw in ijson.items(f, prefix, use_float=True):
                self.canvases += 1
                if self.canvases > self.limits.max_canvases:
                    raise _Stop(f"stopped at {self.limits.max_canvases:,} canvases "
                                "(--max-canvases)")
                if isinstance(raw, dict):
                    yield parse(raw, mid, mlabel, source)
        except ijson.JSONError as e:
            yield DocProblem(source, "unreadable_manifest", f"{source} breaks off: {e}")

    def _collection(self, f: IO[bytes], source: str, head: dict[str, Any], version: int,
                    depth: int) -> Iterator[Canvas | DocProblem]:
        self.collections += 1
        if depth >= self.limits.max_depth:
            yield DocProblem(source, "unreadable_manifest", f"{source} is nested deeper than "
                             f"{self.limits.max_depth} collections (--max-depth); skipped")
            return
        prefixes = ("items.item",) if version == 3 else (
            "collections.item", "manifests.item", "members.item")
        for prefix in prefixes:
            f.seek(0)
            members = [(str(m.get("id") or m.get("@id") or ""), m.get("type") or m.get("@type"))
                       for m in ijson.items(f, prefix) if isinstance(m, dict)]
            for ref, _ in members:  # a collection lists references, a few hundred bytes each
                if not ref:
                    continue
                url = urljoin(source, ref) if urlsplit(source).scheme else ref
                yield from self._member(url, depth + 1)

    def _member(self, url: str, depth: int) -> Iterator[Canvas | DocProblem]:
        try:
            f = self._open(url, top=False)
        except FetchError as e:
            yield DocProblem(url, "unreadable_manifest", f"cannot read {url}: {e}")
            return
        with f:
            yield from self._document(f, url, depth, top=False)


def _header(f: IO[bytes]) -> dict[str, Any]:
    """The top-level scalars and the label of a document, read without its items."""
    f.seek(0)
    head: dict[str, Any] = {}
    builder: ijson.ObjectBuilder | None = None
    for prefix, event, value in ijson.parse(f, use_float=True):
        if prefix == "label" or prefix.startswith("label."):
            builder = builder or ijson.ObjectBuilder()
            builder.event(event, value)
            if prefix == "label" and event in ("end_map", "end_array", "string", "number"):
                head["label"] = builder.value
        elif "." not in prefix and event in ("string", "number") and prefix:
            head[prefix] = value
        elif prefix == "@context.item" and event == "string":
            head["@context"] = f"{head.get('@context', '')} {value}"
    return head


def label_text(label: Any) -> str | None:
    """One string from a v3 language map or a v2 string / @value list (English first)."""
    if label is None:
        return None
    if isinstance(label, str):
        return label
    if isinstance(label, dict):
        if "@value" in label:
            return str(label["@value"])
        for key in ("en", "none", *label):
            values = label.get(key)
            if values:
                return label_text(values[0] if isinstance(values, list) else values)
        return None
    if isinstance(label, list):
        english = [v for v in label if isinstance(v, dict) and v.get("@language") == "en"]
        return label_text((english or label)[0]) if label else None
    return str(label)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _size(obj: dict[str, Any], key: str) -> int | None:
    v = obj.get(key)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _service(value: Any) -> tuple[str | None, int | None]:
    for s in value if isinstance(value, list) else [value]:
        if not isinstance(s, dict):
            continue
        sid = s.get("id") or s.get("@id")
        kind = str(s.get("type") or s.get("@type") or "")
        ctx, profile = str(s.get("@context", "")), str(s.get("profile", ""))
        if kind == "ImageService3" or "image/3" in ctx:
            return (str(sid), 3) if sid else (None, None)
        if kind == "ImageService2" or "image/2" in ctx or "image/2" in profile:
            return (str(sid), 2) if sid else (None, None)
    return None, None


def _canvas(cid: str, label: Any, body: Any, fallback: dict[str, Any], mid: str,
            mlabel: str | None, source: str) -> Canvas:
    common = {"id": cid, "label": label_text(label), "manifest_id": mid,
              "manifest_label": mlabel, "manifest_source": source}
    if isinstance(body, dict) and body.get("type") in ("Choice", "oa:Choice"):
        body = _first(body.get("items")) or body.get("default")
    if not isinstance(body, dict):
        return Canvas(**common, error="the canvas has no image")
    sid, version = _service(body.get("service"))
    url = body.get("id") or body.get("@id")
    return Canvas(**common, service_id=sid, service_version=version,
                  image_url=str(url) if url else None,
                  width=_size(body, "width") or _size(fallback, "width"),
                  height=_size(body, "height") or _size(fallback, "height"),
                  error=None if (sid or url) else "the canvas image has neither id nor service")


def canvas_v3(c: dict[str, Any], mid: str, mlabel: str | None, source: str) -> Canvas:
    """A Presentation 3 canvas: items -> AnnotationPage -> painting Annotation -> body."""
    body = None
    for page in c.get("items") or []:
        for anno in (page.get("items") or []) if isinstance(page, dict) else []:
            if isinstance(anno, dict) and anno.get("motivation", "painting") == "painting":
                body = _first(anno.get("body"))
                break
        if body is not None:
            break
    return _canvas(str(c.get("id") or ""), c.get("label"), body, c, mid, mlabel, source)


def canvas_v2(c: dict[str, Any], mid: str, mlabel: str | None, source: str) -> Canvas:
    """A Presentation 2.1 canvas: images -> oa:Annotation -> resource."""
    image = _first(c.get("images"))
    body = image.get("resource") if isinstance(image, dict) else None
    return _canvas(str(c.get("@id") or c.get("id") or ""), c.get("label"), body, c, mid,
                   mlabel, source)
