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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from artylyze.index.faiss_index import (
    RECALL_K,
    build_index,
    choose_factory,
    recall_at,
)

CHUNK = 100_000


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries for recall")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/index_scale.json"))
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        rows += run_size(n, args.dim, args.queries, args.latency_queries, args.seed)
    print("\n" + table(rows))
    report = {
        "benchmark": "index_scale", "dim": args.dim, "queries": args.queries,
        "picks": {str(n): choose_factory(n) for n in args.sizes},
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
