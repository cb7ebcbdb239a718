"""Reviewing in the service: what people said about each work, and the checks a write must
pass before it becomes an event in the review store.

Reading is always on when a review store lies beside ``--meta`` (a work's answer shows in
the API and the page); writing only with ``serve --review``. Then every write needs the
token printed at start (or read from ``--review-token-file``) in the ``X-Review-Token``
header, never in a URL; a JSON body (``Content-Type: application/json``, at most
:data:`MAX_BODY` bytes); no cross-site origin (``Origin`` must be this host,
``Sec-Fetch-Site`` same-origin), and a reviewer's name. A custom header and a JSON type
already make a browser ask first (a CORS preflight this service never grants for it), the
origin checks refuse what gets through anyway.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from artylyze.review import HumanLabel, ReviewError, ReviewStore, review_path
from artylyze.serve.catalog import Catalog
from artylyze.serve.errors import BadRequest, ServeConfigError, ServeError

TOKEN_HEADER = "X-Review-Token"
MAX_BODY = 4096
TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
QUEUE_MAX = 200
#: The queue reads the index's vectors only while they take less memory than this: above
#: it (about 260,000 works of 256 dims) it orders by the scores alone, as without vectors.
EMBEDDINGS_MAX_BYTES = 256 << 20


class Unauthorized(ServeError, status=401, kind="unauthorized"):
    """A review write without the right token."""


class Forbidden(ServeError, status=403, kind="forbidden"):
    """Reviewing is off, or the request comes from another site."""


class NotJson(ServeError, status=415, kind="not_json"):
    """A review write whose body is not declared as JSON."""


def queue_order(scores: np.ndarray, embeddings: np.ndarray | None, reviewed: np.ndarray,
                reviewed_labels: list[str | None], predicted: list[str | None],
                k: int = 10) -> np.ndarray:
    """Indices of the unreviewed works, the one whose label helps most first: the one place
    the queue's order is decided, :func:`artylyze.teach.queue.review_order` (least confident
    plus disagreement with the nearest reviewed works; NaN scores, e.g. a task the model
    does not have, last; ``embeddings``, aligned to the index rows, may be None: see
    :meth:`ReviewDesk.embeddings`)."""
    from artylyze.teach.queue import review_order

    return review_order(scores, embeddings, reviewed, reviewed_labels, predicted, k)


def read_token(path: Path | None) -> str:
    """The token from a file (its first line), else a new random one."""
    if path is None:
        return secrets.token_urlsafe(24)
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as e:
        raise ServeConfigError(f"--review-token-file {path}: cannot read a token ({e})") from e
    if len(token) < 16:
        raise ServeConfigError(f"--review-token-file {path}: the token must have at least "
                               "16 characters")
    return token


@dataclass(frozen=True)
class Write:
    """A checked review write: which work, task, action and label, by whom."""

    row: int
    task: str
    action: str
    label: str | None
    reviewer: str


class ReviewDesk:
    """The review store as the service sees it: current answers (re-read when another
    process wrote), the queue, and writes that pass the checks above."""

    def __init__(self, store: ReviewStore, catalog: Catalog, classes: dict[str, tuple[str, ...]],
                 model: str, token: str | None) -> None:
        self.store = store
        self.catalog = catalog
        self.classes = classes  # built-in class tasks -> labels
        self.model = model
        self.token = token  # None: read-only
        self._lock = threading.Lock()
        self._seen = -1
        self._current: dict[tuple[str, str], HumanLabel] = {}
        self._vectors: np.ndarray | None = None
        self._vectors_read = False
        self._vectors_lock = threading.Lock()  # apart: a first read must not block writes

    @classmethod
    def open(cls, catalog: Catalog, meta: Path | None, store: Path | None, writable: bool,
             token: str | None, classes: dict[str, tuple[str, ...]], model: str
             ) -> ReviewDesk | None:
        """The desk for ``serve``: None when there is no store and reviewing is off."""
        path = store or (review_path(meta) if meta is not None else None)
        if path is None:
            if writable:
                raise ServeConfigError("--review needs --meta (the review store is the file "
                                       "beside it) or --review-store FILE")
            return None
        if not writable and not path.exists():
            return None
        try:
            opened = ReviewStore.open(path, create=writable)
        except ReviewError as e:
            raise ServeConfigError(str(e)) from e
        return cls(opened, catalog, classes, model, token if writable else None)

    @property
    def writable(self) -> bool:
        return self.token is not None

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.catalog.tasks

    def current(self) -> dict[tuple[str, str], HumanLabel]:
        """The standing answers, re-read only when the store has new events."""
        with self._lock:
            latest = self.store.count()
            if latest != self._seen:
                self._current, self._seen = self.store.current(), latest
            return self._current

    def answers(self, row: int) -> dict[str, dict[str, Any]]:
        """task -> the standing human answer for one work."""
        sha = self.catalog.gallery.column("sha256")[row]
        if not sha:
            return {}
        return {task: answer_json(h) for (_, task), h in self.store.current(sha256=sha).items()}

    # -- the queue ----------------------------------------------------------------------
    def queue(self, task: str, limit: int) -> list[int]:
        """Up to ``limit`` unreviewed works for ``task``, the most useful first."""
        col = self.catalog.gallery.column
        shas = col("sha256")
        answered = {s: h.label for (s, t), h in self.current().items() if t == task}
        reviewed = np.array([s in answered for s in shas], bool)
        labels = [answered.get(s) for s in shas]
        if task in self.tasks:
            scores = np.array([np.nan if v is None else float(v) for v in col(f"{task}_score")])
            predicted = list(col(task))
        else:
            scores = np.full(len(shas), np.nan)
            predicted = [None] * len(shas)
        order = queue_order(scores, self.embeddings(), reviewed, labels, predicted)
        return [int(i) for i in order[:limit]]

    def embeddings(self) -> np.ndarray | None:
        """The index's vectors [count, dim] in row order, L2-normalized, read once per
        service (the first queue request) so the queue can rank up works whose nearest
        reviewed neighbours got another label than the model's. None where they would take
        at least :data:`EMBEDDINGS_MAX_BYTES` or the index type cannot return them: the
        queue is then the least confident first."""
        with self._vectors_lock:
            if not self._vectors_read:
                self._vectors = index_vectors(self.catalog.gallery.index)
                self._vectors_read = True
            return self._vectors

    # -- writes ------------------------------------------------------------------------
    def check_request(self, headers: Any, host: str | None) -> None:
        """Authority and origin, before the body is read."""
        if not self.writable:
            raise Forbidden("reviewing is off: start the service with `artylyze serve "
                            "--review` to record reviews")
        given = headers.get(TOKEN_HEADER.lower()) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Unauthorized(f"a review needs the token in the {TOKEN_HEADER} header (printed "
                               "when the service started)" if not given else
                               "wrong review token")
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise Forbidden(f"cross-site review refused (Sec-Fetch-Site: {site[:40]})")
        origin = headers.get("origin")
        if origin is not None and (host is None or urlsplit(origin).netloc != host):
            raise Forbidden(f"cross-site review refused (Origin {origin[:80]!r} is not this "
                            "host)")
        if not (headers.get("content-type") or "").startswith("application/json"):
            raise NotJson("a review is a JSON body: Content-Type: application/json")

    def parse(self, row: int, data: Any) -> Write:
        """A body ``{task, action, label, reviewer}`` as a checked write (400 with why)."""
        if not isinstance(data, dict):
            raise BadRequest('expected {"task", "action", "label", "reviewer"}')
        unknown = set(data) - {"task", "action", "label", "reviewer"}
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(map(str, unknown)))[:200]}")
        reviewer = data.get("reviewer")
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise BadRequest("a review needs the reviewer's name (type it in the page)")
        task, action, label = data.get("task"), data.get("action"), data.get("label")
        if not isinstance(task, str) or not (task in self.tasks or TASK_NAME.fullmatch(task)):
            raise BadRequest(f"unknown task {str(task)[:60]!r}: the model's tasks are "
                             f"{', '.join(self.tasks)}; a new task is named in lower case "
                             "(letters, digits, _)")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise BadRequest("label must be a non-empty text or null")
        label = label.strip() if label is not None else None
        machine = self._machine(row, task)[0]
        if action in ("confirm", "correct", "set"):
            label = label if label is not None else (machine if action == "confirm" else None)
            if label is None:
                raise BadRequest(f"{action} needs a label" + (" (the model gave none)"
                                                               if action == "confirm" else ""))
            if task in self.classes and label not in self.classes[task]:
                raise BadRequest(f"{label[:80]!r} is not a {task} label")
            action = "set" if task not in self.tasks else (
                "confirm" if label == machine else "correct")
        elif action in ("reject", "undo"):
            if label is not None:
                raise BadRequest(f"{action} takes no label")
            if action == "reject" and machine is None:
                raise BadRequest(f"nothing to reject: the model gave no {task} label")
        else:
            raise BadRequest("action must be confirm, correct, reject, set or undo")
        return Write(row, task, action, label, reviewer.strip())

    def record(self, w: Write) -> dict[str, Any]:
        """Append the event; returns it and the work's standing answer for the task."""
        sha = self.catalog.gallery.column("sha256")[w.row]
        if not sha:
            raise BadRequest(f"work {w.row} has no sha256 in the index, so it cannot be "
                             "reviewed (rebuild the index)")
        machine, score = self._machine(w.row, w.task)
        try:
            event = self.store.add(sha256=sha, path=self.catalog.gallery.column("path")[w.row],
                                   task=w.task, action=w.action, label=w.label,
                                   reviewer=w.reviewer, machine_label=machine,
                                   machine_score=score, model=self.model)
        except ReviewError as e:
            raise BadRequest(str(e)) from None
        standing = self.answers(w.row).get(w.task)
        return {"event": {"id": event.id, "action": event.action, "label": event.label,
                          "task": event.task, "reviewer": event.reviewer, "at": event.at,
                          "undoes": event.undoes},
                "id": w.row, "task": w.task, "human": standing}

    def _machine(self, row: int, task: str) -> tuple[str | None, float | None]:
        if task not in self.tasks:
            return None, None
        col = self.catalog.gallery.column
        score = col(f"{task}_score")[row]
        return col(task)[row], None if score is None else float(score)

    def close(self) -> None:
        self.store.close()


def index_vectors(index: Any, max_bytes: int = EMBEDDINGS_MAX_BYTES,
                  batch: int = 8192) -> np.ndarray | None:
    """The stored vectors of an opened index dir, one row per index row, L2-normalized
    again (compressed codes return them only approximately); None when too big or not
    returnable (then the queue uses the scores alone, which is what it did before)."""
    from artylyze.index.errors import IndexStoreError
    from artylyze.index.faiss_index import reconstruct

    n, dim = int(index.count), int(index.index.d)
    if n == 0 or n * dim * 4 >= max_bytes or int(index.index.ntotal) != n:
        return None
    out = np.empty((n, dim), np.float32)
    try:
        for s in range(0, n, batch):
            out[s:s + batch] = reconstruct(index.index, list(range(s, min(n, s + batch))))
    except IndexStoreError:
        return None
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.where(norms > 0, norms, 1.0)  # in place: no second copy of a big matrix
    return out


def answer_json(h: HumanLabel) -> dict[str, Any]:
    return {"label": h.label, "action": h.action, "reviewer": h.reviewer, "at": h.at,
            "machine_label": h.machine_label}
