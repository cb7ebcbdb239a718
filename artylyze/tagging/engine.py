"""Tagging on this machine: a pool of decode workers feeding batched onnxruntime inference.

The local *distributor* of the tagging core (:mod:`artylyze.tagging`), shaped like
clip-retrieval's reader -> mapper -> writer: a pool of decode workers reads each file
(sha256 + decode, :func:`decode_file`) and returns pixels or an error; the main thread
stacks pixels into batches for onnxruntime and hands results to the recorder, which commits
rows in crash-safe parts. A fixed window of files is in flight, refilled as results are
taken, so memory stays flat however large the collection. Each stage is timed per batch and
the totals land in :class:`TagSummary`, so the bottleneck of a run is visible.

Decoding runs in threads by default: on 2000x1500 scans they measured as fast as ``spawn``
processes (Pillow, zlib and hashlib release the GIL), they start at once and pass pixels
without a copy. ``executor="process"`` remains for decoders that hold the GIL.

Use :func:`tag_collection` (incremental and resumable: see :mod:`artylyze.tagging.core`);
the CLI is a thin wrapper.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from dataclasses import replace
from functools import partial
from multiprocessing import get_context
from typing import NamedTuple

import numpy as np

from artylyze.model.bundle import Bundle, resolve_providers, usable_cores
from artylyze.progress import Progress
from artylyze.store import OutputTarget
from artylyze.tagging import core
from artylyze.tagging.core import TagError, TagOptions, Todo
from artylyze.tagging.decode import DecodeJob, DecodeResult, decode_file
from artylyze.tagging.record import FileResult, Recorder
from artylyze.tagging.summary import StageTimes, TagSummary
from artylyze.tagging.walk import FileEntry


class ThreadPlan(NamedTuple):
    workers: int  # decode workers
    threads: int  # onnxruntime intra-op threads
    spin: bool  # whether idle onnxruntime threads spin: only when they share no core


def plan_threads(options: TagOptions, device: str) -> ThreadPlan:
    """Decode workers, onnxruntime threads and spinning for a run, decided before the
    onnxruntime session is made.

    On CPU both default to the number of usable cores, and onnxruntime's threads do not spin
    (they would take the cores from decoding while they wait): which stage is the expensive
    one depends on the collection, not the machine. Full-size scans cost ~28 ms of a core to
    read, hash and decode against ~11 ms to infer (EfficientNet-Lite0), 224 px thumbnails
    ~2 ms against the same 11 ms. A fixed split of the cores would idle one side in either
    case; full pools on both sides let the OS give the cores to whichever stage has work,
    and the bounded window of files in flight keeps decoding from running ahead.
    ``benchmarks/tag_throughput.py`` measures the result against the machine's limit. On a
    GPU, inference needs one thread to feed the device and decoding gets the other cores.
    An explicit ``workers`` or ``threads`` is taken as given.
    """
    cores = usable_cores()
    if device in ("cuda", "auto") and _has_cuda():
        threads = options.threads or 1
        workers = options.workers or max(1, cores - threads)
    else:
        workers, threads = options.workers or cores, options.threads or cores
    return ThreadPlan(workers, threads, workers + threads <= cores)


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class LocalPool:
    """The local distributor: decode in a pool, infer in this thread, in batches."""

    engine = "local"

    def __init__(self, bundle: Bundle, options: TagOptions,
                 decode: Callable[[DecodeJob], DecodeResult] | None = None) -> None:
        if options.threads is None and bundle.threads:
            options = replace(options, threads=bundle.threads)
        self.options = options
        self.decode = decode  # a source's own decode step (IIIF: fetch + decode), else files
        self.plan = plan_threads(options, bundle.device)
        # the run's own session, made with the threads and spinning decided above
        self.bundle = Bundle(bundle.path, bundle.manifest, bundle.device,
                             threads=self.plan.threads, spin=self.plan.spin)

    def describe(self, summary: TagSummary) -> None:
        summary.workers, summary.threads = self.plan.workers, self.plan.threads
        summary.executor = self.options.executor

    def run(self, todo: Todo, recorder: Recorder, summary: TagSummary,
            progress: Progress) -> None:
        options, manifest = self.options, self.bundle.manifest
        fn = self.decode or partial(decode_file, size=manifest.input_size,
                                    resize=manifest.resize, max_pixels=options.max_pixels,
                                    max_bytes=options.max_bytes)
        window = max(2 * options.batch_size, 4 * self.plan.workers)
        pool = _make_executor(options.executor, min(self.plan.workers, len(todo)))
        batch: list[FileResult] = []
        try:
            for entry, result in _ordered(pool, fn, todo, window, summary.stages):
                if recorder.route(entry, result):
                    batch.append((entry, result))
                    if len(batch) >= options.batch_size:
                        self._infer(batch, recorder, summary)
                        batch = []
        finally:  # on a failure or a signal, files not started yet are dropped
            pool.shutdown(wait=True, cancel_futures=True)
        self._infer(batch, recorder, summary)

    def _infer(self, batch: list[FileResult], recorder: Recorder, summary: TagSummary) -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        images = np.stack([r.pixels for _, r in batch])
        outputs = self.bundle.run(images)
        summary.stages.inference += time.perf_counter() - t0
        summary.inference_calls += 1
        summary.images_inferred += len(images)
        recorder.inferred(batch, outputs)

    def close(self) -> None:
        self.bundle.close()  # frees onnxruntime's arena before the merge


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
            result = DecodeResult(None, error=f"internal decoder failure: {type(e).__name__}: {e}",
                                  kind="internal")
        times.decode_wait += time.perf_counter() - t0
        yield entry, result


def tag_collection(root: str | os.PathLike[str], out: str | os.PathLike[str], bundle: Bundle,
                   options: TagOptions | None = None,
                   progress: Progress | None = None) -> TagSummary:
    """Tag every image under ``root`` into ``out`` (a Parquet file, or a dataset dir ``out/``).

    Incremental and resumable; see :mod:`artylyze.tagging.core`. ``bundle`` is left as it is
    (the run makes its own session, with the threads it plans). Raises :class:`TagError`
    when nothing can be done (no images found), ``StoreError`` when the output cannot be
    read, written (``kind`` disk_full, read_only, permission) or replaced (``foreign``:
    ArtyLyze did not write it), ``LockedError`` when another run holds it,
    ``CollectionError`` when the root is not a directory. On any of these, and on
    ``KeyboardInterrupt`` (a stop signal), the rows already made are committed, temp files
    removed and the lock released, so the next run resumes.
    """
    options = options or TagOptions()
    options.check()
    resolve_providers(bundle.device)  # an unusable --device fails now, not after the walk
    pool = LocalPool(bundle, options)
    return core.tag(root, OutputTarget.resolve(out), bundle.manifest, options, pool,
                    progress or Progress())


__all__ = ["DecodeJob", "DecodeResult", "StageTimes", "TagError", "TagOptions", "TagSummary",
           "ThreadPlan", "decode_file", "plan_threads", "tag_collection"]
