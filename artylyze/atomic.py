"""Atomic writes: a temp file (or folder) beside the target, then one rename.

Readers (and a crash at any moment) see either the old file or folder or the complete new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

FILE_MODE = 0o644  # outputs are meant to be shared (the umask may narrow it: chmod after)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temp file in the same folder, fsync it, rename it over ``path``, fsync
    the folder: readers never see half a file, and after a crash or power cut ``path`` holds
    the old or the new content (without the first fsync a filesystem may commit the rename
    before the data, leaving an empty file). The one way ArtyLyze writes a single file."""
    path = Path(path)
    # the name is known before the file exists, so a stop signal at any moment (even while
    # it is being created, where mkstemp would leak it) leaves no temp file behind
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text, written atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fsdecode(b))


def aside_name(dest: Path) -> Path:
    """Where :func:`replace_dir` parks the old folder when it cannot swap in one step."""
    return dest.with_name(f".{dest.name}.old")


def replace_dir(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Put the complete folder ``new`` at ``dest`` (same parent), replacing what is there.

    One atomic exchange where the filesystem allows it; else two renames, and a crash
    between them leaves the old folder at :func:`aside_name`, which :func:`recover_dir`
    puts back (or replaces with the staged new one).
    """
    new, dest = Path(new), Path(dest)
    if not os.path.lexists(dest):
        os.rename(new, dest)
    elif _exchange(new, dest):
        shutil.rmtree(new)  # it holds the old folder now
    else:
        old = aside_name(dest)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(new, dest)
        shutil.rmtree(old)
    fsync_dir(dest.parent)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in ``path`` durable; some filesystems refuse, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def staged_dir(dest: str | os.PathLike[str]) -> Path:
    """Where a new version of the folder ``dest`` is written before :func:`swap_in_dir`."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.new")


def swap_in_dir(dest: str | os.PathLike[str]) -> None:
    """Put the complete folder :func:`staged_dir` at ``dest`` (see :func:`replace_dir`)."""
    replace_dir(staged_dir(dest), dest)


def recover_dir(dest: str | os.PathLike[str]) -> None:
    """Finish or undo a :func:`replace_dir` that a crash cut short; call it (holding whatever
    lock guards ``dest``) before writing a new version.

    The old folder is parked at :func:`aside_name` only once the new one is complete, so with
    ``dest`` missing the staged folder (:func:`staged_dir`), when there is one, is put in
    place, else the old one is put back. A staged folder without a parked one was cut short
    while being written, and is dropped.
    """
    dest = Path(dest)
    new, old = staged_dir(dest), aside_name(dest)
    if old.exists():
        if not os.path.lexists(dest):
            os.replace(new if new.is_dir() else old, dest)
        shutil.rmtree(old, ignore_errors=True)
    if new.exists():
        shutil.rmtree(new, ignore_errors=True)
