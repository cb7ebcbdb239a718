"""How long ``artylyze teach`` takes on a 100,000-work collection (the issue asks < 30 s).

A synthetic meta.parquet with the shipped bundle's schema: 100k ok rows whose 256-d
embeddings come from 12 clusters, the style columns filled as a tagged output would have
them. Two runs of the real command (a subprocess, imports and all): the wall clock, and the
CPU seconds it used (user + system), which a busy shared machine does not inflate:

- a new task (``object_type``) from 20 labels for each of 5 classes;
- corrections of a built-in task (``--task style``): 500 labels, plus the confident machine
  labels teach trains on.

    python benchmarks/teach_speed.py [--rows 100000] [--work DIR]

Writes benchmarks/results/teach_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artylyze.model.manifest import load_manifest
from artylyze.store import TOP_TYPE, make_schema

RESULTS = Path(__file__).parent / "results" / "teach_speed.json"
BUNDLE = Path(__file__).resolve().parents[1] / "artylyze" / "assets" / "bundle"


def synthetic_meta(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    """Write the collection; returns each row's cluster (the 'true' class)."""
    manifest = load_manifest(BUNDLE)
    schema = make_schema(manifest, "/collection", 3)
    rng = np.random.default_rng(seed)
    dim = manifest.embedding_dim
    centres = rng.normal(size=(12, dim)).astype(np.float32)
    cluster = rng.integers(0, 12, rows)
    x = centres[cluster] + rng.normal(scale=1.2, size=(rows, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    styles = next(t.labels for t in manifest.tasks if t.name == "style")
    machine = np.where(rng.random(rows) < 0.7, cluster, rng.integers(0, 12, rows))
    names = np.array(styles, dtype=object)[machine]
    score = rng.uniform(0.3, 1.0, rows).astype(np.float32)
    cols = {
        "path": pa.array([f"img/{i:07d}.jpg" for i in range(rows)]),
        "size": pa.array(np.full(rows, 20_000, np.int64)),
        "mtime_ns": pa.array(np.arange(rows, dtype=np.int64)),
        "sha256": pa.array([f"{i:064x}" for i in range(rows)]),
        "status": pa.array(["ok"] * rows),
        "style": pa.array(names, pa.string()),
        "style_score": pa.array(score),
        "style_confident": pa.array(score > 0.75),
        "style_top": pa.array([[{"label": n, "score": float(s)}] for n, s in
                               zip(names, score, strict=True)], TOP_TYPE),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        "model": pa.array([manifest.model_id] * rows),
        "tagged_at": pa.array([datetime.now(timezone.utc)] * rows, pa.timestamp("us", tz="UTC")),
    }
    arrays = [cols.get(f.name, pa.nulls(rows, f.type)) for f in schema]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, compression="zstd",
                   row_group_size=8192)
    return cluster


def labels_csv(path: Path, cluster: np.ndarray, names: list[str], per_class: int,
               seed: int) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for c, name in enumerate(names):
            for i in rng.permutation(np.nonzero(cluster == c)[0])[:per_class]:
                w.writerow([f"img/{i:07d}.jpg", name])


def timed_teach(meta: Path, task: str, labels: Path) -> tuple[float, float, str]:
    cmd = [sys.executable, "-c", "from artylyze.cli.main import main; main()", "teach",
           str(meta), "--task", task, "--labels", str(labels), "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode:
        raise SystemExit(f"teach failed: {r.stderr}")
    note = json.loads(pq.read_schema(meta).metadata[b"artylyze.taught"])[task]
    return seconds, cpu, f"{note['kind']} (cv {note['cv_accuracy']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="teach-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    meta = work / "meta.parquet"
    cluster = synthetic_meta(meta, args.rows)
    mb = meta.stat().st_size / 1e6
    styles = list(next(t.labels for t in load_manifest(BUNDLE).tasks if t.name == "style"))
    runs = []
    labels_csv(work / "new.csv", cluster, [f"type{c}" for c in range(5)], 20, 1)
    runs.append(("object_type (new, 5 x 20 labels)", "object_type", work / "new.csv"))
    labels_csv(work / "style.csv", cluster, styles[:10], 50, 2)
    runs.append(("style (built-in, 500 corrections)", "style", work / "style.csv"))
    results = {"rows": args.rows, "file_mb": round(mb, 1), "cpus": os.cpu_count(), "runs": []}
    print(f"{args.rows:,} rows, meta.parquet {mb:.0f} MB, {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.1f} at the start")
    print(f"{'run':40s} {'wall s':>7s} {'CPU s':>7s}  chosen")
    for name, task, labels in runs:
        seconds, cpu, chosen = timed_teach(meta, task, labels)
        results["runs"].append({"run": name, "seconds": round(seconds, 2),
                                "cpu_seconds": round(cpu, 2), "chosen": chosen,
                                "load_after": round(os.getloadavg()[0], 1)})
        print(f"{name:40s} {seconds:7.1f} {cpu:7.1f}  {chosen}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
