"""Synthetic collections for the index tests: meta.parquet files that follow the contract in
TEAM.md, with planted clusters, labels and images (written by Pillow, embedded by a tiny bundle).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from artylyze.imaging import load_image
from artylyze.model.bundle import Bundle, load_bundle

STYLES = ("Baroque", "Cubism", "Impressionism")
GENRES = ("portrait", "landscape", "still_life")


def write_meta(path: Path, paths: list[str], vectors: np.ndarray | None,
               predictions: dict[str, list[str]], labels: dict[str, tuple[str, ...]],
               model_id: str, root: Path | str, status: list[str] | None = None,
               bundle: dict | None = None, models: list[str] | None = None,
               extra: dict[str, list] | None = None, sha256: list[str] | None = None) -> Path:
    """Write a meta.parquet with the contract's columns, in order, and its key-value metadata."""
    n = len(paths)
    status = status or ["ok"] * n
    dim = vectors.shape[1] if vectors is not None else 16
    cols: dict[str, pa.Array] = {
        "path": pa.array(paths, pa.string()),
        "size": pa.array([1000 + i for i in range(n)], pa.int64()),
        "mtime_ns": pa.array([1_700_000_000_000_000_000 + i for i in range(n)], pa.int64()),
        "sha256": pa.array(sha256 or [f"{i:064x}" for i in range(n)], pa.string()),
        "width": pa.array([224] * n, pa.int32()),
        "height": pa.array([224] * n, pa.int32()),
        "status": pa.array(status, pa.string()),
        "error": pa.array([None if s == "ok" else "cannot decode" for s in status], pa.string()),
    }
    label_type = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))
    for task, values in predictions.items():
        ok = [s == "ok" for s in status]
        cols[task] = pa.array([v if o else None for v, o in zip(values, ok, strict=True)])
        cols[f"{task}_score"] = pa.array([0.9 if o else None for o in ok], pa.float32())
        cols[f"{task}_top"] = pa.array([[{"label": v, "score": 0.9}] if o else None
                                        for v, o in zip(values, ok, strict=True)], label_type)
    emb = [None if s != "ok" or vectors is None else vectors[i].tolist()
           for i, s in enumerate(status)]
    cols["embedding"] = pa.array(emb, pa.list_(pa.float32(), dim))
    cols["model"] = pa.array(models or [model_id] * n, pa.string())
    cols["tagged_at"] = pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)] * n,
                                 pa.timestamp("us", tz="UTC"))
    for name, values in (extra or {}).items():
        cols[name] = pa.array(values)
    bundle = bundle or {
        "format_version": 1, "name": model_id.split("@")[0], "model_id": model_id,
        "backbone": "tiny", "input": {"size": 32, "resize": "stretch"},
        "tasks": [{"name": t, "labels": list(v)} for t, v in labels.items()],
        "embedding_dim": dim, "model_sha256": "0" * 64,
    }
    table = pa.table(cols).replace_schema_metadata({
        "artylyze.bundle": json.dumps(bundle), "artylyze.root": str(Path(root).resolve()),
        "artylyze.schema_version": "1"})
    pq.write_table(table, path)
    return path


def planted(n_per: int = 30, dim: int = 16, seed: int = 0, spread: float = 0.08
            ) -> tuple[np.ndarray, list[str], list[str]]:
    """Three tight, well-separated groups of unit vectors with a style and genre each."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:3]
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    styles = [STYLES[i // n_per] for i in range(3 * n_per)]
    genres = [GENRES[i // n_per] for i in range(3 * n_per)]
    return x.astype(np.float32), styles, genres


def planted_meta(tmp: Path, n_per: int = 30, dim: int = 16, seed: int = 0,
                 model_id: str = "synthetic@000000000000", **kw) -> Path:
    """A meta.parquet over planted groups; predicted style/genre equal the planted labels."""
    x, styles, genres = planted(n_per, dim, seed)
    paths = [f"{s}/painter-{'abcdefg'[i % 7]}_work-number-{i}-{1800 + i}.jpg"
             for i, s in enumerate(styles)]
    return write_meta(tmp / "meta.parquet", paths, x, {"style": styles, "genre": genres},
                      {"style": STYLES, "genre": GENRES}, model_id, tmp, **kw)


COLOURS = [(200, 30, 30), (30, 160, 40), (40, 60, 200), (220, 200, 40), (150, 40, 160),
           (30, 180, 180), (240, 130, 20), (90, 90, 90)]


def write_images(root: Path, n: int = 24, size: int = 48, seed: int = 0) -> list[str]:
    """Small real images (two colours in quadrant patterns) under ``root``; returns rel paths."""
    rng = np.random.default_rng(seed)
    rels = []
    for i in range(n):
        # (colour, second colour, quadrant) differs for every i < 64: no two images alike.
        a, b = COLOURS[i % 8], COLOURS[(i * 3 + 1 + i // 8) % 8]
        px = np.zeros((size, size, 3), np.uint8)
        px[:] = a
        h = size // 2
        q = i % 4
        px[(q // 2) * h:(q // 2) * h + h, (q % 2) * h:(q % 2) * h + h] = b
        px = np.clip(px.astype(int) + rng.integers(-12, 12, px.shape), 0, 255).astype(np.uint8)
        rel = f"{STYLES[i % 3]}/artist-{i % 5}_painting-{i}-{1850 + i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(root / rel)
        rels.append(rel)
    return rels


def tag_images(bundle_dir: Path, root: Path, rels: list[str], out: Path,
               status: list[str] | None = None) -> Path:
    """What ``artylyze tag`` would write for ``rels``: embeddings and predictions of the bundle."""
    bundle: Bundle = load_bundle(bundle_dir)
    man = bundle.manifest
    px = np.stack([load_image(root / r, man.input_size, man.resize).pixels for r in rels])
    res = bundle.run(px)
    preds = {t: [man.labels(t)[j] for j in res[t].argmax(1)] for t in man.task_names}
    return write_meta(out, rels, res["embedding"], preds,
                      {t.name: t.labels for t in man.tasks}, man.model_id, root, status=status,
                      bundle=man.to_dict(),
                      sha256=[hashlib.sha256((root / r).read_bytes()).hexdigest() for r in rels])


def test_planted_meta_follows_the_contract(tmp_path: Path) -> None:
    meta = planted_meta(tmp_path)
    table = pq.read_table(meta)
    assert table.column_names[:8] == ["path", "size", "mtime_ns", "sha256", "width", "height",
                                      "status", "error"]
    assert table.column_names[-3:] == ["embedding", "model", "tagged_at"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    assert table.schema.metadata[b"artylyze.schema_version"] == b"1"
