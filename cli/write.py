"""``artylyze write``: meta.parquet -> XMP sidecars, CSV, JSON lines (where curators read), and
IIIF Web Annotations (:mod:`artylyze.metadata.iiif_annotations`).

Exit status: 0 when everything asked was written; 1 when some sidecars could not be (an
existing sidecar that is not XMP is left alone and listed); 2 when nothing could start
(no such meta.parquet, no collection root, bad options).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors
from artylyze.cli.params import option
from artylyze.options import Write as O

SHOWN_FAILURES = 10


def write(
    meta: Annotated[Path, typer.Argument(
        exists=True, help="meta.parquet from `artylyze tag` (a file, or a folder of parts).")],
    xmp: Annotated[bool, typer.Option(
        "--xmp", help="Write an XMP sidecar (IMAGE.jpg.xmp) per tagged image: IPTC artwork "
        "fields, keywords and ArtyLyze's labels; other tools' fields are kept.")] = False,
    sidecar_dir: Annotated[Path | None, typer.Option(
        "--sidecar-dir", file_okay=False, help="Put the sidecars under this folder (same "
        "relative paths) instead of beside the images, e.g. for a read-only collection. "
        "Implies --xmp.")] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", file_okay=False, help="The collection folder, if it moved since tagging "
        "(default: the one meta.parquet records).")] = None,
    min_score: Annotated[float, option(O.min_score, "--min-score", min=0.0, max=1.0)
                         ] = O.min_score.default,
    creator_min_score: Annotated[float, option(
        O.creator_min_score, "--creator-min-score", min=0.0, max=1.0)
    ] = O.creator_min_score.default,
    creator: Annotated[bool, option(O.creator, "--creator/--no-creator")] = O.creator.default,
    force: Annotated[bool, typer.Option(
        "--force", help="Rewrite sidecars even where they are up to date.")] = False,
    csv_out: Annotated[Path | None, typer.Option(
        "--csv", dir_okay=False, help="Write a CSV: one row per file, one column per "
        "label and score.")] = None,
    jsonl_out: Annotated[Path | None, typer.Option(
        "--jsonl", dir_okay=False, help="Write JSON lines: one object per file.")] = None,
    top: Annotated[bool, typer.Option(
        "--top", help="CSV/JSONL: add the <task>_top lists (label and score, best first).")
    ] = False,
    embedding: Annotated[bool, typer.Option(
        "--embedding", help="CSV/JSONL: add the embedding vector.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No summary; failures still go to stderr.")] = False,
    iiif: Annotated[Path | None, typer.Option(
        "--iiif", file_okay=False, help="META tagged from IIIF: write, per manifest, an "
        "AnnotationPage of W3C Web Annotations and a copy of the manifest that lists it, "
        "into this folder (needs the 'iiif' extra).")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="With --iiif: the URL the folder will be published at (ids of "
        "the pages and manifests); default its file:// URL.")] = None,
    motivation: Annotated[str, option(O.motivation, "--motivation")] = O.motivation.default,
) -> None:
    """Write the labels of META where curators use them: XMP sidecars (incremental: only
    sidecars whose row changed are rewritten), CSV or JSON lines, or (META tagged from IIIF)
    Web Annotations and annotated manifests a IIIF viewer shows. Originals are never
    touched."""
    xmp = xmp or sidecar_dir is not None
    if not (xmp or csv_out or jsonl_out or iiif):
        raise typer.BadParameter("say what to write: --xmp, --csv FILE, --jsonl FILE and/or "
                                 "--iiif DIR", param_hint="--xmp/--csv/--jsonl/--iiif")
    from artylyze.metadata.flat import FlatOptions, export_flat
    from artylyze.metadata.sidecar import SidecarOptions, write_sidecars

    lines: list[str] = []
    failed: list[tuple[str, str]] = []
    with cli_errors():
        flat = FlatOptions(top=top, embedding=embedding)
        for out, fmt in ((csv_out, "csv"), (jsonl_out, "jsonl")):
            if out is not None:
                rows = export_flat(meta, out, fmt, flat)
                lines.append(f"wrote {rows:,} rows to {out}")
        if iiif is not None:
            lines.append(_write_iiif(meta, iiif, base_url, motivation, min_score, failed))
        if xmp:
            options = SidecarOptions(sidecar_dir=sidecar_dir, root=root, min_score=min_score,
                                     creator_min_score=creator_min_score, creator=creator,
                                     force=force)
            report = write_sidecars(meta, options)
            failed.extend(report.failed)
            lines.append(format_sidecars(report))
    if not quiet:
        typer.echo("\n".join(lines))
    for path, reason in failed[:SHOWN_FAILURES]:
        typer.echo(f"error: {path}: {reason}", err=True)
    if len(failed) > SHOWN_FAILURES:
        typer.echo(f"error: ... and {len(failed) - SHOWN_FAILURES} more", err=True)
    if failed:
        raise typer.Exit(1)


def _write_iiif(meta: Path, out: Path, base_url: str | None, motivation: str,
                min_score: float, failed: list[tuple[str, str]]) -> str:
    from artylyze.metadata.iiif_annotations import write_iiif

    r = write_iiif(meta, out, base_url, motivation, min_score)
    failed.extend((mid, f"no manifest copy: {why}") for mid, why in r.failed)
    v2 = f"; {r.v2:,} Presentation 2.1 manifests get the page only" if r.v2 else ""
    return (f"wrote {r.annotations:,} annotations on {r.canvases:,} canvases of "
            f"{r.manifests:,} manifests to {out} ({r.copies:,} annotated manifest copies{v2})")


def format_sidecars(r) -> str:
    """One line: what happened to each tagged file's sidecar."""
    parts = [f"wrote {r.written:,} XMP sidecars in {r.folder}", f"{r.unchanged:,} up to date"]
    if r.not_ok:
        parts.append(f"{r.not_ok:,} error rows skipped")
    if r.missing:
        parts.append(f"{r.missing:,} images no longer found")
    if r.failed:
        parts.append(f"{len(r.failed):,} failed")
    return ", ".join(parts)
