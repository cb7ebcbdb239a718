"""The review store's file: its schema, the checks that it is ours and not from a newer
ArtyLyze, WAL mode, and the short write transactions every event goes through.

May import: the foundations only.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from artylyze.errors import ArtyLyzeError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x41525459  # "ARTY": marks the file as an ArtyLyze review store
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256        TEXT NOT NULL,
    path          TEXT NOT NULL,
    task          TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('confirm','correct','reject','set','undo')),
    label         TEXT,
    reviewer      TEXT NOT NULL CHECK (length(reviewer) > 0),
    at            TEXT NOT NULL,
    machine_label TEXT,
    machine_score REAL,
    model         TEXT,
    undoes        INTEGER REFERENCES events(id)
);
CREATE INDEX events_work ON events (sha256, task, id);
CREATE INDEX events_task ON events (task, id);
"""


class ReviewError(ArtyLyzeError):
    """A review store that cannot be opened or an event that cannot be recorded."""


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock first (waiting up to the busy
    timeout), so two writers never interleave; rolls back on any error."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn, self.path = conn, path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise ReviewError(f"{self.path}: cannot write the review store ({e})") from e
        return self.conn

    def __exit__(self, kind: type | None, error: BaseException | None, _: object) -> None:
        if kind is not None:
            self.conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise ReviewError(f"{self.path}: cannot write the review store ({error})"
                                  ) from error
            return
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            self.conn.execute("ROLLBACK")
            raise ReviewError(f"{self.path}: cannot write the review store ({e})") from e


def prepared(conn: sqlite3.Connection, path: Path) -> None:
    """:func:`_prepare`, tried again while another process holds the lock it needs: some
    steps (switching a new file to WAL) take a lock without waiting on the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            _prepare(conn, path)
            return
        except ReviewError as e:
            locked = isinstance(e.__cause__, sqlite3.OperationalError) and \
                "locked" in str(e.__cause__)
            if not locked or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Check the file is ours and current (or empty: then make it), and set WAL mode."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("BEGIN")  # one snapshot: another process may be making the schema now
        try:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise ReviewError(f"{path}: not a review store (not an SQLite database: {e})") from e
    if app == APPLICATION_ID and version > SCHEMA_VERSION:
        raise ReviewError(f"{path}: a review store of schema version {version}, written by a "
                          f"newer ArtyLyze (this one reads up to {SCHEMA_VERSION}); upgrade "
                          "ArtyLyze to use it. The file was not changed.")
    if app != APPLICATION_ID and (tables or version or app):
        raise ReviewError(f"{path}: an SQLite database that is not an ArtyLyze review store "
                          f"(application id {app:#x}, tables: {', '.join(sorted(tables)) or '-'}"
                          "); give another --review file. The file was not changed.")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        if app != APPLICATION_ID:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                # one statement at a time: executescript would commit half-way
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise ReviewError(f"{path}: cannot prepare the review store ({e})") from e
