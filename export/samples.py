"""The images export looks at: parity checks, int8 calibration and the labelled evaluation.

A source is one of:
- a folder: every image under it, no labels;
- a CSV with a ``path`` column in the wikiart11 layout: paths relative to ``images/`` beside
  the CSV (or to the CSV's own folder), optional ``split`` column, and one column per task
  whose cells are labels (empty = unknown);
- a training manifest (Parquet, from ``artylyze dataset build``): paths relative to the image
  root stored in its ``artylyze.images`` metadata, labels exactly as training saw them
  (rare classes blanked, ``period`` derived from the year).

By default export uses the manifest the checkpoint was trained on, else wikiart11's
labels.csv. Subsets are drawn with a fixed seed, because wikiart11's labels.csv is sorted by
style and its first rows would all be one class.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.export.errors import ExportError
from artylyze.imaging import IMAGE_EXTENSIONS, load_image

DATASET_PARTS = ("shared", "datasets", "wikiart11")
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class Sample:
    """One image file and the labels known for it (task name -> label)."""

    path: Path
    labels: dict[str, str] = field(default_factory=dict)


def find_dataset(start: Sequence[Path] = ()) -> Path | None:
    """wikiart11's labels.csv in ``../shared/datasets`` above the CWD or the package, if any."""
    here = Path(__file__).resolve().parent
    for base in [*start, Path.cwd(), here]:
        for folder in [base, *base.parents]:
            candidate = folder.joinpath(*DATASET_PARTS, LABELS_FILE)
            if candidate.is_file():
                return candidate
    return None


def default_source(data: str | os.PathLike[str] | None,
                   training: dict[str, Any] | None = None) -> Path:
    """Where default images come from: ``data``, else the checkpoint's training manifest
    (``training["manifest"]``, when that file is here), else wikiart11's labels.csv."""
    if data is None and isinstance(training, dict) and training.get("manifest"):
        manifest = Path(str(training["manifest"]))
        if manifest.is_file():
            return manifest
    return dataset_labels(data)


def dataset_labels(data: str | os.PathLike[str] | None) -> Path:
    """labels.csv of a dataset folder (or the CSV / Parquet itself); the default is wikiart11."""
    if data is None:
        found = find_dataset()
        if found is None:
            raise ExportError(
                "no default image set: ../shared/datasets/wikiart11 was not found; pass "
                "--data, or --check-images / --calibration / --eval-labels")
        return found
    path = Path(data)
    csv_path = path / LABELS_FILE if path.is_dir() else path
    if not csv_path.is_file():
        raise ExportError(f"{data}: expected a dataset folder with {LABELS_FILE} or a CSV file")
    return csv_path


def read_samples(source: str | os.PathLike[str], split: str | None = None,
                 count: int | None = None, seed: int = 0) -> list[Sample]:
    """Samples from a folder or CSV; ``split`` filters a CSV that has a split column."""
    path = Path(source)
    if path.is_dir():
        samples = [Sample(p) for p in sorted(path.rglob("*"))
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    elif path.is_file() and path.suffix.lower() == ".parquet":
        samples = _read_parquet(path, split)
    elif path.is_file():
        samples = _read_csv(path, split)
    else:
        raise ExportError(f"{source}: no such folder or CSV file")
    if not samples:
        where = f" in split {split!r}" if split else ""
        raise ExportError(f"{source}: no images found{where}")
    if count is not None and count < len(samples):
        keep = np.sort(np.random.default_rng(seed).choice(len(samples), count, replace=False))
        samples = [samples[i] for i in keep]
    return samples


def _read_csv(path: Path, split: str | None) -> list[Sample]:
    base = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ExportError(f"{path}: a CSV of images needs a 'path' column")
        use_split = split is not None and "split" in reader.fieldnames
        skip = {"path", "split"}
        samples = []
        for row in reader:
            if use_split and row["split"] != split:
                continue
            labels = {k: v for k, v in row.items() if k not in skip and k and v}
            samples.append(Sample(base / row["path"], labels))
    return samples


def _read_parquet(path: Path, split: str | None) -> list[Sample]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "path" not in table.column_names:
        raise ExportError(f"{path}: a manifest of images needs a 'path' column")
    root = (table.schema.metadata or {}).get(b"artylyze.images")
    base = Path(root.decode()) if root else path.parent
    use_split = split is not None and "split" in table.column_names
    samples = []
    for row in table.to_pylist():
        if use_split and row["split"] != split:
            continue
        labels = {k: v for k, v in row.items()
                  if k not in ("path", "split") and isinstance(v, str) and v}
        samples.append(Sample(base / row["path"], labels))
    return samples


def load_pixels(samples: Sequence[Sample], size: int, resize: str) -> np.ndarray:
    """uint8 ``[N, size, size, 3]`` exactly as tagging will decode them."""
    return np.stack([load_image(s.path, size, resize).pixels for s in samples])


def batches(samples: Sequence[Sample], size: int, resize: str,
            batch: int) -> Iterator[tuple[list[Sample], np.ndarray]]:
    """Decode ``batch`` samples at a time, so memory stays flat on large evaluation sets."""
    for i in range(0, len(samples), batch):
        chunk = list(samples[i:i + batch])
        yield chunk, load_pixels(chunk, size, resize)
