"""The batch tagging engine: walk -> decode (parallel workers) -> batched inference -> parts.

Shaped like clip-retrieval's reader -> mapper -> writer: a pool of decode workers reads each
file (sha256 + decode, see :func:`decode_file`) and returns pixels or an error; the main
thread stacks pixels into batches for onnxruntime and hands rows to the store, which commits
them in crash-safe parts. A fixed window of files is in flight, refilled as results are
taken, so memory stays flat however large the collection. Each stage is timed per batch and
the totals land in :class:`TagSummary`, so the bottleneck of a run is visible.

Decoding runs in threads by default: on 2000x1500 scans they measured as fast as ``spawn``
processes (Pillow, zlib and hashlib release the GIL), they start at once and pass pixels
without a copy. ``executor="process"`` remains for decoders that hold the GIL.

Incremental: a file whose (size, mtime_ns) matches the previous output is not touched; one
whose sha256 matches an ok row (touched, renamed or duplicated file) gets that row's
predictions without inference. Use :func:`tag_collection`; the CLI is a thin wrapper.

Choices, so that a nightly cron run is safe and cheap:

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

import contextlib
import hashlib
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from multiprocessing import get_context
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from artylyze.bundle import Bundle, resolve_providers, usable_cores
from artylyze.errors import ArtyLyzeError
from artylyze.imaging import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageError,
    load_image,
    open_image_file,
)
from artylyze.predict import Prediction, predictions
from artylyze.progress import Progress
from artylyze.store import (
    Known,
    OutputLock,
    OutputTarget,
    PartWriter,
    State,
    build_row,
    encode_path,
    load_state,
    make_schema,
    output_errors,
    remove_workdir,
    result_key,
    write_output,
)
from artylyze.walk import FileEntry, WalkProblem, WalkResult, absolute_root, walk_collection

EXECUTORS = ("process", "thread")


class TagError(ArtyLyzeError):
    """A tagging run could not start or finish (bad options, nothing to tag...)."""


@dataclass(frozen=True)
class TagOptions:
    """Settings of one run; the CLI maps its flags onto these one to one."""

    batch_size: int = 32
    workers: int | None = None  # decode workers; None: see plan_threads
    threads: int | None = None  # onnxruntime intra-op threads; None: see plan_threads
    top_k: int = 3
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full: bool = False
    prune: bool = False
    retry_errors: bool = False  # read unchanged files that failed before again
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES  # larger files get an error row without being read
    force: bool = False  # replace an output ArtyLyze did not write
    commit_every: int = 4096  # rows per committed part
    commit_seconds: float = 60.0  # ... or this long since the last commit, whichever first
    executor: str = "thread"  # decode in threads (Pillow, zlib and hashlib release the GIL)

    def check(self) -> None:
        for name in ("batch_size", "top_k", "max_pixels", "max_bytes", "commit_every", "workers",
                     "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TagError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.executor not in EXECUTORS:
            raise TagError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the run."""

    walk: float = 0.0
    plan: float = 0.0  # reading the previous output and finished parts
    decode_wait: float = 0.0  # the main thread waiting for decoded images
    inference: float = 0.0
    write: float = 0.0  # building rows and committing parts
    merge: float = 0.0  # writing the final output


@dataclass
class TagSummary:
    """What a run did; ``images_inferred == 0`` proves a run re-used everything."""

    root: str
    output: str
    model: str
    files_seen: int = 0
    tagged: int = 0  # inferred this run, status ok
    reused: int = 0  # content seen before (sha256): predictions copied, no inference
    unchanged: int = 0  # same size and mtime as recorded: not even read
    errors: int = 0  # error rows among the files seen (this run's and unchanged ones)
    errors_by_kind: Counter = field(default_factory=Counter)
    resumed: int = 0  # rows found in the parts of an interrupted run
    pruned: int = 0
    missing_kept: int = 0  # rows of files no longer found, kept (no --prune)
    rows_written: int = 0  # rows in the output now
    output_unchanged: bool = False  # nothing new: the output was left as it was
    inference_calls: int = 0
    images_inferred: int = 0
    workers: int = 0
    threads: int = 0
    executor: str = ""
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)
    walk_problems: list[WalkProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        """Files read this run (tagged, reused or failed)."""
        return self.tagged + self.reused + self.errors_this_run

    @property
    def errors_this_run(self) -> int:
        return sum(n for k, n in self.errors_by_kind.items() if k != "unchanged")

    @property
    def ok_files(self) -> int:
        """Files seen that now have an ok row."""
        return self.files_seen - self.errors

    @property
    def files_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- decode worker

@dataclass(frozen=True)
class DecodeJob:
    abspath: str
    hints: tuple[str, ...] = ()  # sha256 values whose predictions exist: then skip the decode


@dataclass(frozen=True)
class DecodeResult:
    sha256: str | None
    pixels: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    known: bool = False  # sha256 was one of the hints: not decoded


READ_CHUNK = 1 << 20
SLURP_MAX = 64 << 20  # files up to this size are read into memory once, for hash and decode


def decode_file(job: DecodeJob, size: int, resize: str, max_pixels: int,
                max_bytes: int = DEFAULT_MAX_BYTES) -> DecodeResult:
    """Hash and decode one file; never raises for a bad file.

    The file is opened once and judged on its descriptor (a FIFO swapped in after the walk
    is refused, not waited on; see :func:`artylyze.imaging.open_image_file`). Up to
    ``SLURP_MAX`` bytes it is read once and the same bytes are hashed and decoded; a larger
    one is hashed in chunks and decoded from the file, so memory never grows with file size
    beyond ``SLURP_MAX`` per worker. Module level with plain-data arguments, so a ``spawn``
    worker can run it.
    """
    try:
        f = open_image_file(job.abspath, max_bytes)
    except ImageError as e:
        failed_open = isinstance(e.__cause__, OSError)
        return DecodeResult(None, error=f"cannot read file: {e.reason}" if failed_open
                            else e.reason)
    with f:
        try:
            if os.fstat(f.fileno()).st_size <= SLURP_MAX:
                source: bytes | BinaryIO = f.read()
                sha = hashlib.sha256(source).hexdigest()
            else:
                sha, source = _sha256(f), f
                f.seek(0)
        except OSError as e:
            return DecodeResult(None, error=f"cannot read file: {(e.strerror or str(e)).lower()}")
        if sha in job.hints:
            return DecodeResult(sha, known=True)
        try:
            img = load_image(source, size=size, resize=resize, max_pixels=max_pixels)
        except ImageError as e:
            return DecodeResult(sha, error=e.reason)
    return DecodeResult(sha, img.pixels, img.width, img.height)


def _sha256(f) -> str:
    digest = hashlib.sha256()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    while n := f.readinto(buf):
        digest.update(view[:n])
    return digest.hexdigest()


def error_kind(message: str) -> str:
    """A short category for the summary's "errors by kind"."""
    text = message.lower()
    for kind, needles in (("empty", ("empty",)), ("too_large", ("exceeds", "bomb")),
                          ("not_image", ("not an image", "cannot identify")),
                          ("truncated", ("truncated",)),
                          ("unreadable", ("cannot read", "cannot stat", "permission",
                                          "broken symlink", "not a regular file")),
                          ("corrupt", ("corrupt", "unsupported"))):
        if any(n in text for n in needles):
            return kind
    return "other"


# ---------------------------------------------------------------- threads

def plan_threads(options: TagOptions, device: str) -> tuple[int, int]:
    """(decode workers, onnxruntime intra-op threads) for a run.

    On CPU both default to the number of usable cores, and onnxruntime's threads do not spin
    (see :func:`_process`): which stage is the expensive one depends on the collection, not
    the machine. Full-size scans cost ~28 ms of a core to read, hash and decode against
    ~11 ms to infer (EfficientNet-Lite0), 224 px thumbnails ~2 ms against the same 11 ms. A
    fixed split of the cores would idle one side in either case; full pools on both sides
    let the OS give the cores to whichever stage has work, and the bounded window of files
    in flight keeps decoding from running ahead. ``benchmarks/tag_throughput.py`` measures
    the result against the machine's limit. On a GPU, inference needs one thread to feed
    the device and decoding gets the other cores. An explicit ``workers`` or ``threads``
    is taken as given.
    """
    cores = usable_cores()
    if device in ("cuda", "auto") and _has_cuda():
        threads = options.threads or 1
        return options.workers or max(1, cores - threads), threads
    return options.workers or cores, options.threads or cores


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _make_executor(kind: str, workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(workers, thread_name_prefix="artylyze-decode")
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                               initializer=_leave_signals_to_the_main_process)


def _leave_signals_to_the_main_process() -> None:
    """Decode processes ignore SIGINT/SIGTERM (a terminal or systemd sends them to the whole
    group): the main process stops cleanly and shuts them down; a worker dying mid-file
    would otherwise turn good files into error rows."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _ordered(executor: Executor, fn: Callable[[DecodeJob], DecodeResult],
             items: list[tuple[FileEntry, DecodeJob]], window: int,
             times: StageTimes) -> Iterator[tuple[FileEntry, DecodeResult]]:
    """Results in input order with at most ``window`` jobs in flight (memory stays flat)."""
    pending: deque[tuple[FileEntry, Future[DecodeResult]]] = deque()
    it = iter(items)
    while True:
        while len(pending) < window:
            nxt = next(it, None)
            if nxt is None:
                break
            pending.append((nxt[0], executor.submit(fn, nxt[1])))
        if not pending:
            return
        entry, fut = pending.popleft()
        t0 = time.perf_counter()
        try:
            result = fut.result()
        except BrokenExecutor as e:  # the pool is gone: no file's fault, so no error row
            raise TagError(f"the decode workers stopped ({e}); nothing was lost, run again",
                           kind="workers") from e
        except Exception as e:  # noqa: BLE001 - a worker bug must not lose the whole run
            result = DecodeResult(None, error=f"internal decoder failure: {type(e).__name__}: {e}")
        times.decode_wait += time.perf_counter() - t0
        yield entry, result


# ---------------------------------------------------------------- the run

class _Run:
    """Mutable state of one run: the batch being filled and the chunk being committed."""

    def __init__(self, bundle: Bundle, options: TagOptions, state: State, writer: PartWriter,
                 summary: TagSummary, progress: Progress) -> None:
        self.bundle, self.options, self.state, self.writer = bundle, options, state, writer
        self.summary, self.progress = summary, progress
        self.model = bundle.model_id
        self.batch: list[tuple[FileEntry, DecodeResult]] = []
        self.rows: list[dict] = []
        self.reused: list[tuple[str, int | None, int | None, str]] = []
        self.last_commit = time.monotonic()

    def take(self, entry: FileEntry, result: DecodeResult) -> None:
        """Route one decoded file: reuse, error row, or into the inference batch."""
        if result.sha256 is not None and result.error is None and (
                result.known or result.sha256 in self.state.ok_shas):
            self._reuse(entry, result.sha256)
        elif result.error is not None:
            self.row(entry, result.sha256, error=result.error)
        else:
            self.batch.append((entry, result))
            if len(self.batch) >= self.options.batch_size:
                self.infer()
        self._maybe_commit()

    def _reuse(self, entry: FileEntry, sha: str) -> None:
        path = encode_path(entry.rel)
        self.reused.append((path, entry.size, entry.mtime_ns, sha))
        self.state.add(path, _known(entry, sha, True, self.writer.number, reused=True))
        self.summary.reused += 1
        self.progress.advance(1, self.summary.errors)

    def row(self, entry: FileEntry, sha: str | None, *, error: str | None = None,
            width: int | None = None, height: int | None = None,
            prediction: Prediction | None = None, now: datetime | None = None) -> None:
        """Add the row of one file (ok with a prediction, else an error) to the chunk."""
        path = encode_path(entry.rel)
        self.rows.append(build_row(path, entry.size, entry.mtime_ns, sha256=sha, model=self.model,
                                   tagged_at=now or datetime.now(timezone.utc), width=width,
                                   height=height, prediction=prediction, error=error))
        ok = error is None
        self.state.add(path, _known(entry, sha, ok, self.writer.number))
        if ok:
            self.summary.tagged += 1
        else:
            self.summary.errors += 1
            self.summary.errors_by_kind[error_kind(error)] += 1
        self.progress.advance(1, self.summary.errors)

    def infer(self) -> None:
        if not self.batch:
            return
        t0 = time.perf_counter()
        images = np.stack([r.pixels for _, r in self.batch])
        outputs = self.bundle.run(images)
        t1 = time.perf_counter()
        self.summary.stages.inference += t1 - t0
        self.summary.inference_calls += 1
        self.summary.images_inferred += len(images)
        now = datetime.now(timezone.utc)
        preds = predictions(outputs, self.bundle.manifest, self.options.top_k)
        for (entry, r), pred in zip(self.batch, preds, strict=True):
            self.row(entry, r.sha256, width=r.width, height=r.height, prediction=pred, now=now)
        self.batch = []
        self.summary.stages.write += time.perf_counter() - t1

    def _maybe_commit(self, force: bool = False) -> None:
        n = len(self.rows) + len(self.reused)
        due = (n >= self.options.commit_every
               or time.monotonic() - self.last_commit >= self.options.commit_seconds)
        if n and (force or due):
            t0 = time.perf_counter()
            self.writer.commit(self.rows, self.reused)
            self.rows, self.reused = [], []
            self.last_commit = time.monotonic()
            self.summary.stages.write += time.perf_counter() - t0

    def finish(self) -> None:
        self.infer()
        self._maybe_commit(force=True)

    def salvage(self) -> None:
        """After a failure or a stop signal: commit the rows already made, so the next run
        does not redo them (the batch not yet inferred is left to it). Never raises: the
        first error is the one to report."""
        if self.rows or self.reused:
            with contextlib.suppress(Exception):
                self.writer.commit(self.rows, self.reused)
                self.rows, self.reused = [], []


def _known(entry: FileEntry, sha: str | None, ok: bool, source: int,
           reused: bool = False) -> Known:
    return Known(entry.size, entry.mtime_ns, sha, ok, source, reused)


def walk_files(root: str | os.PathLike, options: TagOptions, summary: TagSummary,
               progress: Progress) -> WalkResult:
    """Walk the collection for a run (both engines): times it, records problems in the summary
    and refuses an empty collection, which is most often an unmounted share."""
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


def tag_collection(root: str | os.PathLike[str], out: str | os.PathLike[str], bundle: Bundle,
                   options: TagOptions | None = None,
                   progress: Progress | None = None) -> TagSummary:
    """Tag every image under ``root`` into ``out`` (a Parquet file, or a dataset dir ``out/``).

    Incremental and resumable; see the module docstring. Raises :class:`TagError` when
    nothing can be done (no images found), ``StoreError`` when the output cannot be read,
    written (``kind`` disk_full, read_only, permission) or replaced (``foreign``: ArtyLyze
    did not write it), ``LockedError`` when another run holds it, ``CollectionError`` when
    the root is not a directory. On any of these, and on ``KeyboardInterrupt`` (a stop
    signal), the rows already made are committed, temp files removed and the lock released,
    so the next run resumes.
    """
    options = options or TagOptions()
    options.check()
    resolve_providers(bundle.device)  # an unusable --device fails now, not after the walk
    progress = progress or Progress()
    t_start = time.perf_counter()
    target = OutputTarget.resolve(out)
    root_text = absolute_root(root)
    summary = TagSummary(root=root_text, output=str(target.path), model=bundle.model_id,
                         executor=options.executor)
    with output_errors(target.path), OutputLock(target) as lock:
        if lock.took_over:
            warn(summary, progress, f"took over the stale lock of {lock.took_over}")
        target.recover()
        target.check_replaceable()
        walked = walk_files(root, options, summary, progress)
        t0 = time.perf_counter()
        key = result_key(bundle.manifest, options.top_k)
        schema = make_schema(bundle.manifest, root_text, options.top_k)
        state = load_state(target, key, options.full, options.force, schema.names)
        if state.discarded:
            warn(summary, progress, state.discarded)
        summary.resumed = state.resumed_rows
        summary.stages.plan = time.perf_counter() - t0
        _process(walked.files, bundle, options, state, target, schema, summary, progress)
        bundle.close()  # frees onnxruntime's arena before the merge; reopened on next use
        sweep(walked, state, options.prune, summary)
        t0 = time.perf_counter()
        parts = sorted(target.workdir.glob("part-*.parquet"))
        if parts or summary.pruned or not state.old_files:
            summary.rows_written, _ = write_output(target, schema, state, parts, bundle.model_id)
        else:  # nothing new: leave the output (and its mtime) alone
            summary.rows_written, summary.output_unchanged = state.old_rows, True
        remove_workdir(target)
        summary.stages.merge = time.perf_counter() - t0
    summary.seconds = time.perf_counter() - t_start
    return summary


def plan(files: list[FileEntry], state: State, options: TagOptions, summary: TagSummary
          ) -> tuple[list[tuple[FileEntry, DecodeJob]], list[FileEntry]]:
    """Split the files into: unchanged (counted, skipped), to decode, and already failed."""
    todo: list[tuple[FileEntry, DecodeJob]] = []
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
            hints = state.hints(entry.size)
            old = state.known.get(path)
            if old is not None and old.ok and old.sha256 and old.sha256 not in hints:
                hints = (*hints, old.sha256)
            todo.append((entry, DecodeJob(entry.abspath, hints)))
    return todo, failed


def _process(files: list[FileEntry], bundle: Bundle, options: TagOptions, state: State,
             target: OutputTarget, schema: pa.Schema, summary: TagSummary,
             progress: Progress) -> None:
    """Decode and infer every file the state does not already cover."""
    todo, failed = plan(files, state, options, summary)
    if options.threads is None and bundle.threads:
        options = replace(options, threads=bundle.threads)
    workers, threads = plan_threads(options, bundle.device)
    if bundle.threads is None:
        bundle.threads = threads  # read when the session is created, on first use
    # Spinning onnxruntime threads would take the cores from decoding while they wait.
    bundle.spin = workers + (bundle.threads or threads) <= usable_cores()
    summary.workers, summary.threads = workers, bundle.threads or threads
    writer = PartWriter(target, schema, state.key, options.full, _next_part(state))
    run = _Run(bundle, options, state, writer, summary, progress)
    progress.start(len(todo) + len(failed), skipped=summary.unchanged)
    try:
        for entry in failed:
            run.row(entry, None, error=entry.error)
        if todo:
            manifest = bundle.manifest
            fn = partial(decode_file, size=manifest.input_size, resize=manifest.resize,
                         max_pixels=options.max_pixels, max_bytes=options.max_bytes)
            window = max(2 * options.batch_size, 4 * workers)
            pool = _make_executor(options.executor, min(workers, len(todo)))
            try:
                for entry, result in _ordered(pool, fn, todo, window, summary.stages):
                    run.take(entry, result)
            finally:  # on a failure or a signal, files not started yet are dropped
                pool.shutdown(wait=True, cancel_futures=True)
        run.finish()
    except BaseException:
        run.salvage()
        raise
    finally:
        progress.finish()


def _next_part(state: State) -> int:
    return max((int(p.stem.split("-")[1]) for p in state.parts), default=-1) + 1


def sweep(walked: WalkResult, state: State, prune: bool, summary: TagSummary) -> None:
    """Rows of files no longer found: dropped with --prune, else kept. Files under a
    directory that could not be read this time are never pruned."""
    seen = {encode_path(f.rel) for f in walked.files}
    blind = [encode_path(p.rel) for p in walked.problems if p.kind == "unreadable_dir"]

    def hidden(path: str) -> bool:
        return any(b == "." or path.startswith(b + "/") for b in blind)

    missing = [p for p in state.known if p not in seen and not hidden(p)]
    if prune:
        for p in missing:
            del state.known[p]
        summary.pruned = len(missing)
    else:
        summary.missing_kept = len(missing)


def warn(summary: TagSummary, progress: Progress, message: str) -> None:
    summary.warnings.append(message)
    progress.note(message)


def default_workers() -> int:
    """The decode workers a run uses when none are asked (for help texts)."""
    return plan_threads(TagOptions(), "cpu")[0]


__all__ = ["DecodeJob", "DecodeResult", "StageTimes", "TagError", "TagOptions", "TagSummary",
           "decode_file", "plan_threads", "tag_collection"]
