"""The review store: what people said about the machine's labels, kept forever in one SQLite
file beside the collection's meta.parquet (``meta.parquet.review.sqlite``).

Why SQLite and events: a cataloguer's correction must outlive every re-run of ``tag``, many
reviewers may write at once, and a later reader must see who said what, when, and what the
machine said then (Label Studio keeps a human answer beside the prediction it answered).
So the one table is append-only; the current human label of a (work, task) is derived: its
latest event that no ``undo`` took back. Works are keyed by ``sha256`` of their bytes, so a
moved or renamed file keeps its review; ``path`` is kept for people.

Safety: WAL mode (readers never block the writer), ``synchronous=FULL`` (a committed event
survives a crash), one short ``BEGIN IMMEDIATE`` transaction per write and a busy timeout,
so concurrent writers (threads, processes, HTTP clients) wait their turn instead of losing
an event. The schema version is ``PRAGMA user_version`` and the file is marked as ours with
``PRAGMA application_id``; a newer or foreign database is refused, never changed.

The file itself (schema, version checks, WAL, transactions) is :mod:`artylyze.review.sqlite`.

May import: the foundations only (the layer sits just above :mod:`artylyze.store`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from artylyze.review.sqlite import (
    BUSY_TIMEOUT_MS,
    ReviewError,
    Transaction,
    prepared,
)

SUFFIX = ".review.sqlite"
ACTIONS = ("confirm", "correct", "reject", "set", "undo")
NEEDS_LABEL = ("confirm", "correct", "set")
MAX_TEXT = 500  # characters of a task, label or reviewer name
_SHA256 = re.compile(r"[0-9a-f]{64}")

_COLUMNS = ("id", "sha256", "path", "task", "action", "label", "reviewer", "at",
            "machine_label", "machine_score", "model", "undoes")


@dataclass(frozen=True)
class HumanLabel:
    """The current human answer for one (work, task): ``label`` is None when the latest
    event rejects the machine's label without giving another."""

    sha256: str
    path: str
    task: str
    label: str | None
    action: str
    reviewer: str
    at: str
    machine_label: str | None = None  # what the machine said when the person answered
    machine_score: float | None = None
    model: str | None = None
    event: int = 0  # the event id this answer comes from


@dataclass(frozen=True)
class Event:
    """One row of the events table, as written."""

    id: int
    sha256: str
    path: str
    task: str
    action: str
    label: str | None
    reviewer: str
    at: str
    machine_label: str | None
    machine_score: float | None
    model: str | None
    undoes: int | None


def review_path(meta: str | os.PathLike[str]) -> Path:
    """Where the review store of an output lives: ``meta.parquet`` ->
    ``meta.parquet.review.sqlite`` beside it (a part folder ``meta/`` -> ``meta.review.sqlite``,
    outside the folder that ``tag`` replaces as a whole)."""
    path = Path(os.path.abspath(os.fspath(meta)))
    return path.parent / (path.name + SUFFIX)


def now_text() -> str:
    """UTC time as RFC 3339 with microseconds: sorts as text, reads anywhere."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _text(name: str, value: object, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise ReviewError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ReviewError(f"{name} must be text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ReviewError(f"{name} must not be empty")
    if len(value) > MAX_TEXT:
        raise ReviewError(f"{name} is longer than {MAX_TEXT} characters")
    return value or None


class ReviewStore:
    """One review store file; safe to share between threads (one lock per store) and to open
    from many processes at once (SQLite's locks)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> ReviewStore:
        """Open (and with ``create``, make) the store at ``path``; refuses a file that is not
        an ArtyLyze review store, or one written by a newer ArtyLyze."""
        path = Path(path)
        if not path.exists() and not create:
            raise ReviewError(f"{path}: no review store (review some works first, or "
                              "`artylyze review import`)")
        if path.exists() and path.is_dir():
            raise ReviewError(f"{path}: a folder, not a review store")
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise ReviewError(f"{path}: cannot open the review store ({e})") from e
        try:
            prepared(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------
    def add(self, *, sha256: str, path: str, task: str, action: str, reviewer: str,
            label: str | None = None, machine_label: str | None = None,
            machine_score: float | None = None, model: str | None = None,
            at: str | None = None) -> Event:
        """Append one event (committed when this returns). ``undo`` takes back the latest
        answer still standing for the (work, task); there must be one."""
        return self.add_many([dict(sha256=sha256, path=path, task=task, action=action,
                                   reviewer=reviewer, label=label, machine_label=machine_label,
                                   machine_score=machine_score, model=model, at=at)])[0]

    def add_many(self, events: Iterable[dict[str, object]]) -> list[Event]:
        """Append several events in one transaction: all are recorded, or none (an import)."""
        rows = [_checked(e) for e in events]
        with self._lock, self._write() as conn:
            out = []
            for row in rows:
                if row["action"] == "undo":
                    row["undoes"] = self._standing(conn, row["sha256"], row["task"])
                cur = conn.execute(
                    f"INSERT INTO events ({', '.join(_COLUMNS[1:])}) "
                    f"VALUES ({', '.join('?' * (len(_COLUMNS) - 1))})",
                    [row.get(c) for c in _COLUMNS[1:]])
                out.append(Event(id=int(cur.lastrowid), **{c: row.get(c) for c in _COLUMNS[1:]}))
            return out

    def _write(self) -> Transaction:
        return Transaction(self._conn, self.path)

    @staticmethod
    def _standing(conn: sqlite3.Connection, sha256: str, task: str) -> int:
        found = conn.execute(
            "SELECT max(id) FROM events WHERE sha256 = ? AND task = ? AND action != 'undo' "
            "AND id NOT IN (SELECT undoes FROM events WHERE sha256 = ? AND task = ? "
            "AND undoes IS NOT NULL)", (sha256, task, sha256, task)).fetchone()[0]
        if found is None:
            raise ReviewError(f"nothing to undo for task {task!r} of this work")
        return int(found)

    # -- reading ----------------------------------------------------------------------------
    def events(self, task: str | None = None, *, sha256: str | None = None) -> Iterator[Event]:
        """Every event in the order it was recorded (of ``task`` / one work, when given)."""
        where = [(c, v) for c, v in (("task", task), ("sha256", sha256)) if v is not None]
        sql = f"SELECT {', '.join(_COLUMNS)} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
        with self._lock:
            rows = self._read(sql + " ORDER BY id", tuple(v for _, v in where))
        for r in rows:
            yield Event(*r)

    def current(self, task: str | None = None, *, sha256: str | None = None
                ) -> dict[tuple[str, str], HumanLabel]:
        """The standing human answer per (sha256, task): the latest event no undo took back
        (of ``task`` / one work, when given)."""
        events = list(self.events(task, sha256=sha256))
        undone = {e.undoes for e in events if e.undoes is not None}
        out: dict[tuple[str, str], HumanLabel] = {}
        for e in events:
            if e.action == "undo" or e.id in undone:
                continue
            out[(e.sha256, e.task)] = HumanLabel(
                e.sha256, e.path, e.task, e.label, e.action, e.reviewer, e.at,
                e.machine_label, e.machine_score, e.model, e.id)
        return {k: out[k] for k in sorted(out, key=lambda k: out[k].event)}

    def tasks(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._read("SELECT DISTINCT task FROM events ORDER BY task")]

    def count(self) -> int:
        with self._lock:
            return int(self._read("SELECT count(*) FROM events")[0][0])

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise ReviewError(f"{self.path}: cannot read the review store ({e})") from e


def _checked(event: dict[str, object]) -> dict[str, object]:
    """An event's fields cleaned and checked, so a bad one is refused before any write."""
    action = event.get("action")
    if action not in ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    sha = event.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ReviewError(f"sha256 must be 64 lowercase hex digits, got {str(sha)[:80]!r}")
    row: dict[str, object] = {"sha256": sha, "action": action}
    row["path"] = _text("path", event.get("path"))
    row["task"] = _text("task", event.get("task"))
    row["reviewer"] = _text("the reviewer's name", event.get("reviewer"))
    label = _text("label", event.get("label"), required=action in NEEDS_LABEL)
    if action in ("undo", "reject") and label is not None:
        raise ReviewError(f"{action} takes no label (to give another label, correct it)")
    row["label"] = label
    row["machine_label"] = _text("machine label", event.get("machine_label"), required=False)
    score = event.get("machine_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                              or not 0.0 <= float(score) <= 1.0):
        raise ReviewError(f"machine score must be a number in [0, 1], got {score!r}")
    row["machine_score"] = None if score is None else float(score)
    row["model"] = _text("model", event.get("model"), required=False)
    row["at"] = _text("time", event.get("at"), required=False) or now_text()
    return row
