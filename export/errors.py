"""The one error export raises on purpose, so the CLI can turn it into an exit code."""

from __future__ import annotations

from artylyze.errors import ArtyLyzeError


class ExportError(ArtyLyzeError):
    """A checkpoint could not become a bundle that keeps its promises (graph, parity, int8 bar)."""
