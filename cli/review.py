"""``artylyze review``: the review store from scripts and spreadsheets (import a labels CSV,
export the human labels, see how far each task is reviewed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors

app = typer.Typer(help="Human labels that last: import, export and count a collection's "
                  "reviews (kept in SQLite beside meta.parquet).", no_args_is_help=True)

META = Annotated[Path | None, typer.Option(
    "--meta", exists=True, help="meta.parquet from `artylyze tag` (a file or a folder of "
    "parts); its review store is the file beside it (meta.parquet.review.sqlite).")]
REVIEW = Annotated[Path | None, typer.Option(
    "--review", dir_okay=False, help="The review store, if not the one beside --meta.")]


@app.command("import")
def import_(
    labels: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, help="CSV with columns path (or record_id), task, label; "
        "an empty label rejects the machine's.")],
    meta: Annotated[Path, typer.Option(
        "--meta", exists=True, help="meta.parquet the paths and record ids are looked up in "
        "(works are matched by their sha256 from it).")],
    reviewer: Annotated[str, typer.Option(
        "--reviewer", help="Who these labels come from (kept with every event).")],
    review: REVIEW = None,
) -> None:
    """Import human labels from a CSV: each row confirms, corrects or rejects the machine's
    label, or sets a task the model does not have. All rows or none."""
    from artylyze.review import ReviewStore
    from artylyze.review.table import default_store, import_csv
    from artylyze.review.works import read_works

    with cli_errors():
        works = read_works(meta)
        with ReviewStore.open(default_store(meta, review)) as store:
            counts = import_csv(store, labels, works, reviewer)
            where = store.path
    done = ", ".join(f"{n:,} {a}" for a, n in sorted(counts.items())) or "nothing"
    typer.echo(f"imported {sum(counts.values()):,} labels ({done}) into {where}")


@app.command("export")
def export(
    csv_out: Annotated[Path, typer.Option("--csv", dir_okay=False, help="CSV to write.")],
    meta: META = None,
    review: REVIEW = None,
    history: Annotated[bool, typer.Option(
        "--history", help="Every event (undone ones and undos too), not the standing labels.")
    ] = False,
) -> None:
    """Write the standing human labels (sha256, path, task, label, action, reviewer, time,
    what the machine said then) as CSV."""
    from artylyze.review import ReviewStore
    from artylyze.review.table import default_store, export_csv

    with cli_errors(), ReviewStore.open(default_store(meta, review), create=False) as store:
        n = export_csv(store, csv_out, history)
    typer.echo(f"wrote {n:,} {'events' if history else 'human labels'} to {csv_out}")


@app.command("status")
def status(meta: META = None, review: REVIEW = None) -> None:
    """Per task: works reviewed, confirmed, corrected, set, and how often the machine's
    label was the one people kept."""
    from artylyze.review import ReviewStore
    from artylyze.review.table import default_store
    from artylyze.review.table import status as task_status

    with cli_errors(), ReviewStore.open(default_store(meta, review), create=False) as store:
        lines = task_status(store)
        events, where = store.count(), store.path
    typer.echo(f"{where}: {events:,} events")
    if not lines:
        typer.echo("no human labels yet")
        return
    typer.echo(f"{'task':<16}{'reviewed':>9}{'confirmed':>10}{'corrected':>10}{'set':>6}"
               f"{'reviewers':>10}{'agreement':>10}")
    for s in lines:
        agree = "-" if s.agreement is None else f"{s.agreement:.1%}"
        typer.echo(f"{s.task:<16}{s.reviewed:>9,}{s.confirmed:>10,}{s.corrected:>10,}"
                   f"{s.set:>6,}{s.reviewers:>10}{agree:>10}")
