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
from artylyze.errors import ArtyLyzeError
from artylyze.serve.options import MIB, ServeOptions

D = ServeOptions  # the defaults live there, once
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
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = D.host,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = D.port,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes, each with its own model session.")] = 1,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="onnxruntime threads per worker (default: cores / workers).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = D.device,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.01, help="Largest upload accepted (413 beyond).")
    ] = D.max_upload_bytes / MIB,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1, help="Largest image decoded (422 beyond).")] = D.max_pixels,
    max_inflight: Annotated[int, typer.Option(
        "--max-inflight", min=1, help="Uploads in progress at once per worker (503 beyond).")
    ] = D.max_inflight,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds to decode and infer an upload (503 beyond).")
    ] = D.timeout_s,
    batch: Annotated[int | None, typer.Option(
        "--batch", min=1, help="Most images of concurrent requests per inference call "
        "(default: 16 on a GPU, 1 on CPU, where batches cost more per image).")] = None,
    batch_wait_ms: Annotated[float, typer.Option(
        "--batch-wait-ms", min=0, help="How long an image waits for others to join its batch.")
    ] = D.batch_wait_ms,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Allow browser calls from this origin (repeatable; default: "
        "none).")] = None,
    root_path: Annotated[str, typer.Option(
        "--root-path", help="Prefix a reverse proxy serves this under, e.g. /artylyze.")] = "",
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
                         root_path=root_path))
