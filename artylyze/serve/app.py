"""The HTTP face of :class:`~artylyze.serve.service.Service`: the versioned JSON API under
``/v1``, OpenAPI docs at ``/docs``, the page at ``/``, ``/healthz``.

Every refusal is JSON ``{"error": {"status", "kind", "message"}}`` with a 4xx (or a 503 and
``Retry-After``); only a bug gives a 500. Uploads are read by :mod:`~artylyze.serve.uploads`
rather than by FastAPI's form parsing, so the size limit, the deadline and the sniffing
happen before anything else sees the bytes.
"""


import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from artylyze import __version__
from artylyze.index.search import Query as ImageQuery
from artylyze.serve.catalog import WorkQuery
from artylyze.serve.errors import BadRequest, NotFound, ServeError
from artylyze.serve.files import open_image
from artylyze.serve.jsonbody import parse_json
from artylyze.serve.middleware import AccessLog, SecurityHeaders
from artylyze.serve.pages import add_page
from artylyze.serve.review_api import add_review
from artylyze.serve.service import Service
from artylyze.serve.uploads import Upload, check_length, read_body, read_upload

T = TypeVar("T")
log = logging.getLogger("artylyze.serve")
MAX_JSON = 16 * 1024
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
DUPLICATES_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
CACHE_PICTURE = {"Cache-Control": "public, max-age=86400"}
UPLOAD = {"multipart/form-data": {"schema": {
              "type": "object", "required": ["image"],
              "properties": {"image": {"type": "string", "format": "binary"}}}},
          "image/*": {"schema": {"type": "string", "format": "binary"}}}
BY_ID = {"application/json": {"schema": {
    "type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}
ERRORS = {status: {"description": text, "content": {"application/json": {"example": {
              "error": {"status": status, "kind": kind, "message": "why"}}}}}
          for status, kind, text in (
              (400, "bad_request", "unusable body or parameter"),
              (404, "not_found", "no such work"),
              (408, "upload_timeout", "the upload did not arrive in time"),
              (413, "too_large", "upload over the size limit"),
              (415, "not_an_image", "not JPEG, PNG, WebP, TIFF, BMP or GIF"),
              (422, "bad_image", "truncated, corrupt, too many pixels, or a bad parameter"),
              (503, "busy", "too many uploads in progress, or past the deadline; "
                            "see Retry-After"))}


def create_app(service: Service) -> FastAPI:
    """The ASGI app over one service; the lifespan closes it on shutdown."""
    opts = service.options

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await service.aclose()
        service.close()

    app = FastAPI(title="ArtyLyze", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Tag artworks, find similar works and influences, and browse "
                  "an indexed collection. Errors are `{\"error\": {status, kind, message}}`.")
    _error_handlers(app)
    app.include_router(_api(service), prefix="/v1")
    _page(app, service)
    add_review(app, service)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness and load: in-flight uploads, queued images, batch sizes so far."""
        return service.health()

    if opts.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(opts.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app


def _api(service: Service) -> APIRouter:
    opts = service.options
    catalog = service.catalog
    router = APIRouter()
    K = Annotated[int, Query(ge=1, le=opts.max_k, description="How many results.")]
    TOP = Annotated[int, Query(ge=1, le=20, description="Labels per task.")]

    async def with_upload(request: Request, work: Callable[[Upload], Awaitable[T]]) -> T:
        check_length(request, opts.max_upload_bytes)
        async with service.admission.slot():
            upload = await read_upload(request, opts.max_upload_bytes, opts.upload_timeout_s)
            return await work(upload)

    async def json_row(request: Request) -> int | None:
        """The ``id`` of a JSON body, or None when the body is an upload."""
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None
        data = parse_json(await read_body(request, MAX_JSON, opts.upload_timeout_s))
        if not isinstance(data, dict) or isinstance(data.get("id"), bool) or \
                not isinstance(data.get("id"), (int, str)):
            raise BadRequest('expected {"id": <work id>} or an uploaded image')
        return catalog.row(data["id"])

    async def answer(request: Request, reply: Callable[[ImageQuery, str], dict[str, Any]]
                     ) -> dict[str, Any]:
        """``reply`` for the work named by a JSON ``{"id": N}`` body, or for an upload."""
        row = await json_row(request)
        if row is not None:
            return reply(service.gallery.stored_query(row), "index")

        async def uploaded(upload: Upload) -> dict[str, Any]:
            return reply(await service.upload_query(upload), "upload")
        return await with_upload(request, uploaded)

    @router.get("/info", tags=["service"])
    def info() -> dict[str, Any]:
        """The model, its tasks and labels, the facets and sorts this collection has, limits."""
        return service.info()

    @router.post("/tag", tags=["images"], responses=ERRORS,
                 openapi_extra={"requestBody": {"required": True, "content": UPLOAD}})
    async def tag(request: Request, top_k: TOP = 3, embedding: bool = True) -> dict[str, Any]:
        """Tag an uploaded image: the fields of a meta.parquet row (labels with scores,
        top-k, confident flags, date, novelty and the embedding, as the model gives them)."""
        return await with_upload(request, lambda u: service.tag(u, top_k, embedding))

    @router.post("/similar", tags=["images"], responses=ERRORS,
                 openapi_extra={"requestBody": {"required": True,
                                                "content": {**UPLOAD, **BY_ID}}})
    async def similar(request: Request, k: K = 10) -> dict[str, Any]:
        """The k indexed works nearest to an uploaded image, or to `{"id": N}`."""
        return await answer(request, lambda query, source: service.similar(query, k, source))

    @router.post("/influence", tags=["images"], responses=ERRORS,
                 openapi_extra={"requestBody": {"required": True,
                                                "content": {**UPLOAD, **BY_ID}}})
    async def influence(request: Request,
                        top: Annotated[int, Query(ge=1, le=50)] = 5) -> dict[str, Any]:
        """Predicted labels and the collection's clusters an image draws on, with themes."""
        return await answer(request,
                            lambda query, source: service.influence(query, top, source))

    @router.get("/works", tags=["works"], responses={400: ERRORS[400]})
    def works(request: Request, confident: bool | None = None, task: str | None = None,
              q: Annotated[str | None, Query(max_length=200)] = None, sort: str = "id",
              offset: Annotated[int, Query(ge=0)] = 0,
              limit: Annotated[int, Query(ge=1, le=opts.max_page)] = 48) -> dict[str, Any]:
        """Filter, sort and page through the indexed works. Filter by predicted label with
        one parameter per facet (`GET /v1/info` lists them), repeatable:
        `?style=Cubism&style=Fauvism&genre=portrait`. `confident` looks at `task` (default:
        the first); `sort` is id, title, artist, year, novelty (most novel first) or
        confidence (least confident first), `-` reverses."""
        known = {"confident", "task", "q", "sort", "offset", "limit"}
        labels: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            if key not in known and value:
                labels.setdefault(key, []).append(value)
        return catalog.search(WorkQuery({k: tuple(v) for k, v in labels.items()}, confident,
                                        task, q, sort, offset, limit))

    @router.get("/works/{work_id}", tags=["works"], responses={404: ERRORS[404]})
    def work(work_id: str) -> dict[str, Any]:
        """One work: its labels (predicted, recorded), estimates, theme and picture links."""
        return catalog.detail(catalog.row(work_id))

    @router.get("/works/{work_id}/similar", tags=["works"], responses={404: ERRORS[404]})
    def work_similar(work_id: str, k: K = 10) -> dict[str, Any]:
        """The k works nearest to an indexed work (itself left out)."""
        return service.similar(service.gallery.stored_query(catalog.row(work_id)), k, "index")

    @router.get("/works/{work_id}/thumbnail", tags=["works"], responses={404: ERRORS[404]},
                response_class=Response)
    def thumbnail(work_id: str) -> Response:
        """A small WebP of the work (packed in the index, or made from its file)."""
        data, media_type = service.thumbnail(catalog.row(work_id))
        return Response(data, media_type=media_type, headers=CACHE_PICTURE)

    @router.get("/works/{work_id}/image", tags=["works"], responses={404: ERRORS[404]},
                response_class=Response)
    def image(work_id: str) -> Response:
        """The work's own file, when the collection folder is served and holds it."""
        row = catalog.row(work_id)
        file = catalog.file(row)
        opened = open_image(file) if file is not None else None
        if opened is None:
            raise NotFound(f"the file of work {row} is not available here (serve with "
                           "--collection DIR, the folder the index was built from)")
        return StreamingResponse(opened.chunks(), media_type=opened.media_type,
                                 headers={**CACHE_PICTURE, "Content-Length": str(opened.size)})

    return router


def _page(app: FastAPI, service: Service) -> None:
    """The web page: three fixed files from the package, nothing looked up by path."""
    add_page(app, "/", "index.html", "/static", STATIC, "static file")

    @app.get("/duplicates", include_in_schema=False)
    def duplicates() -> Response:  # server-made HTML: inline style and images, no script
        from artylyze.serve.service import duplicates_page

        return Response(duplicates_page(service), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": DUPLICATES_CSP})


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def refused(_: Request, e: ServeError) -> JSONResponse:
        return JSONResponse(e.body(), e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        message = (f"no route {request.url.path[:200]!r}" if e.status_code == 404
                   else str(e.detail))
        body = {"error": {"status": e.status_code, "kind": kinds.get(e.status_code, "http"),
                          "message": message}}
        return JSONResponse(body, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in err['loc'][1:]) or err['loc'][0]}: {err['msg']}"
                 for err in e.errors()]
        body = {"error": {"status": 422, "kind": "invalid_parameter",
                          "message": "; ".join(parts)}}
        return JSONResponse(body, 422)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        rid = request.scope.get("state", {}).get("request_id")
        log.error("request %s failed", rid, exc_info=e)
        body = {"error": {"status": 500, "kind": "internal",
                          "message": f"internal error (request {rid}); see the server log"}}
        return JSONResponse(body, 500)
