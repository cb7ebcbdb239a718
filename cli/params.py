"""Typer options whose help text comes from :mod:`artylyze.options`, next to the default."""

from __future__ import annotations

from typing import Any

import typer

from artylyze.options import Opt


def option(spec: Opt, *names: str, **kwargs: Any) -> Any:
    """``typer.Option(*names, help=spec.help, ...)``; the parameter's default is
    ``spec.default`` (Annotated style, so every command stays a plain function)."""
    return typer.Option(*names, help=spec.help, **kwargs)
