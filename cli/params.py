"""Typer options whose help text comes from :mod:`artylyze.options`, next to the default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from artylyze.options import Opt


def index_folder(value: Path | None) -> Path | None:
    """``--index``: a folder made by ``artylyze index build``. A file (most often the
    meta.parquet an index is built from) is refused in one line, like every other error."""
    if value is not None and value.is_file():
        from artylyze.cli.errors import fail

        fail(f"--index {value} is a file; an index is the folder `artylyze index build` "
             "makes (from a meta.parquet: `artylyze index build META --out DIR`)")
    return value


def option(spec: Opt, *names: str, **kwargs: Any) -> Any:
    """``typer.Option(*names, help=spec.help, ...)``; the parameter's default is
    ``spec.default`` (Annotated style, so every command stays a plain function)."""
    return typer.Option(*names, help=spec.help, **kwargs)
