"""``artylyze dataset build``: labels + images -> training manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from artylyze.cli.errors import cli_errors
from artylyze.options import Dataset as O

app = typer.Typer(help="Prepare training data.", no_args_is_help=True)


@app.command("build")
def build(
    images: list[Path] = typer.Argument(
        ..., exists=True, file_okay=False,
        help="Image folders, or data set folders holding images/ and labels.csv; several "
             "are joined into one manifest, each keeping its own splits."),
    out: Path = typer.Option(O.out.default, "--out", "-o", help=O.out.help),
    labels: list[Path] = typer.Option(
        [], exists=True, dir_okay=False,
        help="Labels CSV/Parquet with a 'path' column, one per image folder in the same "
             "order (not needed for a data set folder); without it the class comes from the "
             "folder name."),
    artists: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                        help="Artist table: artist, nationality."),
    min_count: int = typer.Option(O.min_count.default, min=1, help=O.min_count.help),
    period_step: int = typer.Option(O.period_step.default, min=1, help=O.period_step.help),
    folder_task: str = typer.Option(O.folder_task.default, help=O.folder_task.help),
    records: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                        help="Museum records (CSV, Parquet or JSON lines) "
                                        "naming each image's file: rows get its id as "
                                        "record_id."),
    id_column: str = typer.Option(O.id_column.default, help=O.id_column.help),
    file_column: str = typer.Option(O.file_column.default, help=O.file_column.help),
) -> None:
    """Join images with labels into a manifest: one row per image, one column per task."""
    from artylyze.train.manifest import (
        LabelledSource,
        ManifestError,
        build_manifest,
        write_manifest_parquet,
    )

    with cli_errors():
        joined = None
        if records is not None:
            from artylyze.metadata.records import RecordSpec, load_records

            joined = load_records(RecordSpec(records, id_column, file_column))
        if len(labels) > len(images):
            raise ManifestError(f"{len(labels)} --labels for {len(images)} image folders")
        sources = [LabelledSource.find(d, labels[i] if i < len(labels) else None)
                   for i, d in enumerate(images)]
        df, report = build_manifest(sources, None, artists, min_count, period_step, folder_task)
        if joined is not None:
            df.insert(1, "record_id", joined.lookup_all(df["path"], str(report.root)))
        write_manifest_parquet(df, out, report.root)
    typer.echo(f"{out}: {report.rows} images ({report.missing_images} label rows without image)"
               f" under {report.root}")
    if joined is not None:
        typer.echo(f"  record ids: {df['record_id'].notna().sum()} of {len(df)} images matched "
                   f"{records}")
    for name, count in df["source"].value_counts().sort_index().items():
        typer.echo(f"  source {name}: {count} images")
    for task, share in report.coverage.items():
        classes = report.classes[task]
        top = ", ".join(f"{k} {v}" for k, v in list(classes.items())[:4])
        typer.echo(f"  {task:<12} {share:6.1%} labelled, {len(classes):3d} classes  ({top}, ...)")
