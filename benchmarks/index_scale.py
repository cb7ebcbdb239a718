"""How the similarity index scales: build time, memory, query latency and recall@10 at 100k
and 1M vectors, exact search versus the index type ArtyLyze picks for that size.

The vectors are random unit vectors with cluster structure (like embeddings of a large
collection: many loose groups), and the queries are new vectors from the same distribution,
never in the index. Recall@10 is measured against exact search on those queries, so it is
independent of the recall ArtyLyze estimated at build time (also reported).

    OMP_NUM_THREADS=2 python benchmarks/index_scale.py                     # 100k and 1M
    python benchmarks/index_scale.py --sizes 100000 --json /tmp/scale.json

Latency is per single query (one vector per search call, one thread), the way
``artylyze similar`` asks; throughput is a batch of all queries with all threads.

Streaming mode (``--stream``): the path for collections whose embeddings do not fit in
memory. For each size it writes a Parquet dataset of clustered unit vectors in part files
(the meta.parquet schema) to a temp dir, runs ``artylyze index build DIR --stream`` in a
child process, and reports the child's build time and peak RSS (``ru_maxrss`` from
``wait4``), then recall@10 of new queries against exact search (computed here by a
streaming pass over the parts) and query latency. Then it projects to 10M vectors from the
measured sizes: RSS as a straight line a + b*n through the two largest sizes (what is held
grows linearly: index codes, row metadata, float16 cluster coordinates; the sample is
capped at 500k rows), then corrected for the codes the default index uses at 10M (PQ64:
64 bytes a vector instead of SQ8's 256, as ``choose_factory`` switches past ~4M);
build time as c * n^1.5 from the largest size (assigning n vectors to 4*sqrt(n) IVF lists
dominates). One size gives no projection: fixed costs dominate small runs. The measured run
(the figures in README)::

    OMP_NUM_THREADS=2 python benchmarks/index_scale.py --stream --sizes 1000000 3000000
    python benchmarks/index_scale.py --stream --sizes 20000 --json /tmp/s.json  # smoke check
    python benchmarks/index_scale.py --stream --sizes 20000 --factory IVF64,PQ64 --json /tmp/s.json

Writes ``benchmarks/results/index_stream.json``; the dataset needs ~1.1 GB of temp disk
per million vectors (``--tmp`` chooses where) and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.index.faiss_index import RECALL_K, build_index, choose_factory
from artylyze.index.recall import ExactTopK, recall_at
from artylyze.index.sources import ParquetSource
from artylyze.index.store import load_index_dir

CHUNK = 100_000
PART_ROWS = 250_000
STREAM_JSON = Path("benchmarks/results/index_stream.json")
PROJECT_TO = 10_000_000
RSS_LIMIT_MB = 4096


def rss_mb() -> float:
    """Resident memory now, from /proc (ru_maxrss only ever grows)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clustered_unit_vectors(n: int, dim: int, n_clusters: int, seed: int,
                           n_groups: int = 100) -> np.ndarray:
    """``n`` unit vectors with structure at two scales, like real embeddings: ``n_groups``
    broad groups (think styles), ``n_clusters`` tighter clusters inside them (artists),
    and a decaying spectrum (variance falls off like 1/rank, as PCA of embeddings shows).
    A point's nearest neighbour has cosine ~0.75, its 10th ~0.7 (at 50k points).
    The centres depend only on ``n_clusters``; ``seed`` draws the points."""
    crng = np.random.default_rng(12345)
    spectrum = ((np.arange(dim) + 1.0) ** -0.5).astype(np.float32)
    groups = crng.standard_normal((n_groups, dim), dtype=np.float32) * spectrum
    centres = groups[crng.integers(0, n_groups, n_clusters)]
    centres += 0.7 * crng.standard_normal((n_clusters, dim), dtype=np.float32) * spectrum
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        x = centres[rng.integers(0, n_clusters, m)]
        x += 1.0 * rng.standard_normal((m, dim), dtype=np.float32) * spectrum
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
    return out


def single_query_latency(index: faiss.Index, queries: np.ndarray, k: int,
                         n: int) -> dict[str, float]:
    """Per-query wall time in ms (median, p95) for ``n`` queries asked one at a time."""
    faiss.omp_set_num_threads(1)
    times = []
    index.search(queries[:1], k)  # warm-up
    for q in queries[:n]:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append((time.perf_counter() - t) * 1000)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {"latency_ms_p50": round(float(np.median(times)), 3),
            "latency_ms_p95": round(float(np.percentile(times, 95)), 3)}


def batch_qps(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    ids = index.search(queries, k)[1]
    return len(queries) / (time.perf_counter() - t), ids


def run_size(n: int, dim: int, n_queries: int, n_latency: int, seed: int) -> list[dict[str, Any]]:
    n_clusters = max(100, n // 200)
    print(f"\n== {n:,} vectors, {dim} dims, {n_clusters} clusters ==", flush=True)
    x = clustered_unit_vectors(n, dim, n_clusters, seed)
    queries = clustered_unit_vectors(n_queries, dim, n_clusters, seed + 1)
    rows = []

    base = rss_mb()
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    exact_build = time.perf_counter() - t
    exact_mem = rss_mb() - base
    qps, truth = batch_qps(flat, queries, RECALL_K)
    rows.append({"n": n, "index": "Flat (exact)", "build_s": round(exact_build, 2),
                 "memory_mb": round(exact_mem, 1), "recall_at_10": 1.0, "batch_qps": round(qps),
                 **single_query_latency(flat, queries, RECALL_K, n_latency)})
    print(rows[-1], flush=True)
    del flat

    base = rss_mb()
    t = time.perf_counter()
    built = build_index(x, seed=seed, log=lambda m: print("  " + m, flush=True))
    pick_build = time.perf_counter() - t
    pick_mem = rss_mb() - base
    qps, ids = batch_qps(built.index, queries, RECALL_K)
    rows.append({"n": n, "index": f"ArtyLyze: {built.factory}", "params": built.params,
                 "build_s": round(pick_build, 2), "memory_mb": round(pick_mem, 1),
                 "recall_at_10": round(recall_at(ids, truth), 4),
                 "recall_at_10_estimated_at_build": round(built.recall, 4),
                 "batch_qps": round(qps),
                 **single_query_latency(built.index, queries, RECALL_K, n_latency)})
    print(rows[-1], flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'vectors':>10} {'index':<34} {'build s':>8} {'mem MB':>8} {'recall@10':>9} "
            f"{'p50 ms':>7} {'p95 ms':>7} {'batch q/s':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        params = ",".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())
        name = r["index"] + (f" {params}" if params else "")
        lines.append(f"{r['n']:>10,} {name:<34} {r['build_s']:>8.1f} {r['memory_mb']:>8.0f} "
                     f"{r['recall_at_10']:>9.3f} {r['latency_ms_p50']:>7.2f} "
                     f"{r['latency_ms_p95']:>7.2f} {r['batch_qps']:>10,}")
    return "\n".join(lines)


def write_parquet_dataset(folder: Path, n: int, dim: int, n_clusters: int, seed: int) -> None:
    """``n`` clustered unit vectors as meta.parquet part files, one part at a time (the
    parent never holds them all)."""
    folder.mkdir(parents=True)
    bundle = {"format_version": 1, "name": "bench", "model_id": "bench@0", "tasks": [],
              "embedding_dim": dim}
    meta = {"artylyze.bundle": json.dumps(bundle), "artylyze.root": str(folder),
            "artylyze.schema_version": "1"}
    for part, start in enumerate(range(0, n, PART_ROWS)):
        m = min(PART_ROWS, n - start)
        x = clustered_unit_vectors(m, dim, n_clusters, seed * 1000 + part)
        ids = np.arange(start, start + m)
        table = pa.table({
            "path": pa.array([f"img/{i:09d}.jpg" for i in ids]),
            "size": pa.array(ids + 1000, pa.int64()), "mtime_ns": pa.array(ids, pa.int64()),
            "sha256": pa.array([f"{i:064x}" for i in ids]),
            "width": pa.array(np.full(m, 224, np.int32)),
            "height": pa.array(np.full(m, 224, np.int32)),
            "status": pa.array(["ok"] * m), "error": pa.nulls(m, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
            "model": pa.array(["bench@0"] * m),
            "tagged_at": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)] * m,
                                  pa.timestamp("us", tz="UTC")),
        }).replace_schema_metadata(meta)
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=65_536)


def child_build(data: Path, out: Path, chunk_rows: int,
                factory: str | None) -> tuple[float, float, str]:
    """``artylyze index build --stream`` in a child: (wall s, peak RSS MB, its stderr)."""
    cmd = [sys.executable, "-c", "from artylyze.cli.main import main; main()", "index",
           "build", str(data), "--out", str(out), "--stream", "--chunk-rows", str(chunk_rows),
           *(["--factory", factory] if factory else [])]
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        log.seek(0)
        text = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child build failed:\n{text}")
    return wall, usage.ru_maxrss / 1024, text


def run_stream_size(n: int, dim: int, n_queries: int, n_latency: int, seed: int,
                    chunk_rows: int, tmp: Path | None, factory: str | None) -> dict[str, Any]:
    n_clusters = max(100, n // 200)
    print(f"\n== streaming build: {n:,} vectors, {dim} dims, {n_clusters} clusters ==",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="artylyze-stream-", dir=tmp))
    try:
        t = time.perf_counter()
        write_parquet_dataset(work / "data", n, dim, n_clusters, seed)
        print(f"  wrote dataset in {time.perf_counter() - t:.1f}s", flush=True)
        wall, rss, text = child_build(work / "data", work / "index", chunk_rows, factory)
        steps = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("  ")]
        print("  " + "\n  ".join(steps[-8:]), flush=True)
        queries = clustered_unit_vectors(n_queries, dim, n_clusters, seed + 1)
        truth = ExactTopK(queries, RECALL_K)
        source = ParquetSource(work / "data", chunk_rows)
        for start, ok in source.ok_batches(["status", "embedding"]):
            flat = ok.column("embedding").combine_chunks().flatten().to_numpy()
            truth.add(flat.reshape(-1, dim), start)
        index_dir = load_index_dir(work / "index", verify=False)
        qps, ids = batch_qps(index_dir.index, queries, RECALL_K)
        man = index_dir.manifest
        row = {"n": n, "index": f"stream: {man.index_type}", "params": man.search_params,
               "build_s": round(wall, 2), "peak_rss_mb": round(rss, 1),
               "index_file_mb": round(man.files["vectors.faiss"]["bytes"] / 2**20, 1),
               "recall_at_10": round(recall_at(ids, truth.ids), 4),
               "recall_at_10_estimated_at_build": man.recall_at_10,
               "batch_qps": round(qps), "chunk_rows": chunk_rows,
               **single_query_latency(index_dir.index, queries, RECALL_K, n_latency)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(row, flush=True)
    return row


def code_bytes(factory: str, dim: int) -> int:
    """Bytes a vector's code takes in a FAISS index of type ``factory`` (float32 if unknown)."""
    pq_m = re.search(r"PQ(\d+)", factory)
    if pq_m:
        return int(pq_m.group(1))
    return dim if "SQ8" in factory else 2 * dim if "fp16" in factory else 4 * dim


def project(rows: list[dict[str, Any]], dim: int,
            n: int = PROJECT_TO) -> dict[str, Any] | None:
    """RSS: line through the two largest sizes; time: c * n^1.5 from the largest. None with
    one size: a fixed part (imports, the clustering fit, one chunk's temporaries) dominates
    small runs, so one point cannot separate it from the per-vector part."""
    rows = sorted(rows, key=lambda r: r["n"])
    if len(rows) < 2 or rows[-2]["n"] >= rows[-1]["n"]:
        return None
    a, last = rows[-2], rows[-1]
    slope = (last["peak_rss_mb"] - a["peak_rss_mb"]) / (last["n"] - a["n"])
    factory = choose_factory(n, dim)
    measured = last["index"].removeprefix("stream: ")
    swap = (code_bytes(measured, dim) - code_bytes(factory, dim)) * n / 2**20
    rss = last["peak_rss_mb"] + slope * (n - last["n"]) - swap
    return {"n": n, "index": factory, "peak_rss_mb": round(rss),
            "rss_model": f"line through the two largest sizes ({round(slope * 1e6)} MB per "
                         f"million), less {round(swap)} MB for {factory}'s smaller codes "
                         f"than {measured}'s",
            "build_s": round(last["build_s"] * (n / last["n"]) ** 1.5),
            "build_model": "c * n^1.5 from the largest size (IVF assignment to 4*sqrt(n) lists)",
            "under_4gb": rss < RSS_LIMIT_MB}


def stream_table(rows: list[dict[str, Any]], projected: dict[str, Any] | None) -> str:
    head = (f"{'vectors':>10} {'index':<30} {'build s':>8} {'peak RSS MB':>11} "
            f"{'index MB':>8} {'recall@10':>9} {'p50 ms':>7} {'p95 ms':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        params = ",".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())
        lines.append(f"{r['n']:>10,} {r['index'] + ' ' + params:<30} {r['build_s']:>8.1f} "
                     f"{r['peak_rss_mb']:>11.0f} {r['index_file_mb']:>8.0f} "
                     f"{r['recall_at_10']:>9.3f} {r['latency_ms_p50']:>7.2f} "
                     f"{r['latency_ms_p95']:>7.2f}")
    p = projected
    if p is None:
        lines.append("(give two sizes, e.g. 1000000 3000000, for a projection to 10M)")
    else:
        lines.append(f"{p['n']:>10,} {'projected: ' + p['index']:<30} {p['build_s']:>8.0f} "
                     f"{p['peak_rss_mb']:>11.0f} {'-':>8} {'-':>9} {'-':>7} {'-':>7}")
    return "\n".join(lines)


def main_stream(args: argparse.Namespace) -> None:
    rows = [run_stream_size(n, args.dim, args.queries, args.latency_queries, args.seed,
                            args.chunk_rows, args.tmp, args.factory) for n in args.sizes]
    projected = project(rows, args.dim)
    print("\n" + stream_table(rows, projected))
    report = {
        "benchmark": "index_stream", "dim": args.dim, "queries": args.queries,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "faiss": faiss.__version__, "numpy": np.__version__,
                    "omp_threads": os.environ.get("OMP_NUM_THREADS")},
        "results": rows, "projection": projected,
    }
    out = args.json or STREAM_JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries for recall")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None,
                        help=f"default: {Path('benchmarks/results/index_scale.json')}, or "
                             f"{STREAM_JSON} with --stream")
    parser.add_argument("--stream", action="store_true",
                        help="streaming build from a Parquet dataset, in a child process")
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--tmp", type=Path, default=None, help="where the dataset is written")
    parser.add_argument("--factory", default=None,
                        help="with --stream: FAISS factory (default: ArtyLyze's pick by size)")
    args = parser.parse_args()
    if args.stream:
        main_stream(args)
        return
    args.json = args.json or Path("benchmarks/results/index_scale.json")
    rows = []
    for n in args.sizes:
        rows += run_size(n, args.dim, args.queries, args.latency_queries, args.seed)
    print("\n" + table(rows))
    report = {
        "benchmark": "index_scale", "dim": args.dim, "queries": args.queries,
        "picks": {str(n): choose_factory(n, args.dim) for n in args.sizes},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "faiss": faiss.__version__, "numpy": np.__version__},
        "peak_rss_mb": round(peak_rss_mb(), 1), "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
