"""Build the training manifest: one row per image, one column per task, unknown = null.

Joins one or more image folders with their labels tables (CSV or Parquet, or
class-from-folder-name as torchvision's ImageFolder does) and an optional artist table,
derives ``period`` from recorded years, and blanks rare classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from artylyze.atomic import atomic_write
from artylyze.errors import ArtyLyzeError
from artylyze.imaging import IMAGE_EXTENSIONS
from artylyze.model.dating import PERIOD_STEP, period_of

TASKS = ("style", "genre", "artist", "nationality", "period")
DEFAULT_PERIOD_STEP = PERIOD_STEP


class ManifestError(ArtyLyzeError):
    """The labels table or image folder cannot be turned into a manifest."""


@dataclass
class ManifestReport:
    """What a build kept: rows, per-task coverage and class counts, rows without an image."""

    rows: int
    coverage: dict[str, float] = field(default_factory=dict)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    missing_images: int = 0
    root: Path | None = None  # the folder manifest paths are relative to


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: labels table not found")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False).replace("", None)


def labels_from_folders(images_dir: Path, task: str = "style") -> pd.DataFrame:
    """ImageFolder layout: ``images_dir/<class>/<file>`` gives the class of ``task``."""
    rows = []
    for dirpath, _, files in os.walk(images_dir):
        rel = Path(dirpath).relative_to(images_dir)
        if rel == Path("."):
            continue
        for f in sorted(files):
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                rows.append({"path": (rel / f).as_posix(), task: rel.parts[0]})
    return pd.DataFrame(rows)


def _source_labels(images_dir: Path, labels: str | Path | None,
                   folder_task: str) -> pd.DataFrame:
    df = read_table(labels) if labels else labels_from_folders(images_dir, folder_task)
    if "path" not in df.columns:
        raise ManifestError(f"labels table needs a 'path' column; it has {list(df.columns)}")
    return df


@dataclass(frozen=True)
class LabelledSource:
    """One folder of images and its labels table (None: the class is the folder name)."""

    images: Path
    labels: Path | None = None

    @classmethod
    def find(cls, folder: str | Path, labels: str | Path | None = None) -> LabelledSource:
        """``folder`` is an image folder, or a data set folder holding ``images/`` and
        ``labels.csv`` (as ``../shared/datasets/*`` do)."""
        folder = Path(folder)
        if labels is None and (folder / "images").is_dir() and (folder / "labels.csv").is_file():
            return cls(folder / "images", folder / "labels.csv")
        return cls(folder, Path(labels) if labels else None)

    @property
    def name(self) -> str:
        """The data set's name: its folder (``wikiart11``), not ``images``."""
        return (self.images.parent if self.images.name == "images" else self.images).name


def common_root(sources: list[LabelledSource]) -> Path:
    """The folder every source lies under; manifest paths are relative to it."""
    return Path(os.path.commonpath([str(s.images.resolve()) for s in sources]))


def build_manifest(images_dir: str | Path | list[LabelledSource],
                   labels: str | Path | None = None,
                   artists: str | Path | None = None, min_count: int = 30,
                   period_step: int = DEFAULT_PERIOD_STEP,
                   folder_task: str = "style") -> tuple[pd.DataFrame, ManifestReport]:
    """Return the manifest: ``path`` relative to the sources' common root, ``split``, one
    column per task, ``year`` (recorded years only), ``dataset`` and ``source``.

    Several sources keep their own splits; a task a source does not label stays null for
    its rows (its loss skips them). ``period`` comes from recorded years only: dating
    undated works by the artist's median year taught the model the artist, not the date.
    ``artists`` (artist, nationality) fills missing nationalities.
    """
    sources = images_dir if isinstance(images_dir, list) else [
        LabelledSource(Path(images_dir), Path(labels) if labels else None)]
    if not sources:
        raise ManifestError("no image folder given")
    for src in sources:
        if not src.images.is_dir():
            raise ManifestError(f"{src.images}: image folder not found")
    root = common_root(sources)
    frames = []
    for src in sources:
        df = _source_labels(src.images, src.labels, folder_task)
        prefix = src.images.resolve().relative_to(root).as_posix()
        df["path"] = df["path"].map(lambda p, pre=prefix: p if pre == "." else f"{pre}/{p}")
        df["dataset"] = src.name
        df["source"] = df["source"].fillna(src.name) if "source" in df else src.name
        if "split" not in df:
            df["split"] = "train"
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    artist_table = read_table(artists) if artists else None
    if artist_table is not None and "nationality" in artist_table and "artist" in df:
        nat = artist_table.drop_duplicates("artist").set_index("artist")["nationality"]
        df["nationality"] = df.get("nationality", pd.Series(None, index=df.index)).fillna(
            df["artist"].map(nat))
    years = df["year"] if "year" in df else pd.Series(None, index=df.index, dtype=object)
    df["year"] = pd.to_numeric(years, errors="coerce")
    df["period"] = df["year"].map(lambda y: period_of(y, period_step))
    exists = df["path"].map(lambda p: (root / p).is_file())
    report = ManifestReport(rows=int(exists.sum()), missing_images=int((~exists).sum()))
    df = df[exists].reset_index(drop=True)
    for task in TASKS:
        if task not in df:
            df[task] = None
        counts = df[task].value_counts()
        rare = counts[counts < min_count].index
        df.loc[df[task].isin(rare), task] = None
        kept = df[task].value_counts()
        report.coverage[task] = float(df[task].notna().mean()) if len(df) else 0.0
        report.classes[task] = {str(k): int(v) for k, v in kept.items()}
    report.root = root
    cols = ["path", "split", *TASKS, "year", "dataset", "source"]
    return df[cols].copy(), report


def write_manifest_parquet(df: pd.DataFrame, out: str | Path, images_dir: str | Path) -> Path:
    """Write atomically; the image root is stored in the Parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"artylyze.images"] = str(Path(images_dir).resolve()).encode()
    table = table.replace_schema_metadata(meta)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: pq.write_table(table, f))
    return out


def read_manifest(path: str | Path) -> tuple[pd.DataFrame, Path]:
    """The manifest and its image root."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `artylyze dataset build` first)")
    table = pq.read_table(path)
    root = (table.schema.metadata or {}).get(b"artylyze.images", b".").decode()
    return table.to_pandas(), Path(root)
