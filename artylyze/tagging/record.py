"""The record step: each file's result becomes a row (or a reuse record) in the store.

Runs where the output is written (the local process, the Ray driver), whatever decoded and
inferred. A result whose sha256 already has an ok row is reused, not recorded again; rows
are committed in crash-safe parts every ``commit_every`` rows or ``commit_seconds``.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from artylyze.model.bundle import Manifest
from artylyze.model.predict import Prediction, predictions
from artylyze.progress import Progress
from artylyze.store import Known, ReuseRecord, Store, build_row, encode_path
from artylyze.tagging.decode import DecodeResult
from artylyze.tagging.summary import TagSummary
from artylyze.tagging.walk import FileEntry

FileResult = tuple[FileEntry, DecodeResult]


class Recorder:
    """Rows of one run: routes results, builds rows, files them in the state, commits parts."""

    def __init__(self, store: Store, manifest: Manifest, top_k: int, commit_every: int,
                 commit_seconds: float, summary: TagSummary, progress: Progress,
                 reuse: bool = True) -> None:
        self.store, self.state, self.manifest, self.top_k = store, store.state, manifest, top_k
        self.reuse = reuse  # False (IIIF): each row keeps its own source columns
        self.commit_every, self.commit_seconds = commit_every, commit_seconds
        self.summary, self.progress = summary, progress
        self.rows: list[dict[str, Any]] = []
        self.reused: list[ReuseRecord] = []
        self.last_commit = time.monotonic()

    def route(self, entry: FileEntry, result: DecodeResult) -> bool:
        """Record a reuse or an error row now; True when the file needs inference."""
        sha = result.sha256
        if result.error is not None:
            self.error(entry, sha, result.error, result.kind or "other", result.extra)
        elif sha is not None and self.reuse and (result.known or sha in self.state.ok_shas):
            self._reuse(entry, sha)
        else:
            return True
        self._maybe_commit()
        return False

    def inferred(self, batch: list[FileResult], outputs: dict[str, np.ndarray]) -> None:
        """The rows of a batch the model ran on (``outputs``: the bundle's, in batch order)."""
        t0 = time.perf_counter()
        now = datetime.now(timezone.utc)
        preds = predictions(outputs, self.manifest, self.top_k)
        for (entry, r), pred in zip(batch, preds, strict=True):
            self._row(entry, r.sha256, width=r.width, height=r.height, prediction=pred, now=now,
                      extra=r.extra)
        self.summary.stages.write += time.perf_counter() - t0
        self._maybe_commit()

    def error(self, entry: FileEntry, sha: str | None, error: str, kind: str,
              extra: tuple[tuple[str, str | None], ...] = ()) -> None:
        """The error row of one file; the summary counts it under ``kind``."""
        self.summary.errors += 1
        self.summary.errors_by_kind[kind] += 1
        self._row(entry, sha, error=error, extra=extra)

    def _reuse(self, entry: FileEntry, sha: str) -> None:
        path = encode_path(entry.rel)
        self.reused.append((path, entry.size, entry.mtime_ns, sha))
        self.state.record(path, Known(entry.size, entry.mtime_ns, sha, True, self.store.part,
                                      reused=True))
        self.summary.reused += 1
        self.progress.advance(1, self.summary.errors)

    def _row(self, entry: FileEntry, sha: str | None, *, error: str | None = None,
             width: int | None = None, height: int | None = None,
             prediction: Prediction | None = None, now: datetime | None = None,
             extra: tuple[tuple[str, str | None], ...] = ()) -> None:
        path = encode_path(entry.rel)
        self.rows.append(build_row(path, entry.size, entry.mtime_ns, sha256=sha,
                                   model=self.store.model,
                                   tagged_at=now or datetime.now(timezone.utc), width=width,
                                   height=height, prediction=prediction, error=error,
                                   extra=entry.extra + extra))
        ok = error is None
        self.state.record(path, Known(entry.size, entry.mtime_ns, sha, ok, self.store.part))
        if ok:
            self.summary.tagged += 1
        self.progress.advance(1, self.summary.errors)

    def _maybe_commit(self, force: bool = False) -> None:
        n = len(self.rows) + len(self.reused)
        due = (n >= self.commit_every
               or time.monotonic() - self.last_commit >= self.commit_seconds)
        if n and (force or due):
            t0 = time.perf_counter()
            self.store.commit(self.rows, self.reused)
            self.rows, self.reused = [], []
            self.last_commit = time.monotonic()
            self.summary.stages.write += time.perf_counter() - t0

    def finish(self) -> None:
        """Commit what is left once every file went through."""
        self._maybe_commit(force=True)

    def salvage(self) -> None:
        """After a failure or a stop signal: commit the rows already made, so the next run
        does not redo them (a batch not yet inferred is left to it). Never raises: the
        first error is the one to report."""
        if self.rows or self.reused:
            with contextlib.suppress(Exception):
                self.store.commit(self.rows, self.reused)
                self.rows, self.reused = [], []
