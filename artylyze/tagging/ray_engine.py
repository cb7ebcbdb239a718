"""Tagging on a Ray cluster: the tagging core's decode and infer steps, fanned out by Ray Data.

Why a second engine: one machine's cores cap the local engine; a collection of millions of
scans wants every node and GPU of a cluster. Only the fan-out differs: this module is a
*distributor* of :mod:`artylyze.tagging` like :class:`artylyze.tagging.engine.LocalPool`, so the
walk, the plan, sha256 reuse, the rows, the on-disk state, crash-safe parts and the final
merge are the local engine's. ``ray`` is imported only when a run needs the cluster, so the
package works without it.

Pipeline::

    driver: walk + plan --from_items (shards)--> decode tasks (CPU: decode_file, skipped for
            a sha256 with known predictions) --> inference actors (one onnxruntime session
            each; num_gpus=1 with device cuda) --> driver: record (rows, reuse) -> parts

Workers never write: they only need to see the collection and the bundle at the same paths
as the driver (a shared filesystem), and send back the model's outputs, not rows. ``--out``
is a folder (a Parquet dataset of part files); ``workers`` and ``executor`` do not apply
(Ray schedules decoding). A file whose sha256 has predictions is not decoded again; one
found a second time in the same run may be inferred on the cluster, but its row is still the
first one's.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from artylyze.imaging import DEFAULT_MAX_BYTES
from artylyze.model.bundle import Manifest, load_bundle
from artylyze.progress import Progress
from artylyze.store import OutputTarget, StoreError
from artylyze.tagging import core
from artylyze.tagging.core import TagError, TagOptions, Todo
from artylyze.tagging.decode import DecodeJob, DecodeResult, decode_file
from artylyze.tagging.record import Recorder
from artylyze.tagging.summary import TagSummary

INSTALL_HINT = "--engine ray needs Ray: pip install 'artylyze[ray]'"
SHARD_BATCHES = 8  # inference batches per shard of the file list: the unit Ray schedules
SHARDS_PER_ACTOR = 4  # at least this many shards per actor, so none waits for work
OUT = "out."  # prefix of the model output columns a Tagger sends back
RESULT_COLUMNS = ("sha256", "width", "height", "error", "kind", "known")


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


# ---------------------------------------------------------------- worker side

def decode_batch(batch: pa.Table, size: int, resize: str, max_pixels: int,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> pa.Table:
    """Ray task: decode a shard of files. Pixels travel as raw bytes, errors as data."""
    hints = batch.column("hints").to_pylist()
    results = [decode_file(DecodeJob(p, tuple(h or ())), size, resize, max_pixels, max_bytes)
               for p, h in zip(batch.column("abspath").to_pylist(), hints, strict=True)]
    return pa.table({
        "i": batch.column("i"),
        **_result_columns(results),
        "pixels": pa.array([None if r.pixels is None else r.pixels.tobytes() for r in results],
                           pa.binary()),
    })


def _result_columns(results: list[DecodeResult]) -> dict[str, pa.Array]:
    return {
        "sha256": pa.array([r.sha256 for r in results], pa.string()),
        "width": pa.array([r.width for r in results], pa.int32()),
        "height": pa.array([r.height for r in results], pa.int32()),
        "error": pa.array([r.error for r in results], pa.string()),
        "kind": pa.array([r.kind for r in results], pa.string()),
        "known": pa.array([r.known for r in results], pa.bool_()),
    }


class Tagger:
    """Ray actor: one verified bundle and onnxruntime session, reused for every batch.

    Sends back the decode results and, for the files it inferred, the model's outputs
    (zeros elsewhere); the driver makes the rows."""

    def __init__(self, bundle_dir: str | None, model_id: str, device: str,
                 threads: int) -> None:
        self.bundle = load_bundle(bundle_dir, device=device, threads=threads)
        if self.bundle.model_id != model_id:  # e.g. another artylyze version on this node
            raise TagError(f"this worker's bundle is {self.bundle.model_id}, the driver's "
                           f"{model_id}; give --model a folder every node sees")

    def __call__(self, batch: pa.Table) -> pa.Table:
        manifest = self.bundle.manifest
        errors = batch.column("error").to_pylist()
        known = batch.column("known").to_pylist()
        todo = [i for i, (err, k) in enumerate(zip(errors, known, strict=True))
                if err is None and not k]
        n = batch.num_rows
        columns = {name: batch.column(name) for name in ("i", *RESULT_COLUMNS)}
        inferred = np.zeros(n, bool)
        calls = np.zeros(n, np.int32)
        outputs: dict[str, np.ndarray] = {}
        if todo:
            pixels = batch.column("pixels").to_pylist()
            shape = (manifest.input_size, manifest.input_size, 3)
            images = np.stack([np.frombuffer(pixels[i], np.uint8).reshape(shape) for i in todo])
            for name, values in self.bundle.run(images).items():
                values = values.reshape(len(todo), -1)  # per-image scalars (novelty): [n, 1]
                full = np.zeros((n, values.shape[1]), np.float32)
                full[todo] = values
                outputs[name] = full
            inferred[todo] = True
            calls[0] = 1
        return pa.table({**columns, "inferred": inferred, "calls": calls,
                         **{OUT + name: _matrix_column(v) for name, v in outputs.items()}})


def _matrix_column(values: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values, np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.list_size
    return np.asarray(column.flatten(), np.float32).reshape(len(column), width)


# ---------------------------------------------------------------- driver side

class RayCluster:
    """The Ray distributor: decode tasks and inference actors; the driver records."""

    engine = "ray"

    def __init__(self, bundle_dir: str | os.PathLike[str] | None, manifest: Manifest,
                 options: TagOptions, ray_options: RayOptions) -> None:
        self.bundle_dir = None if bundle_dir is None else os.path.abspath(bundle_dir)
        self.manifest, self.options, self.ray_options = manifest, options, ray_options

    def describe(self, summary: TagSummary) -> None:
        summary.executor = "ray"  # workers and address stay 0 and "" unless Ray is needed

    def close(self) -> None:
        """Nothing to free: the actors go with the pipeline."""

    def run(self, todo: Todo, recorder: Recorder, summary: TagSummary,
            progress: Progress) -> None:
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:  # else the caller's connection is used, whatever the address
            try:
                ray.init(address=self.ray_options.address, include_dashboard=False,
                         logging_level="warning", log_to_driver=False)
            except ConnectionError as e:
                raise TagError(f"cannot join the Ray cluster at {self.ray_options.address}: "
                               f"{e}") from e
        try:
            self._stream(ray, todo, recorder, summary)
        finally:
            if started:
                ray.shutdown()

    def _stream(self, ray: Any, todo: Todo, recorder: Recorder, summary: TagSummary) -> None:
        quiet_ray_logs()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our Progress reports; Ray's bars would interleave
        ctx.enable_auto_log_stats = False
        actors, threads, gpus = plan_actors(ray.cluster_resources(), self.ray_options)
        summary.workers, summary.threads = actors, threads
        summary.address = ray.get_runtime_context().gcs_address
        options, manifest = self.options, self.manifest
        items = [{"i": i, "abspath": job.abspath, "hints": list(job.hints)}
                 for i, (_, job) in enumerate(todo)]
        ds = ray.data.from_items(items, override_num_blocks=shard_count(
            len(items), options.batch_size, actors))
        ds = ds.map_batches(decode_batch, batch_format="pyarrow", batch_size=None, num_cpus=1,
                            fn_kwargs={"size": manifest.input_size, "resize": manifest.resize,
                                       "max_pixels": options.max_pixels,
                                       "max_bytes": options.max_bytes})
        ds = ds.map_batches(
            Tagger, batch_format="pyarrow", batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads, num_gpus=gpus,
            fn_constructor_kwargs={"bundle_dir": self.bundle_dir, "model_id": manifest.model_id,
                                   "device": "cuda" if gpus else "cpu", "threads": threads})
        t0 = time.perf_counter()
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                summary.stages.decode_wait += time.perf_counter() - t0
                record_results(table, todo, recorder, summary)
                t0 = time.perf_counter()
        except ray.exceptions.RayError as e:
            raise TagError(f"the Ray pipeline failed: {e}") from e


def record_results(table: pa.Table, todo: Todo, recorder: Recorder,
                   summary: TagSummary) -> None:
    """Hand one table of Tagger results to the recorder, as the local pool does per file."""
    cols = table.select(["i", *RESULT_COLUMNS, "inferred"]).to_pydict()
    summary.images_inferred += sum(cols["inferred"])
    summary.inference_calls += int(np.asarray(table.column("calls")).sum())
    batch, rows = [], []
    for j, i in enumerate(cols["i"]):
        result = DecodeResult(cols["sha256"][j], width=cols["width"][j],
                              height=cols["height"][j], error=cols["error"][j],
                              kind=cols["kind"][j], known=cols["known"][j])
        entry = todo[i][0]
        if not recorder.route(entry, result):
            continue
        if not cols["inferred"][j]:  # never: the actors infer every file they decoded
            recorder.error(entry, result.sha256, "internal: not inferred; run again", "internal")
            continue
        batch.append((entry, result))
        rows.append(j)
    if batch:
        outputs = {name[len(OUT):]: _matrix(table.column(name))[rows]
                   for name in table.column_names if name.startswith(OUT)}
        recorder.inferred(batch, outputs)


def tag_with_ray(root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 bundle_dir: str | os.PathLike[str] | None = None,
                 options: TagOptions | None = None, ray_options: RayOptions | None = None,
                 progress: Progress | None = None) -> TagSummary:
    """Tag every image under ``root`` into the Parquet dataset folder ``out_dir`` with Ray.

    ``bundle_dir`` None is the shipped bundle (each node loads its own copy, checked against
    the driver's model id). Joins the Ray cluster at ``ray_options.address`` (or an already
    connected one); starts and stops a local one when there is none, and none at all when
    nothing needs tagging. Raises :class:`TagError` when Ray is missing or nothing can be
    done, and what :func:`artylyze.tagging.engine.tag_collection` raises about the output.
    """
    options = options or TagOptions()
    ray_options = ray_options or RayOptions()
    options.check()
    ray_options.check()
    manifest = load_bundle(bundle_dir).manifest  # verified here, and again on each node
    try:
        target = OutputTarget.resolve(out_dir, dataset=True)
    except StoreError as e:
        raise TagError(f"--out {out_dir}: --engine ray writes a folder of parts, but this is "
                       "a file") from e
    cluster = RayCluster(bundle_dir, manifest, options, ray_options)
    return core.tag(root, target, manifest, options, cluster, progress or Progress())


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] extra, not only ray core
    except ImportError as e:
        raise TagError(INSTALL_HINT) from e
    return ray


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
    actors take every CPU but one, left to the driver that records the rows; taking them
    all could also stall the pipeline if Ray ran the decode tasks apart.
    """
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    threads = ray_options.threads or 1
    if ray_options.device == "cuda" and gpus < 1:
        raise TagError("--device cuda asked, but the Ray cluster has no GPU")
    if ray_options.device != "cpu" and gpus >= 1:
        return ray_options.actors or gpus, threads, 1
    return ray_options.actors or max(1, (cpus - 1) // threads), threads, 0


__all__ = ["RayCluster", "RayOptions", "Tagger", "decode_batch", "plan_actors",
           "record_results", "shard_count", "tag_with_ray"]
