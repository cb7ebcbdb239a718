"""Where a run's output lives: the output itself, its lock and the work dir of the run.

Layout on disk, for ``--out meta.parquet`` (``--out meta/`` is the same with a directory of
``part-NNNNN.parquet`` files as the output)::

    meta.parquet            the result; replaced atomically (artylyze.atomic: temp + rename)
    meta.parquet.lock       who owns the output (see artylyze.store.lock)
    .meta.parquet.parts/    work dir of the run in progress: run.json + part-NNNNN.parquet
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from artylyze.atomic import recover_dir, staged_dir
from artylyze.errors import writing
from artylyze.store.lock import FileLock, LockedError
from artylyze.store.schema import StoreError

OutputLockedError = LockedError  # the name callers of this module know
PART_RE = re.compile(r"part-\d+(-[0-9a-f]+)?\.parquet")  # ours (and older Ray runs')


@dataclass(frozen=True)
class OutputTarget:
    """The output (a file, or a directory of parts) and the files that go with it."""

    path: Path
    dataset: bool

    @classmethod
    def resolve(cls, out: str | os.PathLike[str], dataset: bool = False) -> OutputTarget:
        """``out/`` with a trailing slash, or an existing directory, means a dataset (as does
        ``dataset``, for callers that only write datasets)."""
        text = os.fspath(out)
        path = Path(os.path.abspath(text))
        dataset = dataset or text.endswith(("/", os.sep)) or path.is_dir()
        if dataset and path.exists() and not path.is_dir():
            raise StoreError(f"--out {text}: a directory was asked but {path} is a file")
        return cls(path, dataset)

    def check_replaceable(self) -> None:
        """Refuse to replace a directory that holds anything but our part files."""
        if self.dataset and self.path.is_dir():
            foreign = sorted(p.name for p in self.path.iterdir() if not PART_RE.fullmatch(p.name))
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise StoreError(f"--out {self.path}/ holds other files ({shown}); the output "
                                 "folder is replaced as a whole, so give a new or empty one")

    def sibling(self, suffix: str) -> Path:
        return self.path.parent / f".{self.path.name}{suffix}"

    @property
    def staged(self) -> Path:
        """Where the merge writes the new output before it is swapped in."""
        return staged_dir(self.path) if self.dataset else self.sibling(".tmp")

    @property
    def workdir(self) -> Path:
        return self.sibling(".parts")

    @property
    def lockfile(self) -> Path:
        return self.path.parent / f"{self.path.name}.lock"

    def files(self) -> list[Path]:
        """The Parquet files of the current output (none when there is no output yet)."""
        if self.dataset:
            if not self.path.is_dir():
                return []
            return sorted(p for p in self.path.glob("*.parquet")
                          if not p.name.startswith((".", "_")))
        return [self.path] if self.path.is_file() else []

    def recover(self) -> None:
        """Finish or undo a swap interrupted by a crash (see :func:`artylyze.atomic.recover_dir`),
        and remove the temp files a killed run left (the caller holds the lock)."""
        self.sibling(".tmp").unlink(missing_ok=True)  # where older versions staged it
        temps = self.path.parent.glob(f"{glob.escape(self.path.name)}.*.tmp")  # atomic_write's
        for stale in (*temps, *self.workdir.glob("*.tmp")):
            stale.unlink(missing_ok=True)
        recover_dir(self.path)

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def remove_workdir(target: OutputTarget) -> None:
    target.remove_workdir()


def output_errors(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[None]:
    """An OSError met while locking or writing the output becomes a StoreError that says
    what to do (``kind`` disk_full, read_only, permission or os_error)."""
    return writing(path, StoreError, note=" (the chunks already committed are kept; the next "
                                          "run resumes from them)")


class OutputLock(FileLock):
    """``<out>.lock``: see :mod:`artylyze.store.lock` (atomic; taken over if its holder is gone)."""

    def __init__(self, target: OutputTarget) -> None:
        super().__init__(target.lockfile, what=str(target.path))
