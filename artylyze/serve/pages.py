"""The server's fixed pages: an HTML file from the package and the few files it loads, all
read once at start-up, nothing looked up by path (the main page and the review queue)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

from artylyze.serve.errors import NotFound

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def static_bytes(name: str) -> bytes:
    return (resources.files("artylyze.serve") / "static" / name).read_bytes()


def add_page(app: FastAPI, path: str, html: str, files_at: str, files: dict[str, str],
             what: str) -> None:
    """GET ``path``: the package's ``html`` under :data:`PAGE_CSP`; GET ``files_at/NAME``:
    one of ``files`` (name -> media type), not cached; any other name is a 404 that says
    there is no such ``what``."""
    page = static_bytes(html)
    loaded = {name: (static_bytes(name), kind) for name, kind in files.items()}

    @app.get(path, include_in_schema=False)
    def page_route() -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP})

    @app.get(files_at + "/{name}", include_in_schema=False)
    def file_route(name: str) -> Response:
        if name not in loaded:
            raise NotFound(f"no {what} {name[:80]!r}")
        data, kind = loaded[name]
        return Response(data, media_type=kind, headers={"Cache-Control": "no-cache"})
