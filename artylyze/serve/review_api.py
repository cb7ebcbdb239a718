"""The review routes: ``POST /v1/works/{id}/review`` (one event), ``GET
/v1/works/{id}/review`` (a work's answers), ``GET /v1/review`` (tasks, labels, whether
writes are on), ``GET /v1/review/queue`` (the next works to review) and the queue page at
``/review`` (one work at a time, driven from the keyboard).

Every refusal is the service's JSON error with a 4xx; see :mod:`artylyze.serve.review` for
the checks a write passes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request

from artylyze.serve.errors import BadRequest, NotFound, TooLarge
from artylyze.serve.pages import add_page
from artylyze.serve.review import MAX_BODY, QUEUE_MAX, ReviewDesk
from artylyze.serve.uploads import read_body

PAGE_FILES = {"review.js": "text/javascript; charset=utf-8",
              "review.css": "text/css; charset=utf-8"}


def _desk(service: Any) -> ReviewDesk:
    desk = getattr(service, "review", None)
    if desk is None:
        raise NotFound("no review store: serve with --meta and --review to review works")
    return desk


def add_review(app: FastAPI, service: Any) -> None:
    """The review API under ``/v1`` and the page at ``/review``."""
    app.include_router(_api(service), prefix="/v1")
    add_page(app, "/review", "review.html", "/review", PAGE_FILES, "review file")


def _api(service: Any) -> APIRouter:
    router = APIRouter(tags=["review"])
    catalog = service.catalog
    timeout = service.options.upload_timeout_s

    @router.get("/review")
    def review_info() -> dict[str, Any]:
        """Whether reviews can be written here, the tasks and their labels, counts."""
        desk = _desk(service)
        man = service.manifest
        answers = desk.current()
        per_task: dict[str, int] = {}
        for _, task in answers:
            per_task[task] = per_task.get(task, 0) + 1
        return {"writable": desk.writable, "store": desk.store.path.name,
                "tasks": list(desk.tasks), "labels": {t: list(v) for t, v in desk.classes.items()
                                                      if t in man.label_tasks},
                "custom_tasks": sorted(t for t in per_task if t not in desk.tasks),
                "reviewed": per_task, "works": catalog.count}

    @router.get("/review/queue")
    def review_queue(task: Annotated[str, Query(max_length=40)],
                     limit: Annotated[int, Query(ge=1, le=QUEUE_MAX)] = 20) -> dict[str, Any]:
        """The next unreviewed works for ``task``, the most useful first (least confident)."""
        desk = _desk(service)
        rows = desk.queue(task, limit)
        return {"task": task, "order": "least confident first",
                "works": [work_json(service, desk, r) for r in rows]}

    @router.get("/works/{work_id}/review")
    def work_review(work_id: str) -> dict[str, Any]:
        """A work with its top labels and the standing human answers per task."""
        desk = _desk(service)
        return work_json(service, desk, catalog.row(work_id))

    @router.post("/works/{work_id}/review", status_code=201)
    async def post_review(work_id: str, request: Request) -> dict[str, Any]:
        """Record one review event: `{"task", "action", "label", "reviewer"}` with the token
        in the `X-Review-Token` header. `action` is confirm (the machine's label, or the one
        given), correct, reject, set (a task of your own) or undo."""
        desk = _desk(service)
        desk.check_request(request.headers, request.headers.get("host"))
        row = catalog.row(work_id)
        body = await read_body(request, MAX_BODY, timeout)
        if len(body) > MAX_BODY:
            raise TooLarge(f"a review body is at most {MAX_BODY:,} bytes")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"the body is not valid JSON ({e})") from None
        return desk.record(desk.parse(row, data))

    return router


def work_json(service: Any, desk: ReviewDesk, row: int) -> dict[str, Any]:
    """What the queue page shows of a work: its card, top-k per task, human answers."""
    out = service.catalog.detail(row)
    out["human"] = desk.answers(row)
    return out
