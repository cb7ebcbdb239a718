"""One base error for everything the library refuses, so the CLI can turn it into an exit code."""


class ArtyLyzeError(Exception):
    """Base class of every error ArtyLyze raises on purpose (bad input, bad bundle, bad index)."""
