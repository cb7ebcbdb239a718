"""Errors of the index package, so callers can tell a bad input from a bad index."""

from __future__ import annotations

from artylyze.errors import ArtyLyzeError


class IndexBuildError(ArtyLyzeError):
    """The meta.parquet (or labels file, or options) cannot make an index."""


class IndexStoreError(ArtyLyzeError):
    """An index directory is missing, corrupt, of another format, or inconsistent."""


class ModelMismatchError(ArtyLyzeError):
    """A query was embedded by another model than the one the index was built with."""
