"""``artylyze serve``: parse options, start the HTTP service (the ``[serve]`` extra).

FastAPI and uvicorn are imported only when the command runs, so every other command and
``artylyze --help`` stay as fast as before.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors
from artylyze.cli.params import option
from artylyze.errors import ArtyLyzeError
from artylyze.options import FILENAME_PATTERN
from artylyze.options import Serve as D
from artylyze.serve.options import MIB, ServeOptions

NEEDS = ("fastapi", "uvicorn", "multipart")


def serve(
    index: Annotated[Path | None, typer.Option(
        "--index", file_okay=False, help="Index directory (default: the shipped gallery).")] = None,
    meta: Annotated[Path | None, typer.Option(
        "--meta", help="The meta.parquet (or part folder) the index was built from: adds "
        "top-k labels and image sizes to each work.")] = None,
    collection: Annotated[Path | None, typer.Option(
        "--collection", file_okay=False, help="Folder of the works' files, to serve their "
        "images (default: the index's root).")] = None,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", file_okay=False, help="Bundle for uploads (default: the index's own).")] = None,
    host: Annotated[str, option(D.host, "--host")] = D.host.default,
    port: Annotated[int, option(D.port, "--port", min=1, max=65535)] = D.port.default,
    workers: Annotated[int, option(D.workers, "--workers", min=1)] = D.workers.default,
    threads: Annotated[int | None, option(D.threads, "--threads", min=1)] = D.threads.default,
    device: Annotated[str, option(D.device, "--device")] = D.device.default,
    max_upload_mb: Annotated[float, option(D.max_upload_mb, "--max-upload-mb", min=0.01)
                             ] = D.max_upload_mb.default,
    max_pixels: Annotated[int, option(D.max_pixels, "--max-pixels", min=1)
                          ] = D.max_pixels.default,
    max_inflight: Annotated[int, option(D.max_inflight, "--max-inflight", min=1)
                            ] = D.max_inflight.default,
    timeout: Annotated[float, option(D.timeout, "--timeout", min=0.1)] = D.timeout.default,
    batch: Annotated[int | None, option(D.batch, "--batch", min=1)] = D.batch.default,
    batch_wait_ms: Annotated[float, option(D.batch_wait_ms, "--batch-wait-ms", min=0)
                             ] = D.batch_wait_ms.default,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Allow browser calls from this origin (repeatable; default: "
        "none).")] = None,
    root_path: Annotated[str, option(D.root_path, "--root-path")] = D.root_path.default,
    review: Annotated[bool, typer.Option(
        "--review", help="Accept reviews (confirm, correct, label) from the page at /review "
        "and POST /v1/works/{id}/review; each write needs the token printed at start.")
    ] = False,
    review_store: Annotated[Path | None, typer.Option(
        "--review-store", dir_okay=False, help="The review store (default: the one beside "
        "--meta, meta.parquet.review.sqlite).")] = None,
    review_token_file: Annotated[Path | None, typer.Option(
        "--review-token-file", exists=True, dir_okay=False, help="Read the review token "
        "from this file (first line) instead of making and printing a new one.")] = None,
    filename_pattern: Annotated[str | None, typer.Option(
        "--filename-pattern", help=FILENAME_PATTERN)] = None,
) -> None:
    """Serve the JSON API (/v1, docs at /docs) and a web page to tag, search and browse."""
    with cli_errors():
        missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
        if missing:
            raise ArtyLyzeError(f"artylyze serve needs {', '.join(missing)}: "
                                "pip install 'artylyze[serve]'")
        from artylyze.serve.server import run

        run(ServeOptions(index=index, meta=meta, collection=collection, bundle=bundle,
                         host=host, port=port, workers=workers, threads=threads, device=device,
                         max_upload_bytes=int(max_upload_mb * MIB), max_pixels=max_pixels,
                         max_inflight=max_inflight, timeout_s=timeout, max_batch=batch,
                         batch_wait_ms=batch_wait_ms, cors_origins=tuple(cors_origin or ()),
                         root_path=root_path, review=review, review_store=review_store,
                         review_token_file=review_token_file, filename_pattern=filename_pattern))
