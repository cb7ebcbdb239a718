"""One tagging run, whatever distributes the work: walk -> plan -> decode + infer (the
distributor) -> record -> sweep -> merge.

Choices, so that a nightly cron run is safe and cheap:

- Incremental: a file whose (size, mtime_ns) matches its row is not touched; one whose
  sha256 matches an ok row (touched, renamed or duplicated file) gets that row's
  predictions without inference.
- Rows of files no longer found are kept unless ``prune``: an unmounted share or a moved
  folder must not wipe results (and files under a directory that could not be read are
  never pruned). ``full`` rebuilds the output from the files found now.
- Results are reused only from rows of the same model and ``top_k``; anything else is
  tagged again. Unchanged files that failed keep their error row (``retry_errors`` reads
  them again: errors depend on ``max_pixels`` and permissions).
- A run that finds nothing new leaves the output file untouched (``output_unchanged``).
- No image files at all raises :class:`TagError` and writes nothing: an empty mount point
  must not produce an empty result.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import Manifest
from artylyze.options import Tag as T
from artylyze.progress import Progress
from artylyze.store import OutputTarget, State, Store, encode_path
from artylyze.tagging.decode import DecodeJob
from artylyze.tagging.record import Recorder
from artylyze.tagging.summary import TagSummary
from artylyze.tagging.walk import FileEntry, WalkResult, absolute_root, walk_collection

EXECUTORS = ("process", "thread")
Todo = list[tuple[FileEntry, DecodeJob]]


class TagError(ArtyLyzeError):
    """A tagging run could not start or finish (bad options, nothing to tag...)."""


@dataclass(frozen=True)
class TagOptions:
    """Settings of one run; the CLI maps its flags onto these one to one."""

    batch_size: int = T.batch_size.default
    workers: int | None = None  # decode workers; None: see engine.plan_threads
    threads: int | None = None  # onnxruntime intra-op threads; None: see engine.plan_threads
    top_k: int = T.top_k.default
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full: bool = False
    prune: bool = False
    retry_errors: bool = False  # read unchanged files that failed before again
    max_pixels: int = T.max_pixels.default
    max_bytes: int = T.max_bytes.default  # larger files get an error row without being read
    force: bool = False  # replace an output ArtyLyze did not write
    commit_every: int = T.commit_every.default  # rows per committed part
    commit_seconds: float = 60.0  # ... or this long since the last commit, whichever first
    executor: str = T.executor.default  # threads: Pillow, zlib and hashlib release the GIL

    def check(self) -> None:
        for name in ("batch_size", "top_k", "max_pixels", "max_bytes", "commit_every", "workers",
                     "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TagError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.executor not in EXECUTORS:
            raise TagError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")


class Source(Protocol):
    """What a run tags: a folder (:class:`FolderSource`) or a IIIF document
    (``artylyze.tagging.iiif_source``). ``walk`` lists its entries (``FileEntry.ref`` is
    handed to the distributor's decode step in ``DecodeJob.ref``)."""

    root: str  # as the output's metadata records it
    columns: tuple[str, ...]  # extra string columns its rows carry (none for a folder)
    reuse: bool  # whether an equal sha256 may take another entry's row (not for IIIF)

    def walk(self, options: TagOptions, summary: TagSummary,
             progress: Progress) -> WalkResult: ...


@dataclass(frozen=True)
class FolderSource:
    """A folder of image files, walked by :func:`walk_files`."""

    path: str | os.PathLike[str]
    columns: tuple[str, ...] = ()
    reuse: bool = True

    @property
    def root(self) -> str:
        return absolute_root(self.path)

    def walk(self, options: TagOptions, summary: TagSummary, progress: Progress) -> WalkResult:
        return walk_files(self.path, options, summary, progress)


class Distributor(Protocol):
    """Where the decode and infer steps of a run happen (a local pool, a Ray cluster).

    ``run`` hands every file of ``todo`` to ``recorder``: :meth:`Recorder.route` with its
    decode result, then :meth:`Recorder.inferred` with the model's outputs for those that
    needed inference; it fills the summary's workers, threads and inference counts.
    """

    engine: str

    def describe(self, summary: TagSummary) -> None:
        """Say in the summary how the work is spread (workers, threads, executor)."""

    def run(self, todo: Todo, recorder: Recorder, summary: TagSummary,
            progress: Progress) -> None: ...

    def close(self) -> None:
        """Free what the run held (an onnxruntime arena) before the merge."""


def tag(root: str | os.PathLike[str], target: OutputTarget, manifest: Manifest,
        options: TagOptions, distributor: Distributor, progress: Progress,
        source: Source | None = None) -> TagSummary:
    """Run the steps in order; see the module docstring and ``engine.tag_collection``.
    ``source``: what to walk instead of the folder ``root`` (a IIIF document)."""
    t_start = time.perf_counter()
    source = source or FolderSource(root)
    root_text = source.root
    summary = TagSummary(root=root_text, output=str(target.path), model=manifest.model_id,
                         engine=distributor.engine)
    distributor.describe(summary)
    store = Store(target, manifest, root_text, options.top_k, source.columns)
    with store.open() as lock:
        if lock.took_over:
            warn(summary, progress, f"took over the stale lock of {lock.took_over}")
        walked = source.walk(options, summary, progress)
        t0 = time.perf_counter()
        state = store.load(options.full, options.force)
        if state.discarded:
            warn(summary, progress, state.discarded)
        summary.resumed = state.resumed_rows
        todo, failed = plan(walked.files, state, options, summary, source.reuse)
        summary.stages.plan = time.perf_counter() - t0
        recorder = Recorder(store, manifest, options.top_k, options.commit_every,
                            options.commit_seconds, summary, progress, source.reuse)
        progress.start(len(todo) + len(failed), skipped=summary.unchanged)
        try:
            for entry in failed:
                recorder.error(entry, None, entry.error or "", entry.error_kind)
            if todo:
                distributor.run(todo, recorder, summary, progress)
            recorder.finish()
        except BaseException:
            recorder.salvage()
            raise
        finally:
            progress.finish()
            distributor.close()
        sweep(walked, state, options.prune, summary)
        t0 = time.perf_counter()
        summary.rows_written, summary.output_unchanged = store.finish(summary.pruned)
        summary.stages.merge = time.perf_counter() - t0
    summary.seconds = time.perf_counter() - t_start
    return summary


def walk_files(root: str | os.PathLike, options: TagOptions, summary: TagSummary,
               progress: Progress) -> WalkResult:
    """Walk the collection: times it, records problems in the summary and refuses an empty
    collection, which is most often an unmounted share."""
    t0 = time.perf_counter()
    walked = walk_collection(root, options.include, options.exclude)
    summary.stages.walk = time.perf_counter() - t0
    summary.files_seen = len(walked.files)
    summary.walk_problems = walked.problems
    for p in walked.problems:
        warn(summary, progress, p.message)
    if not walked.files:
        raise TagError(f"no image files found under {summary.root}"
                       + (" matching the --include/--exclude patterns"
                          if options.include or options.exclude else "")
                       + "; nothing written")
    return walked


def plan(files: list[FileEntry], state: State, options: TagOptions, summary: TagSummary,
         reuse: bool = True) -> tuple[Todo, list[FileEntry]]:
    """Split the files into: unchanged (counted, skipped), to decode, and already failed."""
    todo: Todo = []
    failed: list[FileEntry] = []
    for entry in files:
        path = encode_path(entry.rel)
        if state.unchanged(path, entry.size, entry.mtime_ns, options.retry_errors):
            summary.unchanged += 1
            if not state.known[path].ok:
                summary.errors += 1
                summary.errors_by_kind["unchanged"] += 1
        elif entry.error is not None:
            failed.append(entry)
        else:
            hints = state.lookup(path, entry.size) if reuse else ()
            todo.append((entry, DecodeJob(entry.abspath, hints, entry.ref)))
    return todo, failed


def sweep(walked: WalkResult, state: State, prune: bool, summary: TagSummary) -> None:
    """Rows of files no longer found: dropped with --prune, else kept. Files under a
    directory that could not be read this time are never pruned."""
    seen = {encode_path(f.rel) for f in walked.files}
    blind = [encode_path(p.rel) for p in walked.problems if p.kind == "unreadable_dir"]
    if any(p.kind in ("unreadable_manifest", "limit") for p in walked.problems):
        blind.append(".")  # IIIF: canvases of a manifest not read this time are not known
    missing = state.sweep(seen, blind, prune)
    if prune:
        summary.pruned = missing
    else:
        summary.missing_kept = missing


def warn(summary: TagSummary, progress: Progress, message: str) -> None:
    summary.warnings.append(message)
    progress.note(message)
