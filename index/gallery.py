"""The reference gallery that ships: wikiart11 tagged by the default bundle, indexed small.

Made once by the maintainers, after the default bundle lands (from the repository root)::

    artylyze tag ../shared/datasets/wikiart11/images --out wikiart11.meta.parquet
    python -m artylyze.index.gallery wikiart11.meta.parquet \\
        ../shared/datasets/wikiart11/labels.csv

Small by design: PCA to ``GALLERY_PCA`` dims and float16 vectors (``SQfp16``: exact search
on half-precision values), so the gallery adds a few MB to the package. Entries carry
artist, title (from the file name), style, genre, year, nationality and period from the
ground-truth labels; the bundle is recorded as ``../bundle`` so queries embed with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from artylyze.bundle import DEFAULT_BUNDLE_DIR
from artylyze.errors import ArtyLyzeError
from artylyze.index.build import BuildOptions, BuildResult, build
from artylyze.index.store import DEFAULT_GALLERY_DIR

GALLERY_PCA = 128
GALLERY_INDEX = "SQfp16"


def build_gallery(meta: str | Path, labels: str | Path, out: str | Path = DEFAULT_GALLERY_DIR,
                  bundle_dir: str | Path = DEFAULT_BUNDLE_DIR, pca: int | None = GALLERY_PCA,
                  log: Callable[[str], None] | None = None) -> BuildResult:
    """Build the shipped gallery from a tagged wikiart11 meta.parquet and its labels.csv."""
    from artylyze.bundle import load_manifest

    dim = load_manifest(bundle_dir).embedding_dim
    opts = BuildOptions(pca=pca if pca is not None and pca < dim else None,
                        index_type=GALLERY_INDEX, labels=labels, bundle_dir=bundle_dir)
    return build(meta, out, opts, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artylyze.index.gallery",
                                     description="Build the shipped reference gallery.")
    parser.add_argument("meta", help="wikiart11 meta.parquet tagged with the default bundle")
    parser.add_argument("labels", help="wikiart11 labels.csv")
    parser.add_argument("--out", default=str(DEFAULT_GALLERY_DIR))
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE_DIR))
    parser.add_argument("--pca", type=int, default=GALLERY_PCA)
    args = parser.parse_args(argv)
    try:
        result = build_gallery(args.meta, args.labels, args.out, args.bundle, args.pca, log=print)
    except ArtyLyzeError as e:
        print(f"error: {e}")
        return 2
    files = result.index_dir.manifest["files"]
    size = sum(f["bytes"] for f in files.values())
    print(f"gallery {args.out}: {result.index_dir.count} entries, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
