"""Tagging on a Ray cluster: the local engine's decode, model and rows, fanned out by Ray Data.

Why a second engine: one machine's cores cap the local engine; a collection of millions of
scans wants every node and GPU of a cluster. Only the fan-out differs, so everything a row
is made of is reused: :func:`artylyze.engine.decode_file` (sha256 + load_image, the same
read guards and error reasons), :meth:`Bundle.run`, and the store's schema and
row builder. ``ray`` is imported only inside :func:`tag_with_ray`, so the package works
without it.

Pipeline (reader -> mapper -> writer, as in the local engine)::

    driver: walk + plan --from_items (shards)--> decode tasks (CPU) --> inference actors
            (one onnxruntime session each; num_gpus=1 with device cuda) --> driver commits parts

The driver writes the output directory ``DIR/`` as ``part-NNNNN-<runid>.parquet`` files,
each written to a temp file and renamed, so a killed run leaves only whole parts (and those
count as done: a rerun continues where it stopped). Workers never write: they only need to
see the collection and the bundle at the same paths as the driver (a shared filesystem).

Incremental rules, compared with the local engine:

- Same as local: a file with the same size and mtime as its row, tagged by the same model and
  ``top_k``, is not read; an unchanged file that failed keeps its error row unless
  ``retry_errors``; ``full`` or another model tags everything again; rows of files no longer
  found are kept, or dropped with ``prune`` (never those under a directory that could not be
  read); a run with nothing to do leaves the folder untouched and does not start Ray.
- One row per file: a row superseded by a newer part (the file changed, an error retried) is
  removed from its older part at the end of the run (that part is rewritten atomically);
  parts of another model are deleted once the new ones are in. A reader during the run, or
  a crash in between, may see a file twice; the next run resolves it (the newest part wins).
- Not applied: reuse by sha256. A touched, renamed or copied file is inferred again (its sha256
  is still recorded): on a cluster inference is the cheap part, and reuse would need the old
  predictions shipped to the workers or copied in a merge. ``commit_every`` /
  ``commit_seconds`` apply; ``workers``, ``executor`` do not (Ray schedules decoding).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.atomic import atomic_write
from artylyze.bundle import Manifest, load_bundle
from artylyze.engine import (
    DecodeJob,
    TagError,
    TagOptions,
    TagSummary,
    decode_file,
    error_kind,
    plan,
    sweep,
    walk_files,
    warn,
)
from artylyze.imaging import DEFAULT_MAX_BYTES
from artylyze.predict import predictions
from artylyze.progress import Progress
from artylyze.store import (
    ROW_GROUP_ROWS,
    OutputLock,
    OutputTarget,
    State,
    build_row,
    encode_path,
    key_from_metadata,
    known_in,
    known_rows,
    make_schema,
    read_schema,
    refuse_foreign,
    result_key,
    rows_to_table,
)
from artylyze.walk import FileEntry, absolute_root

PART_RE = re.compile(r"part-(\d+)(?:-([0-9a-f]+))?\.parquet")
INSTALL_HINT = "--engine ray needs Ray: pip install 'artylyze[ray]'"
SHARD_BATCHES = 8  # inference batches per shard of the file list: the unit Ray schedules
SHARDS_PER_ACTOR = 4  # at least this many shards per actor, so none waits for work


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run; the rest of a run's settings are the local engine's."""

    address: str | None = None  # None: join RAY_ADDRESS if set, else start a local Ray
    device: str = "cpu"  # cpu | cuda (one GPU per actor) | auto (cuda if the cluster has GPUs)
    actors: int | None = None  # None: one per GPU, else (the cluster's CPUs - 1) / threads
    threads: int | None = None  # onnxruntime threads per actor (= CPUs it reserves); None: 1

    def check(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise TagError(f"--device must be cpu, cuda or auto, got {self.device!r}")
        for name in ("actors", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TagError(f"{name} must be >= 1, got {value}")


@dataclass
class RaySummary(TagSummary):
    """A :class:`TagSummary` plus what only a Ray run has."""

    engine: str = "ray"
    address: str = ""  # the cluster the run used
    actors: int = 0  # inference actors
    pipeline: float = 0.0  # seconds the driver waited on decode + inference
    parts_written: int = 0
    parts_rewritten: int = 0  # older parts that lost superseded rows
    parts_removed: int = 0  # older parts left empty, or of another model


# ---------------------------------------------------------------- worker side

def decode_batch(batch: pa.Table, size: int, resize: str, max_pixels: int,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> pa.Table:
    """Ray task: decode a shard of files. Pixels travel as raw bytes, errors as data."""
    results = [decode_file(DecodeJob(p), size, resize, max_pixels, max_bytes)
               for p in batch.column("abspath").to_pylist()]
    return pa.table({
        "path": batch.column("path"),
        "size": batch.column("size"),
        "mtime_ns": batch.column("mtime_ns"),
        "sha256": pa.array([r.sha256 for r in results], pa.string()),
        "width": pa.array([r.width for r in results], pa.int32()),
        "height": pa.array([r.height for r in results], pa.int32()),
        "error": pa.array([r.error for r in results], pa.string()),
        "pixels": pa.array([None if r.pixels is None else r.pixels.tobytes() for r in results],
                           pa.binary()),
    })


class Tagger:
    """Ray actor: one verified bundle and onnxruntime session, reused for every batch."""

    def __init__(self, bundle_dir: str | None, model_id: str, device: str, threads: int,
                 root: str, top_k: int) -> None:
        self.bundle = load_bundle(bundle_dir, device=device, threads=threads)
        if self.bundle.model_id != model_id:  # e.g. another artylyze version on this node
            raise TagError(f"this worker's bundle is {self.bundle.model_id}, the driver's "
                           f"{model_id}; give --model a folder every node sees")
        self.schema = make_schema(self.bundle.manifest, root, top_k)
        self.top_k = top_k

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols = batch.to_pydict()
        manifest = self.bundle.manifest
        ok = [i for i, err in enumerate(cols["error"]) if err is None]
        found = {}
        if ok:
            shape = (manifest.input_size, manifest.input_size, 3)
            images = np.stack([np.frombuffer(cols["pixels"][i], np.uint8).reshape(shape)
                               for i in ok])
            found = dict(zip(ok, predictions(self.bundle.run(images), manifest, self.top_k),
                             strict=True))
        now = datetime.now(timezone.utc)
        rows = [build_row(cols["path"][i], cols["size"][i], cols["mtime_ns"][i],
                          sha256=cols["sha256"][i], model=self.bundle.model_id, tagged_at=now,
                          width=cols["width"][i], height=cols["height"][i],
                          prediction=found.get(i), error=cols["error"][i])
                for i in range(batch.num_rows)]
        return rows_to_table(rows, self.schema)


# ---------------------------------------------------------------- the output folder

@dataclass(frozen=True)
class Part:
    number: int
    path: Path


def list_parts(folder: Path) -> list[Part]:
    """Part files in write order; the local engine's ``part-NNNNN.parquet`` count too."""
    if not folder.is_dir():
        return []
    parts = [Part(int(m.group(1)), p) for p in folder.iterdir()
             if (m := PART_RE.fullmatch(p.name))]
    return sorted(parts, key=lambda part: (part.number, part.path.name))


def read_state(parts: list[Part], key: str, full: bool) -> tuple[State, list[Part]]:
    """Rows of the parts made with ``key`` (a later part wins a path) and the other parts."""
    state, other = State(key), []
    for part in parts:
        if full or key_from_metadata(read_schema(part.path).metadata or {}) != key:
            other.append(part)
            continue
        for path, known in known_rows(part.path, part.number):
            state.add(path, known)
            state.old_rows += 1
    return state, other


def write_part(table: pa.Table, final: Path) -> None:
    """Temp file in the same folder, then rename: readers and crashes never see half a part."""
    atomic_write(final, lambda f: pq.write_table(table, f, compression="zstd",
                                                 row_group_size=ROW_GROUP_ROWS))


def compact(parts: list[Part], other: list[Part], state: State, summary: RaySummary) -> None:
    """Keep one row per path: drop superseded or pruned rows from older parts."""
    for part in other:
        part.path.unlink()
        summary.parts_removed += 1
    for part in parts:
        paths = pq.read_table(part.path, columns=["path"]).column("path").to_pylist()
        keep = [(k := state.known.get(p)) is not None and k.source == part.number for p in paths]
        if all(keep):
            continue
        if not any(keep):
            part.path.unlink()
            summary.parts_removed += 1
            continue
        table = pq.read_table(part.path)
        write_part(table.filter(pa.array(keep, pa.bool_())), part.path)
        summary.parts_rewritten += 1


class PartSink:
    """Collects result tables on the driver and commits them as numbered parts of one run."""

    def __init__(self, folder: Path, schema: pa.Schema, state: State, options: TagOptions,
                 first_number: int) -> None:
        self.folder, self.schema, self.state, self.options = folder, schema, state, options
        self.run_id = uuid.uuid4().hex[:8]
        self.number = first_number
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.last = time.monotonic()
        self.written: list[Part] = []

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if (self.rows >= self.options.commit_every
                or time.monotonic() - self.last >= self.options.commit_seconds):
            self.commit()

    def commit(self) -> None:
        if not self.rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.concat_tables(self.pending).cast(self.schema)
        part = Part(self.number, self.folder / f"part-{self.number:05d}-{self.run_id}.parquet")
        write_part(table, part.path)
        for path, known in known_in(table, part.number):
            self.state.add(path, known)
        self.written.append(part)
        self.number += 1
        self.pending, self.rows, self.last = [], 0, time.monotonic()


# ---------------------------------------------------------------- the run

def tag_with_ray(root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 bundle_dir: str | os.PathLike[str] | None = None,
                 options: TagOptions | None = None, ray_options: RayOptions | None = None,
                 progress: Progress | None = None) -> RaySummary:
    """Tag every image under ``root`` into the part-file folder ``out_dir`` with Ray Data.

    ``bundle_dir`` None is the shipped bundle (each node loads its own copy, checked against
    the driver's model id). Joins the Ray cluster at ``ray_options.address`` (or an already
    connected one); starts and stops a local one when there is none. Raises
    :class:`TagError` when Ray is missing or nothing can be done, ``StoreError`` when the
    folder is locked, ``CollectionError`` when the root is not a directory.
    """
    options = options or TagOptions()
    ray_options = ray_options or RayOptions()
    options.check()
    ray_options.check()
    progress = progress or Progress()
    t_start = time.perf_counter()
    manifest = load_bundle(bundle_dir).manifest  # verified here, and again on each node
    folder = Path(os.path.abspath(os.fspath(out_dir)))
    if folder.exists() and not folder.is_dir():
        raise TagError(f"--out {folder}: --engine ray writes a folder of parts, but this is a file")
    root_text = absolute_root(root)
    summary = RaySummary(root=root_text, output=str(folder), model=manifest.model_id,
                         executor="ray")
    schema = make_schema(manifest, root_text, options.top_k)
    with OutputLock(OutputTarget(folder, dataset=True)) as lock:
        if lock.took_over:
            warn(summary, progress, f"took over the stale lock of {lock.took_over}")
        for stale in folder.glob("part-*.parquet.*.tmp"):  # left by a killed run
            stale.unlink()
        walked = walk_files(root, options, summary, progress)
        t0 = time.perf_counter()
        parts = list_parts(folder)
        replaced = refuse_foreign(folder, [p.path for p in parts], options.force)
        if replaced:
            warn(summary, progress, replaced)
        state, other = read_state(parts, result_key(manifest, options.top_k), options.full)
        if other and not options.full:
            warn(summary, progress, f"{len(other)} parts in {folder} were made with another "
                  "model or top-k; their files are tagged again")
        todo, failed = plan(walked.files, state, options, summary)
        summary.stages.plan = time.perf_counter() - t0
        sink = PartSink(folder, schema, state, options,
                        max((p.number for p in parts), default=-1) + 1)
        progress.start(len(todo) + len(failed), skipped=summary.unchanged)
        try:
            if failed:
                table = _error_rows(failed, manifest.model_id, schema)
                _count(summary, table, progress)
                sink.add(table)
            if todo:
                _run_pipeline([entry for entry, _ in todo], bundle_dir, manifest, options,
                              ray_options, sink, summary, progress)
            sink.commit()
        finally:
            progress.finish()
        summary.parts_written = len(sink.written)
        sweep(walked, state, options.prune, summary)
        t0 = time.perf_counter()
        old = [p for p in parts if p not in other]
        if sink.written or summary.pruned or other:
            compact(old, other, state, summary)
        else:
            summary.output_unchanged = True
        summary.rows_written = len(state.known)
        summary.stages.merge = time.perf_counter() - t0
    summary.seconds = time.perf_counter() - t_start
    return summary


def _error_rows(entries: Iterable[FileEntry], model: str, schema: pa.Schema) -> pa.Table:
    """Rows of files the walk could already not read (broken links): no worker needed."""
    now = datetime.now(timezone.utc)
    return rows_to_table([build_row(encode_path(e.rel), e.size, e.mtime_ns, sha256=None,
                                    model=model, tagged_at=now, error=e.error)
                          for e in entries], schema)


def _count(summary: RaySummary, table: pa.Table, progress: Progress) -> None:
    """Fold one result table into the summary and the progress display."""
    errors = table.column("error").to_pylist()
    for err in errors:
        if err is None:
            summary.tagged += 1
            summary.images_inferred += 1
        else:
            summary.errors += 1
            summary.errors_by_kind[error_kind(err)] += 1
    progress.advance(len(errors), summary.errors)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] extra, not only ray core
    except ImportError as e:
        raise TagError(INSTALL_HINT) from e
    return ray


def _run_pipeline(entries: list[FileEntry], bundle_dir: str | os.PathLike[str] | None,
                  manifest: Manifest, options: TagOptions, ray_options: RayOptions, sink: PartSink,
                  summary: RaySummary, progress: Progress) -> None:
    """Build the Ray Data pipeline over ``entries`` and stream its rows into ``sink``."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:  # else the caller's connection is used, whatever the address
        try:
            ray.init(address=ray_options.address, include_dashboard=False,
                     logging_level="warning", log_to_driver=False)
        except ConnectionError as e:
            raise TagError(f"cannot join the Ray cluster at {ray_options.address}: {e}") from e
    try:
        quiet_ray_logs()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our Progress reports; Ray's bars would interleave
        ctx.enable_auto_log_stats = False
        actors, threads, gpus = plan_actors(ray.cluster_resources(), ray_options)
        summary.actors, summary.threads = actors, threads
        summary.address = ray.get_runtime_context().gcs_address
        items = [{"path": encode_path(e.rel), "abspath": e.abspath, "size": e.size,
                  "mtime_ns": e.mtime_ns} for e in entries]
        shards = shard_count(len(items), options.batch_size, actors)
        ds = ray.data.from_items(items, override_num_blocks=shards)
        ds = ds.map_batches(decode_batch, batch_format="pyarrow", batch_size=None, num_cpus=1,
                            fn_kwargs={"size": manifest.input_size, "resize": manifest.resize,
                                       "max_pixels": options.max_pixels,
                                       "max_bytes": options.max_bytes})
        ds = ds.map_batches(
            Tagger, batch_format="pyarrow", batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads, num_gpus=gpus,
            fn_constructor_kwargs={
                "bundle_dir": None if bundle_dir is None else os.path.abspath(bundle_dir),
                "model_id": manifest.model_id, "device": "cuda" if gpus else "cpu",
                "threads": threads, "root": summary.root, "top_k": options.top_k})
        t0 = time.perf_counter()
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                t1 = time.perf_counter()
                summary.pipeline += t1 - t0
                _count(summary, table, progress)
                sink.add(table)
                t0 = time.perf_counter()
                summary.stages.write += t0 - t1
        except ray.exceptions.RayError as e:
            raise TagError(f"the Ray pipeline failed: {e}") from e
    finally:
        if started:
            ray.shutdown()


def shard_count(files: int, batch_size: int, actors: int) -> int:
    """Shards of the file list: big enough to amortize a Ray task, enough to feed every actor
    (when decoding is fused into the actors, one shard keeps one actor busy)."""
    most = math.ceil(files / batch_size)  # never less than a batch per shard
    return max(1, min(most, max(math.ceil(most / SHARD_BATCHES), SHARDS_PER_ACTOR * actors)))


def quiet_ray_logs() -> None:
    """Ray Data's INFO lines (execution plans, timings) would bury the run's own summary."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"


def plan_actors(resources: dict[str, float], ray_options: RayOptions) -> tuple[int, int, int]:
    """(inference actors, onnxruntime threads = CPUs per actor, GPUs per actor).

    On GPU one actor per GPU; the decode tasks run apart on the CPUs. On CPU, Ray fuses the
    decode tasks into the actors (same resources: no pixels cross the object store), so the
    actors take every CPU but one, left to the driver that writes the parts; taking them
    all could also stall the pipeline if Ray ran the decode tasks apart.
    """
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    threads = ray_options.threads or 1
    if ray_options.device == "cuda" and gpus < 1:
        raise TagError("--device cuda asked, but the Ray cluster has no GPU")
    if ray_options.device != "cpu" and gpus >= 1:
        return ray_options.actors or gpus, threads, 1
    return ray_options.actors or max(1, (cpus - 1) // threads), threads, 0


__all__ = ["RayOptions", "RaySummary", "Tagger", "decode_batch", "plan_actors", "shard_count",
           "tag_with_ray"]
