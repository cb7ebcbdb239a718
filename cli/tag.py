"""``artylyze tag``: parse options, call :func:`artylyze.tagging.engine.tag_collection` (or, for
a IIIF URL or JSON file, :func:`artylyze.tagging.iiif_source.tag_iiif`), print.

Exit status (the policy of :mod:`artylyze.cli.errors`): 0 when the run completed, even if
some files are bad (they get error rows); 1 with ``--strict`` and any bad file or unreadable
folder, or when every file found failed (nothing could be tagged); 2 when the run could not
start or finish (no collection, no images, bad bundle, output locked by another run, an
output ArtyLyze did not write, a full disk); 130/143 when SIGINT/SIGTERM stopped it cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from artylyze.cli.errors import EXIT_INPUTS_FAILED, cli_errors, fail
from artylyze.cli.params import option
from artylyze.options import Tag as T
from artylyze.text import printable

if TYPE_CHECKING:  # not at run time: --help stays fast
    from artylyze.tagging.summary import TagSummary

def tag(
    collection: Annotated[str, typer.Argument(
        help="Folder of images, searched recursively; or a IIIF Manifest or Collection "
        "(an http(s) URL or a .json file): every canvas is fetched and tagged.")],
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Output Parquet file; DIR/ (trailing slash or an existing "
        "folder) writes a Parquet dataset of part files instead.")],
    model: Annotated[Path | None, typer.Option(
        "--model", file_okay=False, help="Model bundle folder (default: the shipped one).")] = None,
    batch_size: Annotated[int, option(T.batch_size, "--batch-size", min=1)
                          ] = T.batch_size.default,
    workers: Annotated[int | None, option(T.workers, "--workers", min=1)] = T.workers.default,
    threads: Annotated[int | None, option(T.threads, "--threads", min=1)] = T.threads.default,
    device: Annotated[str, option(T.device, "--device")] = T.device.default,
    top_k: Annotated[int, option(T.top_k, "--top-k", min=1)] = T.top_k.default,
    include: Annotated[list[str] | None, typer.Option(
        "--include", help="Only files matching this glob (repeatable). A glob with / "
        "matches the path from the collection root, else the file name.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="Skip files and folders matching this glob (repeatable).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Tag everything again, ignoring earlier results.")] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Drop rows of files no longer found (default: keep them, so an "
        "unmounted or moved folder does not wipe results).")] = False,
    retry_errors: Annotated[bool, typer.Option(
        "--retry-errors", help="Read files that failed before again even if unchanged "
        "(e.g. after raising --max-pixels).")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 if any file or folder could not be read or tagged.")
    ] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress and no summary; warnings still go to stderr.")] = False,
    max_pixels: Annotated[int, option(T.max_pixels, "--max-pixels", min=1)
                          ] = T.max_pixels.default,
    max_bytes: Annotated[int, option(T.max_bytes, "--max-bytes", min=1)] = T.max_bytes.default,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an --out file that ArtyLyze did not write (by default the "
        "run refuses, exit 2).")] = False,
    commit_every: Annotated[int, option(T.commit_every, "--commit-every", min=1)
                            ] = T.commit_every.default,
    executor: Annotated[str, option(T.executor, "--executor")] = T.executor.default,
    engine: Annotated[str, option(T.engine, "--engine")] = T.engine.default,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --engine ray: the cluster to join (e.g. auto, or "
        "HOST:6379); default RAY_ADDRESS, else a local Ray is started.")] = None,
    records: Annotated[Path | None, typer.Option(
        "--records", dir_okay=False, help="Museum records (CSV, Parquet or JSON lines) naming "
        "each image's file: rows get the record's id as record_id. Later runs reuse the "
        "table the output recorded.")] = None,
    id_column: Annotated[str, option(T.id_column, "--id-column")] = T.id_column.default,
    file_column: Annotated[str, option(T.file_column, "--file-column")] = T.file_column.default,
    max_per_host: Annotated[int, option(T.max_per_host, "--max-per-host", min=1)
                            ] = T.max_per_host.default,
    timeout: Annotated[float, option(T.timeout, "--timeout", min=0.1)] = T.timeout.default,
    retries: Annotated[int, option(T.retries, "--retries", min=0)] = T.retries.default,
    max_redirects: Annotated[int, option(T.max_redirects, "--max-redirects", min=0)
                             ] = T.max_redirects.default,
    max_wait: Annotated[float, option(T.max_wait, "--max-wait", min=0.0)] = T.max_wait.default,
    max_canvases: Annotated[int, option(T.max_canvases, "--max-canvases", min=1)
                            ] = T.max_canvases.default,
    max_manifests: Annotated[int, option(T.max_manifests, "--max-manifests", min=1)
                             ] = T.max_manifests.default,
    max_depth: Annotated[int, option(T.max_depth, "--max-depth", min=1)] = T.max_depth.default,
) -> None:
    """Tag every image under COLLECTION: style, genre, artist, nationality, period, embedding.

    Incremental: only new or changed files are read; a file whose content was seen before
    (touched, renamed, copied) keeps its results without inference. Safe to kill: the next
    run resumes. Exit 0 when done (bad files get error rows), 1 with --strict and any bad
    file or unreadable folder, or when every file failed, 2 when the run cannot start or
    finish (no images, bad bundle, output locked by another run or not ArtyLyze's, full
    disk), 130/143 when stopped by SIGINT/SIGTERM (the next run resumes).
    """
    from artylyze.model.bundle import load_bundle
    from artylyze.progress import make_progress
    from artylyze.tagging.engine import TagOptions, tag_collection

    options = TagOptions(
        batch_size=batch_size, workers=workers, threads=threads, top_k=top_k,
        include=tuple(include or ()), exclude=tuple(exclude or ()), full=full, prune=prune,
        retry_errors=retry_errors,
        max_pixels=max_pixels, max_bytes=max_bytes, force=force, commit_every=commit_every,
        executor=executor,
    )
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"must be local or ray, got {engine!r}", param_hint="--engine")
    iiif = _is_iiif(collection)
    if iiif and engine != "local":
        raise typer.BadParameter("a IIIF document is tagged with the local engine only",
                                 param_hint="--engine")
    with cli_errors():
        joined, records_warning = _records(out, records, id_column, file_column)
        progress = make_progress(quiet=quiet)
        if iiif:
            from artylyze.iiif.documents import WalkLimits
            from artylyze.iiif.fetch import FetchOptions
            from artylyze.tagging.iiif_source import tag_iiif

            fetch = FetchOptions(max_per_host=max_per_host, timeout=timeout, retries=retries,
                                 max_redirects=max_redirects, max_bytes=max_bytes,
                                 max_wait=max_wait)
            limits = WalkLimits(max_canvases, max_manifests, max_depth)
            bundle = load_bundle(model, device=device, threads=threads)
            try:
                summary = tag_iiif(collection, out, bundle, options, fetch, limits, progress)
            finally:
                bundle.close()
        elif engine == "ray":
            from artylyze.tagging.ray_engine import RayOptions, tag_with_ray

            ray_options = RayOptions(address=ray_address, device=device, threads=threads)
            summary = tag_with_ray(collection, out, model, options, ray_options, progress)
        else:
            bundle = load_bundle(model, device=device, threads=threads)
            try:
                summary = tag_collection(collection, out, bundle, options, progress)
            finally:
                bundle.close()
        attached = _attach(out, joined)
    if records_warning:
        summary.warnings.append(records_warning)
    if quiet:
        for w in summary.warnings:
            typer.echo(f"warning: {printable(w)}", err=True)
    else:
        typer.echo(format_summary(summary) + attached)
    if summary.files_seen and summary.ok_files == 0:
        fail(f"none of the {summary.files_seen} files could be tagged", EXIT_INPUTS_FAILED)
    blind = [p for p in summary.walk_problems
             if p.kind in ("unreadable_dir", "unreadable_manifest")]
    if strict and (summary.errors or blind):
        what = [f"{summary.errors} files could not be tagged"] if summary.errors else []
        what += [f"{len(blind)} folders or manifests could not be read"] if blind else []
        fail(f"{' and '.join(what)} (--strict)", EXIT_INPUTS_FAILED)


def _is_iiif(collection: str) -> bool:
    """An http(s) URL or a .json file (a folder is never IIIF, whatever its name)."""
    from urllib.parse import urlsplit

    if urlsplit(collection).scheme.lower() in ("http", "https"):
        return True
    path = Path(collection)
    return path.suffix.lower() == ".json" and path.is_file()


def _records(out: str, table: Path | None, id_column: str, file_column: str):
    """The records to join after the run (read before it, so a bad table fails at once)."""
    from artylyze.metadata.records import RecordSpec
    from artylyze.metadata.records_attach import records_for_run

    spec = RecordSpec(table, id_column, file_column) if table is not None else None
    return records_for_run(out, spec)


def _attach(out: str, records) -> str:
    """Join the records onto the output; the summary's line about it ("" without records)."""
    if records is None:
        return ""
    from artylyze.metadata.records_attach import attach_records

    r = attach_records(out, records)
    if not r.files_rewritten:
        return f"\n  record ids up to date: {r.matched:,} of {r.rows:,} rows"
    n = r.records_unmatched
    unmatched = (f"; {n:,} record{' names' if n == 1 else 's name'} no file here" if n else "")
    return (f"\n  record ids from {records.spec.table}: {r.matched:,} of {r.rows:,} rows "
            f"matched{unmatched}")


def _seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


def format_summary(s: TagSummary) -> str:
    """The end-of-run report: counts, errors by kind, time, throughput, stage times."""
    kinds = ", ".join(f"{k} {n}" for k, n in s.errors_by_kind.most_common())
    done = (f"{s.output} is up to date ({s.rows_written:,} rows)" if s.output_unchanged
            else f"wrote {s.rows_written:,} rows to {s.output}")
    rate = f" ({s.files_per_second:.1f} files/s)" if s.processed else ""

    lines = [
        f"{done} in {_seconds(s.seconds)}{rate}",
        f"  files seen {s.files_seen:,}: tagged {s.tagged:,}, reused {s.reused:,} "
        f"(same content), unchanged {s.unchanged:,}, errors {s.errors:,}"
        + (f" ({kinds})" if kinds else ""),
    ]
    if s.requests:
        lines.append(f"  IIIF: {s.requests:,} requests, {s.bytes_fetched / 1e6:.1f} MB fetched")
    if s.resumed:
        lines.append(f"  resumed {s.resumed:,} rows from an interrupted run")
    if s.pruned:
        lines.append(f"  pruned {s.pruned:,} rows of files no longer found")
    if s.missing_kept:
        lines.append(f"  kept {s.missing_kept:,} rows of files no longer found "
                     "(--prune drops them)")
    lines += _ray_lines(s) if s.engine == "ray" else _local_lines(s)
    lines += [f"  warning: {w}" for w in s.warnings]
    return "\n".join(printable(line) for line in lines)  # names may hold newlines


def _local_lines(s: TagSummary) -> list[str]:
    st = s.stages
    stages = (f"walk {_seconds(st.walk)}, plan {_seconds(st.plan)}, decode wait "
              f"{_seconds(st.decode_wait)}, inference {_seconds(st.inference)}, write "
              f"{_seconds(st.write)}, merge {_seconds(st.merge)}")
    return [f"  stages: {stages}{_bottleneck(s)}",
            f"  model {s.model}; {s.images_inferred:,} images in {s.inference_calls:,} "
            f"inference calls; {s.workers} decode {s.executor}s, {s.threads} inference threads"]


def _ray_lines(s: TagSummary) -> list[str]:
    """Stages and cluster of a Ray run; the pipeline rate leaves out Ray's start-up."""
    st = s.stages
    wait = st.decode_wait  # the driver waiting on the cluster's decode + inference
    rate = f" ({s.images_inferred / wait:.1f} images/s)" if wait > 0 else ""
    where = (f"{s.images_inferred:,} images on {s.workers} Ray actors x {s.threads} threads "
             f"at {s.address}" if s.workers else "Ray not needed")
    return [f"  stages: walk {_seconds(st.walk)}, plan {_seconds(st.plan)}, ray pipeline "
            f"(decode + inference) {_seconds(wait)}{rate}, write {_seconds(st.write)}, "
            f"merge {_seconds(st.merge)}",
            f"  model {s.model}; {where}"]


def _bottleneck(s: TagSummary) -> str:
    st = s.stages
    if st.inference + st.decode_wait < 1.0:
        return ""
    if st.decode_wait > st.inference:
        return " (decode-bound: more --workers may help)"
    return " (inference-bound: more --threads or --device cuda may help)"
