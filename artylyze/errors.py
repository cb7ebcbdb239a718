"""One base error for everything the library refuses, so the CLI can turn it into an exit code.

The tree (each class carries a short ``kind``; the CLI maps every one of them to exit 2)::

    ArtyLyzeError                      kind "error"
    ├── ImageError (imaging)           a file that cannot become pixels; kind "empty",
    │                                  "too_large", "not_image", "truncated", "corrupt",
    │                                  "unreadable": what a tag summary counts per file
    ├── BundleError (bundle)           missing, malformed or tampered model bundle
    ├── CollectionError (walk)         the collection root is missing
    ├── TagError (tagging.core)        a run that cannot start or finish
    ├── StoreError (store.schema)      the output cannot be read, written or replaced;
    │                                  kind "disk_full", "read_only", "permission", "foreign"...
    ├── LockedError (lock)             another live run holds the output
    └── IndexBuildError, IndexStoreError, ModelMismatchError (index)

:class:`Interrupted` is not an error: it is how a SIGTERM/SIGINT reaches the code that
must stop cleanly (commit what is done, remove temp files, release locks). It derives from
``KeyboardInterrupt`` so that ``except Exception`` never swallows it.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

#: What an OSError met while writing means to the user.
OS_ERROR_KINDS = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EFBIG: "disk_full",
                  errno.EROFS: "read_only", errno.EACCES: "permission", errno.EPERM: "permission"}


class ArtyLyzeError(Exception):
    """Base class of every error ArtyLyze raises on purpose (bad input, bad bundle, bad index).

    ``kind`` names the failure for scripts and tests; a subclass gets one from its own name
    (``StoreError`` -> ``"store"``) unless it sets it, and one raise may pass its own.
    """

    kind: ClassVar[str] = "error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            name = cls.__name__.removesuffix("Error") or cls.__name__
            cls.kind = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

    def __init__(self, *args: object, kind: str | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind  # type: ignore[misc]  # an instance may narrow its class's kind


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGINT, SIGHUP) turned into an exception in the main thread."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal number, what a shell reports for a process the signal ended."""
        return 128 + self.signum


def os_error_kind(e: OSError) -> str:
    """``disk_full``, ``read_only``, ``permission`` or ``os_error``."""
    return OS_ERROR_KINDS.get(e.errno or 0, "os_error")


def os_error_text(e: OSError) -> str:
    """``No space left on device`` rather than pyarrow's ``Error writing bytes ... Detail:``."""
    if e.errno:
        return os.strerror(e.errno)
    return e.strerror or str(e) or type(e).__name__


_ADVICE = {
    "disk_full": "free some space and run again",
    "read_only": "the filesystem is read-only: write somewhere else",
    "permission": "this user may not write there: write somewhere else or fix the permissions",
}


@contextmanager
def writing(path: str | os.PathLike[str], error: type[ArtyLyzeError],
            note: str = "") -> Iterator[None]:
    """Turn an OSError met while writing ``path`` into ``error``, whose ``kind`` (disk_full,
    read_only, permission, os_error) and message say what happened and what to do."""
    try:
        yield
    except OSError as e:
        kind = os_error_kind(e)
        where = os.fsdecode(e.filename if e.filename else path)
        advice = _ADVICE.get(kind, "fix that and run again")
        raise error(f"cannot write {where}: {os_error_text(e)}; {advice}{note}",
                    kind=kind) from e
