"""``artylyze report``: parse options, write the collection report, print where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors
from artylyze.cli.params import index_folder, option
from artylyze.options import Report as O


def report(
    source: Annotated[Path, typer.Argument(
        exists=True, help="meta.parquet from `artylyze tag` (or its folder of part files), or "
        "an index directory (its own works are described).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", file_okay=False, help="Folder for index.html and its charts.")],
    index: Annotated[Path | None, typer.Option(
        "--index", exists=True, callback=index_folder,
        help="Index whose clusters the works are placed in (default: the shipped gallery); "
        "must come from the model that tagged them.")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", exists=True, dir_okay=False,
        help="Ground-truth CSV joined on `path`; used instead of predictions where it has "
        "a value.")] = None,
    cases: Annotated[int, option(O.cases, "--cases", min=0)] = O.cases.default,
) -> None:
    """A collection report: styles through time and place, how the clusters relate, what
    each style draws on, and case studies, as one HTML page with its charts."""
    from artylyze.index.collection_report import collection_report

    with cli_errors():
        result = collection_report(source, out, index=index, labels=labels, cases=cases)
    sources = ", ".join(f"{k}: {v}" for k, v in result["sources"].items())
    folded = f" ({result['folded']:,} copies counted once)" if result["folded"] else ""
    typer.echo(f"wrote {result['html']} ({result['works']:,} works{folded}, "
               f"{len(result['charts'])} charts, {result['cases']} case studies; labels {sources})")
