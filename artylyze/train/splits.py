"""A manifest's train/val/test splits as decoded uint8 images and integer label codes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artylyze.train import data
from artylyze.train.manifest import read_manifest


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, S, S, 3]
    codes: dict[str, np.ndarray]
    paths: list[str]


def load_splits(manifest: str, tasks: tuple[str, ...], input_size: int, resize: str,
                cache_dir: Path, limit: int | None, seed: int, log: Callable[[str], None]
                ) -> tuple[dict[str, Split], data.Encoded, dict]:
    """Every split of ``manifest`` (at most ``limit`` random rows each), labels encoded once
    over the whole manifest so codes agree across splits."""
    df, root = read_manifest(manifest)
    enc = data.encode_labels(df, tasks)
    splits = {}
    for name in ("train", "val", "test"):
        rows = np.flatnonzero(df["split"].to_numpy() == name)
        if limit:
            rows = np.sort(np.random.default_rng(seed).permutation(rows)[:limit])
        paths = df["path"].iloc[rows].tolist()
        t0 = time.time()
        images = data.load_image_array(paths, root, input_size, resize, cache_dir)
        log(f"{name}: {len(rows)} images loaded in {time.time() - t0:.1f}s")
        splits[name] = Split(images, {t: c[rows] for t, c in enc.codes.items()}, paths)
    summary = {"manifest": str(manifest), "rows": {k: len(v.paths) for k, v in splits.items()},
               "classes": {t: len(v) for t, v in enc.labels.items()}}
    return splits, enc, summary
