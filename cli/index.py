"""``artylyze index build``, ``index merge`` and ``artylyze clusters report``: parse
options, call ``artylyze.index``, print. Heavy imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from artylyze.cli.errors import cli_errors
from artylyze.cli.params import option
from artylyze.options import FILENAME_PATTERN
from artylyze.options import IndexBuild as O
from artylyze.text import printable

if TYPE_CHECKING:
    from artylyze.index.manifest import IndexManifest

app = typer.Typer(help="Build a similarity index (FAISS + PCA + clusters) from a meta.parquet.",
                  no_args_is_help=True, add_completion=False)
clusters_app = typer.Typer(help="Inspect the clusters and themes of an index.",
                           no_args_is_help=True, add_completion=False)


def _log(line: str) -> None:
    typer.echo(printable(line), err=True)


MetaArg = Annotated[Path, typer.Argument(
    exists=True, readable=True,
    help="meta.parquet written by `artylyze tag`, or a directory of its part files.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Output directory.")]


@app.command("build")
def build(
    meta: MetaArg,
    out: OutOpt,
    pca: Annotated[int | None, typer.Option(
        "--pca", min=1, help="Reduce to N PCA dims.")] = None,
    pca_variance: Annotated[float | None, typer.Option(
        "--pca-variance", min=0.0, max=1.0,
        help="Reduce to the fewest PCA dims keeping this share of variance (e.g. 0.95).")] = None,
    index_type: Annotated[str | None, typer.Option(
        "--index-type", "--factory",
        help="FAISS factory string (Flat, IVF1024,Flat, IVF4096,PQ64, ...); default: by size.",
    )] = None,
    k: Annotated[int | None, typer.Option(
        "--k", min=1, help="KMeans k (default: highest silhouette in the sweep).")] = None,
    gmm_k: Annotated[int | None, typer.Option(
        "--gmm-k", min=1, help="Gaussian mixture k (default: lowest BIC).")] = None,
    covariance: Annotated[str, option(O.covariance, "--covariance")] = O.covariance.default,
    cluster_dims: Annotated[int, option(O.cluster_dims, "--cluster-dims", min=1)
                            ] = O.cluster_dims.default,
    labels: Annotated[Path | None, typer.Option(
        "--labels", exists=True, dir_okay=False,
        help="Ground-truth CSV joined on `path` (e.g. wikiart11 labels.csv); themes use it.",
    )] = None,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", exists=True, file_okay=False,
        help="The bundle that tagged the collection; recorded so queries can embed images.",
    )] = None,
    thumbnails: Annotated[int | None, typer.Option(
        "--thumbnails", min=16, max=512,
        help="Pack a small picture (PX on the long side, WebP) of every work into the index, "
             "so its pages show pictures where the collection is not at hand (96: ~1.7 KB "
             "each).")] = None,
    seed: Annotated[int, option(O.seed, "--seed")] = O.seed.default,
    stream: Annotated[bool | None, typer.Option(
        "--stream/--in-memory",
        help="Read embeddings chunk by chunk or all at once: the same options and index "
             "types either way; default: stream when the embeddings exceed 1 GiB.")] = None,
    chunk_rows: Annotated[int, option(O.chunk_rows, "--chunk-rows", min=1)
                          ] = O.chunk_rows.default,
    trained: Annotated[Path | None, typer.Option(
        "--trained", exists=True, file_okay=False,
        help="Reuse the trained index, PCA and clusters of this index directory (for shards "
             "to merge later).")] = None,
    train_only: Annotated[bool, typer.Option(
        "--train-only", help="Fit on a sample and write an empty, trained index (the "
                             "--trained base of shards).")] = False,
    filename_pattern: Annotated[str | None, typer.Option(
        "--filename-pattern", help=FILENAME_PATTERN)] = None,
) -> None:
    """Build an index directory: only status == ok rows, one model, themes per cluster."""
    from artylyze.index.build import BuildOptions
    from artylyze.index.build import build as build_index
    from artylyze.progress import make_progress

    with cli_errors():
        opts = BuildOptions(pca=pca, pca_variance=pca_variance, index_type=index_type,
                            kmeans_k=k, gmm_k=gmm_k, covariance=covariance,
                            cluster_dims=cluster_dims, labels=labels, bundle_dir=bundle,
                            thumbnails=thumbnails, seed=seed, stream=stream,
                            chunk_rows=chunk_rows, trained=trained, train_only=train_only,
                            filename_pattern=filename_pattern)
        result = build_index(meta, out, opts, log=_log,
                             progress=make_progress(label="index", unit="rows"))
    man = result.manifest
    described = "trained, empty" if train_only else result.built.describe()
    typer.echo(printable(f"index {out}: {man.count} artworks, {man.index_dim} dims, "
                         f"{described}"))
    _print_clusters(man, result.themes)


def _print_clusters(man: IndexManifest, themes: dict[str, Any]) -> None:
    typer.echo(f"clusters: KMeans k={man.clusters['kmeans_k']}, GMM k="
               f"{man.clusters['gmm_k']} ({man.clusters['covariance']})")
    for theme in themes["themes"]:
        typer.echo(printable(f"  {theme['id']:>3}  {theme['size']:>6}  {theme['name']}"))


@app.command("merge")
def merge(
    out: Annotated[Path, typer.Argument(file_okay=False, help="Merged index directory.")],
    shards: Annotated[list[Path], typer.Argument(
        exists=True, file_okay=False,
        help="Index directories built with the same --trained index, in row order.")],
) -> None:
    """Join shard indexes that share one trained index into one index directory."""
    from artylyze.index.merge import merge_indexes

    with cli_errors():
        merged = merge_indexes(out, shards, log=_log)
    typer.echo(printable(f"index {out}: {merged.count} artworks from {len(shards)} shards, "
                         f"{merged.manifest.index_type}, recall@10 "
                         f"{merged.manifest.recall_at_10}"))
    _print_clusters(merged.manifest, merged.themes)


@clusters_app.command("report")
def report(
    index_dir: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, help="Index directory made by `artylyze index build`.")],
    out: OutOpt,
) -> None:
    """Elbow plot, metrics, a contact sheet per cluster, affinity heat map, one HTML page."""
    from artylyze.index.report import clusters_report

    with cli_errors():
        result = clusters_report(index_dir, out)
    typer.echo(printable(f"wrote {result['html']} ({result['clusters']} clusters, "
                         f"{result['sheets']} contact sheets, {result['missing_images']} images "
                         "missing, drawn grey)"))
