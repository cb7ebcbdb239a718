"""``artylyze teach``: parse options, call :func:`artylyze.teach.run.teach`, print what it did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors


def teach(
    meta: Annotated[Path, typer.Argument(
        exists=True, help="meta.parquet from `artylyze tag` (or its folder of part files).")],
    task: Annotated[str, typer.Option(
        "--task", help="The task to teach: a new one (object_type, school...) or a built-in "
        "one (style...) whose corrections should reach the works nobody reviewed.")],
    labels: Annotated[Path | None, typer.Option(
        "--labels", exists=True, dir_okay=False, help="CSV of human labels: a `label` "
        "column and `path`, `sha256` or `record_id` (a `task` column keeps this task's rows).")
    ] = None,
    review: Annotated[Path | None, typer.Option(
        "--review", dir_okay=False, help="Review store to take labels from (default: the "
        "one beside META, if any).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")
                     ] = False,
) -> None:
    """Teach a task from a few labelled works, in seconds: a classifier on the embeddings
    META already holds (no image is read), chosen and calibrated by cross-validation; every
    work gets TASK, TASK_score, TASK_top and TASK_confident, and later `tag` runs add them
    to new works. Refused, saying how many more would help, below 5 labels per class."""
    import re

    from artylyze.progress import make_progress
    from artylyze.teach.run import teach as run_teach

    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", task) or task.endswith(
            ("_score", "_top", "_confident", "_source")):
        raise typer.BadParameter("lower-case letters, digits and _ (starting with a letter, "
                                 "not ending in _score/_top/_confident/_source)",
                                 param_hint="--task")
    with cli_errors():
        progress = make_progress(quiet=quiet, label="teach", unit="steps")
        report = run_teach(meta, task, labels, review, progress)
    if quiet:
        return
    t = report.task
    typer.echo(f"taught {t.task!r} from {report.labelled} labels ({len(t.classes)} classes): "
               f"{t.kind} {t.params}, cross-validated accuracy {t.report['cv_accuracy']:.3f}, "
               f"confident at score >= {min(t.confident, 1.0):.2f}")
    typer.echo(f"wrote {t.task}, {t.task}_score, {t.task}_top, {t.task}_confident for "
               f"{report.rows:,} works in {report.seconds:.1f}s; kept in {report.kept[0].parent} "
               "(later `tag` runs apply it to new works)")
