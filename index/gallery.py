"""The reference gallery that ships: wikiart11 and styles7 tagged by the default bundle,
indexed small.

Made once by the maintainers, after the default bundle lands (from the repository root)::

    artylyze tag ../shared/datasets --include "*/images/*" --out gallery.meta.parquet
    python -m artylyze.index.gallery gallery.meta.parquet \\
        ../shared/datasets/wikiart11/labels.csv ../shared/datasets/styles7/labels.csv

Small by design: PCA to ``GALLERY_PCA`` dims and float16 vectors (``SQfp16``: exact search
on half-precision values) plus a ``GALLERY_THUMBNAILS`` px WebP of every work, so the
gallery's pages show pictures on any machine. Entries carry artist, title (from the file
name), style, genre, year, nationality and period from the ground-truth labels; the bundle
is recorded as ``../bundle`` so queries embed with it. The manifest keeps no path of the
build machine (only file names), so every file it names ships in this folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from artylyze.errors import ArtyLyzeError
from artylyze.index.build import BuildOptions, BuildResult, build
from artylyze.index.manifest import read_manifest, write_manifest
from artylyze.index.store import DEFAULT_GALLERY_DIR
from artylyze.model.bundle import DEFAULT_BUNDLE_DIR

GALLERY_PCA = 128
GALLERY_INDEX = "SQfp16"
GALLERY_THUMBNAILS = 96


def build_gallery(meta: str | Path, labels: str | Path | Sequence[str | Path],
                  out: str | Path = DEFAULT_GALLERY_DIR,
                  bundle_dir: str | Path = DEFAULT_BUNDLE_DIR, pca: int | None = GALLERY_PCA,
                  log: Callable[[str], None] | None = None) -> BuildResult:
    """Build the shipped gallery from a meta.parquet of the tagged data sets and their
    labels.csv files."""
    from artylyze.model.bundle import load_manifest

    dim = load_manifest(bundle_dir).embedding_dim
    files = (labels,) if isinstance(labels, str | Path) else tuple(labels)
    opts = BuildOptions(pca=pca if pca is not None and pca < dim else None,
                        index_type=GALLERY_INDEX, labels=files, bundle_dir=bundle_dir,
                        thumbnails=GALLERY_THUMBNAILS)
    result = build(meta, out, opts, log=log)
    forget_build_paths(out)
    return result


def forget_build_paths(index_dir: str | Path) -> None:
    """Keep only the names of the build's inputs: a shipped manifest must not point at the
    machine that built it (the thumbnails stand in for the collection)."""
    manifest = read_manifest(index_dir)
    source = dict(manifest.source)
    if source.get("parquet"):
        source["parquet"] = Path(source["parquet"]).name
    if source.get("labels"):  # "a/wikiart11/labels.csv, b/styles7/labels.csv"
        source["labels"] = ", ".join(f"{Path(f).parent.name}/{Path(f).name}"
                                     for f in source["labels"].split(", "))
    source["root"] = None
    trained = dict(manifest.trained or {}) or None
    if trained and trained.get("from"):
        trained["from"] = Path(trained["from"]).name
    write_manifest(index_dir, replace(manifest, source=source, trained=trained))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artylyze.index.gallery",
                                     description="Build the shipped reference gallery.")
    parser.add_argument("meta", help="wikiart11 meta.parquet tagged with the default bundle")
    parser.add_argument("labels", nargs="+", help="the data sets' labels.csv files")
    parser.add_argument("--out", default=str(DEFAULT_GALLERY_DIR))
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE_DIR))
    parser.add_argument("--pca", type=int, default=GALLERY_PCA)
    args = parser.parse_args(argv)
    try:
        result = build_gallery(args.meta, args.labels, args.out, args.bundle, args.pca, log=print)
    except ArtyLyzeError as e:
        print(f"error: {e}")
        return 2
    size = sum(f["bytes"] for f in result.manifest.files.values())
    print(f"gallery {args.out}: {result.index_dir.count} entries, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
