"""Tag the canvases of a IIIF Manifest or Collection through the same run as a folder.

The IIIF walk (:mod:`artylyze.iiif.documents`) stands in for the folder walk and a fetch step
for the file read; the rest is the local engine unchanged: the lock, crash-safe parts,
the incremental state, the bounded window of jobs in flight (downloads overlap with decoding
and inference: the decode threads fetch, and the per-host limit keeps the server's load
polite however many threads wait), the merge.

- ``path`` is the canvas id; ``size`` is null and ``mtime_ns`` holds the canvas's *change
  key*: a 63-bit hash of the image service id (or the image URL without one) and the width
  and height the manifest states. A re-run fetches only canvases whose key is new or
  changed, so re-reading an unchanged manifest costs one request per document. An image
  replaced behind the same URL and size is not seen: ``--full`` fetches everything again.
- Rows carry :data:`artylyze.store.IIIF_COLUMNS`; a canvas that cannot be fetched or decoded
  is an error row saying why (HTTP status, timeout, not an image, too large), never a stop.
- Rows never take another canvas's result by equal content (``reuse`` off): each keeps its
  own IIIF columns.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace

from artylyze.iiif.documents import Canvas, DocProblem, Walker, WalkLimits
from artylyze.iiif.fetch import Fetcher, FetchError, FetchOptions
from artylyze.iiif.image_api import ImageRequest, choose_request, parse_info
from artylyze.imaging import ImageError, load_image
from artylyze.model.bundle import Bundle, resolve_providers, usable_cores
from artylyze.progress import Progress
from artylyze.store import IIIF_COLUMNS, OutputTarget
from artylyze.tagging import core
from artylyze.tagging.core import TagError, TagOptions
from artylyze.tagging.decode import DecodeJob, DecodeResult
from artylyze.tagging.summary import TagSummary
from artylyze.tagging.walk import FileEntry, WalkProblem, WalkResult

INFO_MAX_BYTES = 4 << 20
NOT_IMAGE_TYPES = ("text/", "application/json", "application/ld+json", "application/xml",
                   "application/xhtml")


@dataclass(frozen=True)
class ImageRef:
    """What the fetch step needs of a canvas (carried in ``DecodeJob.ref``)."""

    service_id: str | None
    image_url: str | None


def change_key(c: Canvas) -> int:
    """The canvas's change key (see the module docstring), as a signed 64-bit int."""
    text = f"{c.service_id or c.image_url}|{c.width}|{c.height}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def entry_of(c: Canvas) -> FileEntry:
    extra = (("iiif_manifest", c.manifest_id), ("iiif_manifest_label", c.manifest_label),
             ("iiif_canvas_label", c.label), ("iiif_service", c.service_id),
             ("iiif_manifest_source", c.manifest_source))
    return FileEntry(c.id, c.service_id or c.image_url or c.id, None, change_key(c),
                     error=c.error, error_kind="no_image", extra=extra,
                     ref=ImageRef(c.service_id, c.image_url))


@dataclass
class IiifSource:
    """A IIIF document (URL or local JSON file) as a :class:`core.Source`."""

    url: str
    fetcher: Fetcher
    limits: WalkLimits
    columns: tuple[str, ...] = IIIF_COLUMNS
    reuse: bool = False

    @property
    def root(self) -> str:
        return self.url if "://" in self.url else os.path.abspath(self.url)

    def walk(self, options: TagOptions, summary: TagSummary, progress: Progress) -> WalkResult:
        t0 = time.perf_counter()
        result, seen, dups = WalkResult(), set(), 0
        for item in Walker(self.fetcher, self.limits).walk(self.url):
            if isinstance(item, DocProblem):
                result.problems.append(WalkProblem(item.source, item.kind, item.message))
                core.warn(summary, progress, item.message)
            elif not item.id or item.id in seen:
                dups += 1
            else:
                seen.add(item.id)
                result.files.append(entry_of(item))
        if dups:
            core.warn(summary, progress, f"{dups:,} canvases without an id or listed twice "
                      "were tagged once")
        summary.stages.walk = time.perf_counter() - t0
        summary.files_seen = len(result.files)
        summary.walk_problems = result.problems
        if not result.files:
            raise TagError(f"no canvases found in {self.url}; nothing written")
        return result


class IiifDecoder:
    """The decode step of a IIIF run: info.json -> the request that suits the model ->
    image bytes -> sha256 and pixels. Never raises for a bad canvas (error result)."""

    def __init__(self, fetcher: Fetcher, size: int, resize: str, max_pixels: int,
                 max_bytes: int) -> None:
        self.fetcher, self.size, self.resize = fetcher, size, resize
        self.max_pixels, self.max_bytes = max_pixels, max_bytes

    def __call__(self, job: DecodeJob) -> DecodeResult:
        ref: ImageRef = job.ref
        full: tuple[int | None, int | None] = (None, None)
        try:
            if ref.service_id:
                req, full = self._request(ref.service_id)
            else:
                req = ImageRequest(str(ref.image_url), "full", "full")
            extra = (("iiif_image", req.url), ("iiif_region", req.region),
                     ("iiif_size", req.size))
            got = self.fetcher.get(req.url, accept="image/*", max_bytes=self.max_bytes)
        except FetchError as e:
            return DecodeResult(None, error=str(e), kind=e.kind)
        if got.content_type.lower().startswith(NOT_IMAGE_TYPES):
            return DecodeResult(None, error=f"{req.url} is not an image (Content-Type "
                                f"{got.content_type})", kind="not_image", extra=extra)
        sha = hashlib.sha256(got.content).hexdigest()
        try:
            img = load_image(got.content, size=self.size, resize=self.resize,
                             max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        except ImageError as e:
            return DecodeResult(sha, error=f"{req.url}: {e.reason}", kind=e.kind, extra=extra)
        width, height = (full if full[0] and full[1] else (img.width, img.height))
        return DecodeResult(sha, img.pixels, width, height, extra=extra)

    def _request(self, service_id: str) -> tuple[ImageRequest, tuple[int | None, int | None]]:
        url = f"{service_id.rstrip('/')}/info.json"
        got = self.fetcher.get(url, accept="application/ld+json, application/json",
                               max_bytes=INFO_MAX_BYTES)
        try:
            info = json.loads(got.content)
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except ValueError as e:
            raise FetchError(f"{url} is not an Image API info.json ({e})",
                             kind="not_iiif") from e
        service = parse_info(info, service_id)
        return choose_request(service, self.size, self.resize), (service.width, service.height)


def tag_iiif(url: str, out: str | os.PathLike[str], bundle: Bundle,
             options: TagOptions | None = None, fetch: FetchOptions | None = None,
             limits: WalkLimits | None = None, progress: Progress | None = None) -> TagSummary:
    """Tag every canvas of the IIIF Manifest or Collection at ``url`` (or a local JSON file)
    into ``out``; the same guarantees and errors as ``engine.tag_collection``, plus
    ``DocumentError`` when ``url`` itself cannot be read as IIIF."""
    from artylyze.tagging.engine import LocalPool

    options = options or TagOptions()
    options.check()
    resolve_providers(bundle.device)
    fetch = fetch or FetchOptions(max_bytes=options.max_bytes)
    # threads wait on the network, not on a core: more of them than cores keeps requests
    # to every host in flight; the window of jobs (4 x workers) stays bounded all the same
    workers = options.workers or max(usable_cores(), 2 * fetch.max_per_host)
    options = replace(options, executor="thread", workers=workers)
    with Fetcher(fetch) as fetcher:
        m = bundle.manifest
        decoder = IiifDecoder(fetcher, m.input_size, m.resize, options.max_pixels,
                              fetch.max_bytes)
        pool = LocalPool(bundle, options, decode=decoder)
        source = IiifSource(url, fetcher, limits or WalkLimits())
        summary = core.tag(url, OutputTarget.resolve(out), bundle.manifest, options, pool,
                           progress or Progress(), source=source)
        summary.requests, summary.bytes_fetched = fetcher.requests, fetcher.bytes
    return summary
