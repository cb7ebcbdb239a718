"""Build the training manifest: one row per image, one column per task, unknown = null.

Joins an image folder with a labels table (CSV or Parquet, or class-from-folder-name as
torchvision's ImageFolder does) and an optional artist table, derives ``period`` from
``year`` (falling back to the artist's active years), and blanks rare classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from artylyze.errors import ArtyLyzeError
from artylyze.imaging import IMAGE_EXTENSIONS

TASKS = ("style", "genre", "artist", "nationality", "period")
DEFAULT_PERIOD_STEP = 50


class ManifestError(ArtyLyzeError):
    """The labels table or image folder cannot be turned into a manifest."""


@dataclass
class ManifestReport:
    """What a build kept: rows, per-task coverage and class counts, rows without an image."""

    rows: int
    coverage: dict[str, float] = field(default_factory=dict)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    missing_images: int = 0


def period_of(year: float, step: int = DEFAULT_PERIOD_STEP) -> str | None:
    """Half-century bins by default: 1887 -> ``1850-1899``."""
    if pd.isna(year):
        return None
    start = int(year) // step * step
    return f"{start}-{start + step - 1}"


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


def _artist_years(df: pd.DataFrame, artists: pd.DataFrame | None) -> pd.Series:
    """A year to date undated works: the artist table's active midpoint, else the median
    year of the artist's dated works in the labels."""
    years = pd.to_numeric(df["year"], errors="coerce") if "year" in df else pd.Series(
        float("nan"), index=df.index)
    by_artist = years.groupby(df["artist"]).median() if "artist" in df else pd.Series(dtype=float)
    if artists is not None and {"artist", "birth", "death"} <= set(artists.columns):
        birth = pd.to_numeric(artists["birth"], errors="coerce")
        death = pd.to_numeric(artists["death"], errors="coerce")
        active = ((birth + 20 + death) / 2).set_axis(artists["artist"])
        by_artist = active.combine_first(by_artist)
    if "artist" not in df:
        return years
    return years.fillna(df["artist"].map(by_artist))


def build_manifest(images_dir: str | Path, labels: str | Path | None = None,
                   artists: str | Path | None = None, min_count: int = 30,
                   period_step: int = DEFAULT_PERIOD_STEP,
                   folder_task: str = "style") -> tuple[pd.DataFrame, ManifestReport]:
    """Return the manifest (``path`` relative to ``images_dir``, ``split``, one column per task)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ManifestError(f"{images_dir}: image folder not found")
    df = read_table(labels) if labels else labels_from_folders(images_dir, folder_task)
    if "path" not in df.columns:
        raise ManifestError(f"labels table needs a 'path' column; it has {list(df.columns)}")
    artist_table = read_table(artists) if artists else None
    if artist_table is not None and "nationality" in artist_table and "artist" in df:
        nat = artist_table.set_index("artist")["nationality"]
        df["nationality"] = df.get("nationality", pd.Series(None, index=df.index)).fillna(
            df["artist"].map(nat))
    df["year"] = _artist_years(df, artist_table)
    df["period"] = df["year"].map(lambda y: period_of(y, period_step))
    if "split" not in df:
        df["split"] = "train"
    exists = df["path"].map(lambda p: (images_dir / p).is_file())
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
    cols = ["path", "split", *TASKS, "year"]
    out = df[cols].copy()
    out["year"] = pd.to_numeric(out["year"], errors="coerce")
    return out, report


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
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out)
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
