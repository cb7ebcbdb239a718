"""``artylyze duplicates``: parse options, call ``artylyze.duplicates``, print a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors
from artylyze.text import printable


def duplicates(
    source: Annotated[Path, typer.Argument(
        exists=True, readable=True,
        help="meta.parquet written by `artylyze tag`, a folder of its part files, or an "
             "index directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False,
                                      help="Groups table to write (Parquet).")],
    html: Annotated[Path | None, typer.Option(
        "--html", dir_okay=False, help="Also write a contact sheet per group.")] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", file_okay=False,
        help="Where the files are (default: the collection root recorded by `tag`).")] = None,
    candidate: Annotated[float | None, typer.Option(
        "--candidate", min=-1.0, max=1.0,
        help="Embedding cosine for a candidate pair (default 0.40).")] = None,
    check: Annotated[float | None, typer.Option(
        "--check", min=0.0, max=1.0,
        help="Second-check score (aligned images' correlation) to accept a pair "
             "(default 0.55).")] = None,
    no_check: Annotated[bool, typer.Option(
        "--no-check", help="Embeddings only: a pair needs cosine >= 0.97; reads no pixels.")
    ] = False,
) -> None:
    """Find the same artwork held more than once: exact copies (same bytes) and near copies
    (another scan, crop or photo of it), with a suggested keeper per group."""
    from artylyze.duplicates.command import run
    from artylyze.duplicates.find import Options
    from artylyze.duplicates.groups import KEEPER_RULE

    opts = Options()
    if candidate is not None:
        opts.candidate = candidate
    if check is not None:
        opts.check = check
    if no_check:
        opts.check = None
    with cli_errors():
        found = run(source, out, html, root, opts,
                    log=lambda m: typer.echo(printable(m), err=True))
    s = found.stats
    typer.echo(f"{s['groups']} groups ({s['exact_groups']} exact, {s['near_groups']} near): "
               f"{s['redundant_files']} of {s['files']} files are copies of a kept one; "
               f"{found.candidates} candidate pairs, {found.checked} checked on their pixels"
               + (f", {found.unreadable} unreadable" if found.unreadable else ""))
    typer.echo(f"keeper: {KEEPER_RULE}")
    typer.echo(f"wrote {printable(out)}" + (f" and {printable(html)}" if html else ""))
