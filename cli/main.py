"""The ``artylyze`` command: one small module per command group, joined here.

Heavy libraries (numpy, onnxruntime, faiss, torch) are imported inside the commands,
so ``artylyze --help`` starts fast and never imports torch.
"""

from __future__ import annotations

import typer

from artylyze import __version__
from artylyze.cli import (
    dataset,
    duplicates,
    evaluate,
    explain,
    export,
    index,
    report,
    review,
    serve,
    similar,
    tag,
    teach,
    train,
    write,
)
from artylyze.cli.errors import PolicyGroup

app = typer.Typer(
    name="artylyze",
    help="Tag digitized artworks (style, genre, artist, nationality, period), "
    "find similar works and show their influences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=PolicyGroup,  # one exit-code policy for every command (see artylyze.cli.errors)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"artylyze {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug",
                               help="Print the traceback of an error (exit codes stay the same)."),
) -> None:
    """ArtyLyze: metadata for artworks that have none.

    Exit status of every command: 0 done; 1 done but some inputs failed (--strict) or all
    did; 2 could not start or finish; 130/143 stopped by SIGINT/SIGTERM after a clean stop.
    """


app.command("tag")(tag.tag)
app.command("similar")(similar.similar)
app.command("influence")(similar.influence)
app.command("explain")(explain.explain)
app.add_typer(index.app, name="index")
app.add_typer(index.clusters_app, name="clusters")
app.command("report")(report.report)
app.add_typer(dataset.app, name="dataset")
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("export")(export.export)
app.command("write")(write.write)
app.command("teach")(teach.teach)
app.command("serve")(serve.serve)
app.add_typer(review.app, name="review")
app.command("duplicates")(duplicates.duplicates)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
