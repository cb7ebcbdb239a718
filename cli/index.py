"""``artylyze index build`` and ``artylyze clusters report``: parse options, call
``artylyze.index``, print. Heavy imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors

app = typer.Typer(help="Build a similarity index (FAISS + PCA + clusters) from a meta.parquet.",
                  no_args_is_help=True, add_completion=False)
clusters_app = typer.Typer(help="Inspect the clusters and themes of an index.",
                           no_args_is_help=True, add_completion=False)


def _log(line: str) -> None:
    typer.echo(line, err=True)


MetaArg = Annotated[Path, typer.Argument(
    exists=True, dir_okay=False, readable=True, help="meta.parquet written by `artylyze tag`.")]
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
        "--index-type",
        help="FAISS factory string (Flat, IVF1024,Flat, HNSW32,Flat, ...); default: by size.",
    )] = None,
    k: Annotated[int | None, typer.Option(
        "--k", min=1, help="KMeans k (default: highest silhouette in the sweep).")] = None,
    gmm_k: Annotated[int | None, typer.Option(
        "--gmm-k", min=1, help="Gaussian mixture k (default: lowest BIC).")] = None,
    covariance: Annotated[str, typer.Option(
        "--covariance", help="GMM covariance: diag or full.")] = "diag",
    cluster_dims: Annotated[int, typer.Option(
        "--cluster-dims", min=1, help="PCA dims the clusters are fitted in.")] = 32,
    labels: Annotated[Path | None, typer.Option(
        "--labels", exists=True, dir_okay=False,
        help="Ground-truth CSV joined on `path` (e.g. wikiart11 labels.csv); themes use it.",
    )] = None,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", exists=True, file_okay=False,
        help="The bundle that tagged the collection; recorded so queries can embed images.",
    )] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling and clustering.")] = 0,
) -> None:
    """Build an index directory: only status == ok rows, one model, themes per cluster."""
    from artylyze.index.build import BuildOptions
    from artylyze.index.build import build as build_index

    with cli_errors():
        opts = BuildOptions(pca=pca, pca_variance=pca_variance, index_type=index_type,
                            kmeans_k=k, gmm_k=gmm_k, covariance=covariance,
                            cluster_dims=cluster_dims, labels=labels, bundle_dir=bundle,
                            seed=seed)
        result = build_index(meta, out, opts, log=_log)
    man = result.index_dir.manifest
    typer.echo(f"index {out}: {man['count']} artworks, {man['index_dim']} dims, "
               f"{result.built.describe()}")
    typer.echo(f"clusters: KMeans k={man['clusters']['kmeans_k']}, GMM k="
               f"{man['clusters']['gmm_k']} ({man['clusters']['covariance']})")
    for theme in result.index_dir.themes["themes"]:
        typer.echo(f"  {theme['id']:>3}  {theme['size']:>6}  {theme['name']}")


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
    typer.echo(f"wrote {result['html']} ({result['clusters']} clusters, {result['sheets']} "
               f"contact sheets, {result['missing_images']} images missing, drawn grey)")
