"""``artylyze similar`` and ``artylyze influence``: parse options, query the index, print.

Both default to the shipped reference gallery when no ``--index`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from artylyze import options
from artylyze.cli.errors import cli_errors
from artylyze.cli.params import index_folder, option
from artylyze.text import printable

PIPE_WIDTH = 200
INDEX_HELP = ("Index directory (default: the shipped gallery of 16,922 wikiart11 and styles7 "
              "paintings).")
BUNDLE_HELP = "Bundle to embed new images with (default: the index's own); must be the same model."


def _open(index: Path | None, bundle: Path | None, device: str):
    from artylyze.index.search import Gallery

    return Gallery.open(index, bundle_dir=bundle, device=device)


def _console():
    """A rich console; when piped, wide enough that paths are not folded mid-word."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def _text(value: Any):
    """Untrusted text (file names, labels, themes) as a rich Text: never parsed as markup,
    control characters escaped."""
    from rich.text import Text

    return Text(printable("" if value is None else value))


def _title(answer: dict[str, Any], what: str):
    """A table's title: the query, and on a second line whether it is not an artwork."""
    from artylyze.index.search import not_artwork

    title = _text(f"{answer['query']} {what}")
    notice = not_artwork(answer.get("estimated") or {})
    if notice:
        title.append(f"\n{notice}", style="bold yellow")
    return title


def _results_table(answer: dict[str, Any]):
    from rich.table import Table

    table = Table(title=_title(answer, f"({answer['source']})"), title_justify="left")
    for col in ("#", "score", "title", "artist", "year", "style", "genre", "path"):
        table.add_column(col, overflow="fold")
    for r in answer["results"]:
        copies = r.get("copies_count") or 0
        title = _text(r.get("title"))
        if copies:
            title.append(f" (+{copies} {'copy' if copies == 1 else 'copies'})", style="dim")
        table.add_row(str(r["rank"]), f"{r['score']:.3f}", title,
                      _text(r.get("artist")), _text(r.get("year")), _text(r.get("style")),
                      _text(r.get("genre")), _text(r["path"]))
    return table


IndexOpt = Annotated[Path | None, typer.Option("--index", callback=index_folder,
                                               help=INDEX_HELP)]
BundleOpt = Annotated[Path | None, typer.Option("--bundle", file_okay=False, help=BUNDLE_HELP)]
DeviceOpt = Annotated[str, option(options.DEVICE, "--device")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


def similar(
    images: Annotated[list[str], typer.Argument(
        help="Image files, or paths already in the index.")],
    index: IndexOpt = None,
    k: Annotated[int, option(options.Similar.k, "-k", "--k", min=1)] = options.Similar.k.default,
    as_json: JsonOpt = False,
    html: Annotated[Path | None, typer.Option(
        "--html", dir_okay=False, help="Also write a page of thumbnails to this file.")] = None,
    bundle: BundleOpt = None,
    device: DeviceOpt = options.DEVICE.default,
) -> None:
    """Find the known artworks each image resembles most."""
    with cli_errors():
        gallery = _open(index, bundle, device)
        answers = []
        for query in gallery.queries(images):
            answers.append({"query": query.name, "source": query.source, "id": query.row,
                            "file": str(query.file) if query.file else None,
                            "record_id": gallery.record_id(query),
                            "predicted": query.predicted, "estimated": query.estimated,
                            "results": gallery.similar(query, k)})
        if html is not None:
            from artylyze.index.html import similar_page, write_page

            write_page(html, similar_page(answers, gallery.index))
        gallery.close()
    if as_json:
        typer.echo(json.dumps(answers, indent=2, ensure_ascii=False))
    else:
        console = _console()
        for answer in answers:
            console.print(_results_table(answer))
    if html is not None:
        typer.echo(f"wrote {printable(html)}", err=True)


def _influence_tables(result: dict[str, Any]):
    from rich.table import Table

    preds = Table(title=_title(result, "- predicted labels"), title_justify="left")
    preds.add_column("task")
    preds.add_column("labels (probability)")
    for task, top in result["predicted"].items():
        preds.add_row(_text(task), _text(", ".join(
            f"{p['label']} ({p['score']:.2f})" if p.get("score") is not None else p["label"]
            for p in top)))
    clusters = Table(title="draws on (GMM membership)", title_justify="left")
    for col in ("cluster", "share", "theme", "top labels", "closest"):
        clusters.add_column(col, overflow="fold")
    for t in result["top"]:
        labels = "; ".join(f"{f}: " + ", ".join(f"{x['label']} {x['share']:.0%}" for x in v)
                           for f, v in t["labels"].items() if v)
        closest = ", ".join(c["name"] for c in t["closest"])
        clusters.add_row(str(t["cluster"]), f"{t['share']:.2f}", _text(t["name"]),
                         _text(labels), _text(closest))
    return preds, clusters


def chart_paths(png: Path, n: int) -> list[Path]:
    """Where the charts of ``n`` images go: ``png`` itself for one image, else ``png`` with
    ``-1``, ``-2``... before its suffix."""
    if n == 1:
        return [png]
    return [png.with_name(f"{png.stem}-{i}{png.suffix}") for i in range(1, n + 1)]


def influence(
    images: Annotated[list[str], typer.Argument(
        help="Image files, or paths already in the index.")],
    index: IndexOpt = None,
    top: Annotated[int, option(options.Influence.top, "--top", min=1)
                   ] = options.Influence.top.default,
    as_json: JsonOpt = False,
    png: Annotated[Path | None, typer.Option(
        "--png", dir_okay=False, help="Also write a bar chart of the memberships (with "
        "several images: one per image, FILE-1.png, FILE-2.png...).")] = None,
    bundle: BundleOpt = None,
    device: DeviceOpt = options.DEVICE.default,
) -> None:
    """Show the styles, regions and periods each image draws on: its predicted labels and
    its membership in the collection's clusters, with their themes. ``--json`` prints a
    list, one object per image, as ``similar`` does."""
    from artylyze.index.influence import influences

    written: list[Path] = []
    with cli_errors():
        gallery = _open(index, bundle, device)
        results = influences(gallery, images, top=top)
        gallery.close()
        if png is not None:
            from artylyze.index.plots import influence_chart

            written = [influence_chart(result, path) for result, path in
                       zip(results, chart_paths(png, len(results)), strict=True)]
    if as_json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        console = _console()
        for result in results:
            for table in _influence_tables(result):
                console.print(table)
    for path in written:
        typer.echo(f"wrote {printable(path)}", err=True)
