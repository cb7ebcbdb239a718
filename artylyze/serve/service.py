"""The verbs behind the API, free of HTTP: tag an upload, find works like it, show its
influences, describe and list the indexed works.

One process holds one bundle session, one index and one catalog. An upload is decoded on a
thread pool by the guarded loader, then its pixels join the micro-batcher's next inference
call; both steps run under one deadline, and the whole request under the admission limit
(see :mod:`artylyze.serve.limits`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any

import numpy as np

from artylyze.imaging import Decoded, ImageError, load_image
from artylyze.index.filenames import FileNames
from artylyze.index.influence import influence
from artylyze.index.search import Gallery, Query, describe
from artylyze.index.thumbs import encode_thumbnail
from artylyze.model.bundle import Bundle, usable_cores
from artylyze.model.predict import Prediction, predictions
from artylyze.serve.batching import MicroBatcher
from artylyze.serve.catalog import Catalog
from artylyze.serve.errors import BadImage, NotFound
from artylyze.serve.limits import Admission
from artylyze.serve.options import ServeOptions
from artylyze.serve.review import ReviewDesk, read_token
from artylyze.serve.uploads import Upload
from artylyze.store import build_row, make_schema

QUERY_TOP_K = 3  # labels per task shown beside similar works and influences
THUMB_PX = 192  # thumbnails rendered from the collection's files (packed ones keep their size)
THUMB_CACHE = 2048
GPU_BATCH = 16


def default_batch(bundle: Bundle) -> int:
    """Micro-batch on a GPU, where one call for 16 images costs about what one image does.
    On CPU onnxruntime already spreads one image over the cores, and batches cost more per
    image (measured on the project's 2-core machine: 32 ms at 1, 38-44 ms at 16; the load
    benchmark served 36 requests/s unbatched against 33 batched), so there the default is 1."""
    return GPU_BATCH if bundle.provider.startswith("CUDA") else 1


class Service:
    """Everything one server process answers with; build it with :meth:`open`."""

    def __init__(self, gallery: Gallery, catalog: Catalog, options: ServeOptions) -> None:
        self.gallery = gallery
        self.catalog = catalog
        self.options = options
        self.bundle: Bundle = gallery.bundle  # checked against the index's model
        self.manifest = self.bundle.manifest
        self.admission = Admission(options.max_inflight, options.retry_after_s)
        self.decoder = ThreadPoolExecutor(options.decode_threads or usable_cores(),
                                          thread_name_prefix="artylyze-decode")
        self.batcher = MicroBatcher(self.bundle.run, options.max_batch or default_batch(
            self.bundle), options.batch_wait_ms / 1000)
        self._schema = make_schema(self.manifest)
        self.review: ReviewDesk | None = None  # see open_review
        self.thumbnail_bytes = lru_cache(THUMB_CACHE)(self._render_thumbnail)

    @classmethod
    def open(cls, options: ServeOptions) -> Service:
        """Load the index (the shipped gallery by default), its bundle and the catalog."""
        options.check()
        threads = options.threads or max(1, usable_cores() // options.workers)
        # a server's idle onnxruntime threads must not spin and burn the cores
        names = None if options.filename_pattern is None else FileNames(options.filename_pattern)
        gallery = Gallery.open(options.index, bundle_dir=options.bundle, device=options.device,
                               threads=threads, spin=False, names=names)
        catalog = Catalog.open(gallery, options.collection, options.meta, options.root_path)
        service = cls(gallery, catalog, options)
        service.open_review()
        return service

    def open_review(self) -> None:
        """The review store beside ``--meta`` (read-only unless ``--review``), if any; its
        human answers then show with every work."""
        man = self.manifest
        classes = {t.name: t.labels for t in man.tasks if t.kind == "class"}
        token = self.options.review_token or (read_token(self.options.review_token_file)
                                              if self.options.review else None)
        self.review = ReviewDesk.open(self.catalog, self.options.meta, self.options.review_store,
                                      self.options.review, token, classes, man.model_id)
        if self.review is not None:
            self.catalog.reviews = self.review.answers

    def warm_up(self) -> None:
        """Create the session, run it once and load the packed thumbnails, so the first
        request is not the slow one."""
        size = self.manifest.input_size
        self.bundle.run(np.zeros((1, size, size, 3), np.uint8))
        if self.catalog.count:
            self.gallery.index.packed_thumbnail(0)

    def info(self) -> dict[str, Any]:
        """What a client needs to build its forms: tasks, labels, facets, sorts, limits."""
        man = self.manifest
        cat = self.catalog
        labels = {t.name: list(t.labels) for t in man.tasks if t.kind == "class"}
        meta = None if cat.meta is None else {"rows": cat.meta.total, "errors": cat.meta.errors,
                                              "matched": cat.meta.matched}
        return {
            "model": man.model_id, "tasks": list(man.label_tasks), "labels": labels,
            "works": cat.count, "facets": list(cat.tasks),
            "confident": list(cat.confident_tasks), "novelty": cat.has_novelty,
            "sorts": [s for s in ("id", "title", "artist", "year", "novelty", "confidence")
                      if s != "novelty" or cat.has_novelty],
            "images": cat.root is not None, "meta": meta,
            "limits": {"max_upload_bytes": self.options.max_upload_bytes,
                       "max_pixels": self.options.max_pixels, "max_k": self.options.max_k,
                       "max_page": self.options.max_page},
        }

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.manifest.model_id, "works": self.catalog.count,
                "inflight": self.admission.inflight, "waiting": self.batcher.waiting,
                "refused": self.admission.refused,
                "batching": {"max": self.batcher.max_batch, **self.batcher.stats.to_dict()}}

    # -- uploads ----------------------------------------------------------------------------
    async def predict(self, upload: Upload, top_k: int = QUERY_TOP_K
                      ) -> tuple[Decoded, Prediction]:
        """Decode and infer, under the deadline."""
        return await self.admission.within(self._predict(upload, top_k), self.options.timeout_s,
                                           "decoding and inference")

    async def _predict(self, upload: Upload, top_k: int) -> tuple[Decoded, Prediction]:
        man = self.manifest
        decode = partial(load_image, upload.data, man.input_size, man.resize,
                         max_pixels=self.options.max_pixels)
        try:
            decoded = await asyncio.get_running_loop().run_in_executor(self.decoder, decode)
        except ImageError as e:
            raise BadImage(f"cannot decode the upload: {e.reason}") from None
        outputs = await self.batcher.submit(decoded.pixels)
        return decoded, predictions(outputs, man, top_k)[0]

    async def tag(self, upload: Upload, top_k: int = 3, embedding: bool = True
                  ) -> dict[str, Any]:
        """The upload as a meta.parquet row: the same columns, in the same order."""
        decoded, pred = await self.predict(upload, top_k)
        row = build_row(upload.name, len(upload.data), None, sha256=upload.sha256,
                        model=self.manifest.model_id, tagged_at=dt.datetime.now(dt.timezone.utc),
                        width=decoded.width, height=decoded.height, prediction=pred)
        out = {name: jsonable(row.get(name)) for name in self._schema.names}
        if not embedding:
            del out["embedding"]
        return out

    async def upload_query(self, upload: Upload) -> Query:
        """A query for an upload; the same bytes as an indexed work keep that work's id, so
        it is left out of its own neighbours."""
        _, pred = await self.predict(upload)
        query = self.gallery.embedded_query(upload.name, pred.embedding.astype(np.float32),
                                            *describe(pred))
        query.row = self.catalog.by_sha256(upload.sha256)
        return query

    # -- answers for a query ----------------------------------------------------------------
    def similar(self, query: Query, k: int, source: str) -> dict[str, Any]:
        """The ``k`` nearest works, each as its catalog summary with rank and score."""
        results = [{"rank": r["rank"], "score": r["score"], **self.catalog.summary(r["id"]),
                    "copies": r.get("copies_count", 0)}  # other files of this work, not shown
                   for r in self.gallery.similar(query, k)]
        return {"query": query_json(query, source), "results": results}

    def influence(self, query: Query, top: int, source: str) -> dict[str, Any]:
        """GMM membership over the collection's clusters, with the top clusters' themes."""
        result = influence(self.gallery, query, top=top)
        return {"query": query_json(query, source), "posterior": result["posterior"],
                "top": result["top"]}

    # -- pictures -----------------------------------------------------------------------------
    def thumbnail(self, row: int) -> tuple[bytes, str]:
        """A work's small picture: packed in the index, else made from its file."""
        packed = self.gallery.index.packed_thumbnail(row)
        if packed is not None:
            return packed, "image/webp"
        data = self.thumbnail_bytes(row)
        if data is None:
            raise NotFound(f"work {row} has no picture: the index has no thumbnails and its "
                           "file is not readable under the collection folder")
        return data, "image/webp"

    def _render_thumbnail(self, row: int) -> bytes | None:
        file = self.catalog.file(row)
        return encode_thumbnail(file, THUMB_PX) if file is not None else None

    async def aclose(self) -> None:
        await self.batcher.aclose()

    def close(self) -> None:
        self.batcher.shutdown()
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self.gallery.close()
        if self.review is not None:
            self.review.close()


def query_json(query: Query, source: str) -> dict[str, Any]:
    """What an answer says about its query: ``source`` is ``upload`` or ``index``; ``id``
    is the indexed work it is (or whose bytes it has), else null."""
    return {"name": query.name, "source": source, "id": query.row,
            "predicted": query.predicted, "estimated": query.estimated}


def jsonable(value: Any) -> Any:
    """A row value as JSON: arrays as lists, times in ISO 8601."""
    if isinstance(value, np.ndarray):
        return [float(x) for x in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def duplicates_page(service: Service, limit: int = 200) -> str:
    """The registrar's page of the served index: exact copies (sha256) and near copies
    whose embeddings agree >= 0.97 (no pixels are read in the server; `artylyze duplicates`
    checks them), one contact sheet per group. Computed once, then kept."""
    cached = getattr(service, "_duplicates_page", None)
    if cached is not None:
        return cached
    from artylyze.duplicates.find import Options, find_duplicates
    from artylyze.duplicates.page import groups_html
    from artylyze.duplicates.source import Collection
    from artylyze.index.faiss_index import reconstruct
    from artylyze.index.thumbs import row_image

    index = service.gallery.index
    rows = list(range(index.count))
    column = service.gallery.column
    collection = Collection(index.path, index.root, [str(p) for p in column("path")],
                            column("sha256"), column("width"), column("height"),
                            reconstruct(index.index, rows) if rows else
                            np.zeros((0, index.index.d), np.float32))
    found = find_duplicates(collection, Options(check=None), load=lambda _i: None)
    by_path = {p: i for i, p in enumerate(collection.paths)}
    text = groups_html(found.table, lambda p: row_image(index, by_path[p], 160),
                       title="Duplicate groups (embeddings >= 0.97 or same bytes)", limit=limit)
    service._duplicates_page = text
    return text
