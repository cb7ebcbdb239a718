"""Turn library errors into a one-line message and an exit code; only the CLI exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from artylyze.errors import ArtyLyzeError


@contextmanager
def cli_errors() -> Iterator[None]:
    """Print an ``ArtyLyzeError`` as ``error: ...`` on stderr and exit with status 2."""
    try:
        yield
    except ArtyLyzeError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
