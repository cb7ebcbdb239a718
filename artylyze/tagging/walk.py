"""Walk a collection: every image file under a root, with the problems met on the way.

A collection is a directory tree curated by people, so it holds everything: symlinks
(followed, so trees assembled from links work), symlink loops, directories we may not read,
names that are not UTF-8. None of these stops a run: loops and unreadable directories
become :class:`WalkProblem` entries the caller reports; files that cannot be stat'ed
(broken links) are returned with ``error`` set so they still get a row.

Paths are kept as ``str`` with ``surrogateescape`` (what ``os.fsdecode`` gives), so any byte
name round-trips to the real file; :func:`artylyze.store.encode_path` turns them into the
valid UTF-8 text Parquet needs.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artylyze.errors import ArtyLyzeError
from artylyze.imaging import IMAGE_EXTENSIONS


class CollectionError(ArtyLyzeError):
    """The collection root is missing or is not a directory."""


@dataclass(frozen=True)
class FileEntry:
    """One candidate image file. ``rel`` uses ``/`` and may hold surrogate escapes."""

    rel: str
    abspath: str
    size: int | None
    mtime_ns: int | None
    error: str | None = None
    error_kind: str = "unreadable"  # what the summary counts ``error`` as, when set
    extra: tuple[tuple[str, str | None], ...] = ()  # more columns of its row (IIIF)
    ref: Any = None  # what a source's own decode step needs (a IIIF image), else None


@dataclass(frozen=True)
class WalkProblem:
    """A directory that was skipped, and why (``kind``: unreadable_dir, symlink_loop, ...)."""

    rel: str
    kind: str
    message: str


@dataclass
class WalkResult:
    files: list[FileEntry] = field(default_factory=list)
    problems: list[WalkProblem] = field(default_factory=list)


def _matches(rel: str, name: str, patterns: Iterable[str]) -> bool:
    """A pattern with ``/`` matches the whole relative path; without, the base name."""
    return any(fnmatch.fnmatchcase(rel if "/" in p else name, p) for p in patterns)


def walk_collection(root: str | os.PathLike[str], include: Iterable[str] = (),
                    exclude: Iterable[str] = (),
                    extensions: Iterable[str] | None = None) -> WalkResult:
    """List image files under ``root`` in a stable (sorted) order.

    ``include``: if given, a file must match one pattern. ``exclude``: files *and*
    directories matching any pattern are skipped (``--exclude @eaDir`` prunes a whole tree).
    """
    result = WalkResult()
    for item in iter_collection(root, tuple(include), tuple(exclude),
                                frozenset(e.lower() for e in (extensions or IMAGE_EXTENSIONS))):
        (result.files if isinstance(item, FileEntry) else result.problems).append(item)
    return result


def iter_collection(root: str | os.PathLike[str], include: tuple[str, ...],
                    exclude: tuple[str, ...],
                    extensions: frozenset[str]) -> Iterator[FileEntry | WalkProblem]:
    """Depth-first, sorted walk following symlinks; yields files and problems as met."""
    top = os.fsdecode(os.path.abspath(os.fspath(root)))
    if not os.path.isdir(top):
        what = "does not exist" if not os.path.exists(top) else "is not a directory"
        raise CollectionError(f"collection {top} {what}")
    st = os.stat(top)
    # Each stack item: (absolute dir, relative dir, (dev, ino) of its ancestors, itself included)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (top, "", frozenset({(st.st_dev, st.st_ino)}))]
    seen_dirs: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): "."}
    while stack:
        absdir, reldir, ancestors = stack.pop()
        try:
            with os.scandir(absdir) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as e:
            yield WalkProblem(reldir or ".", "unreadable_dir",
                              f"cannot list directory {reldir or '.'}: {e.strerror or e}")
            continue
        subdirs: list[tuple[str, str, frozenset[tuple[int, int]]]] = []
        for entry in entries:
            rel = f"{reldir}/{entry.name}" if reldir else entry.name
            if exclude and _matches(rel, entry.name, exclude):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                problem, key = _dir_key(entry, rel, ancestors, seen_dirs)
                if problem is not None:
                    yield problem
                elif key is not None:
                    seen_dirs[key] = rel
                    subdirs.append((entry.path, rel, ancestors | {key}))
                continue
            if os.path.splitext(entry.name)[1].lower() not in extensions:
                continue
            if include and not _matches(rel, entry.name, include):
                continue
            yield _file_entry(entry, rel)
        stack.extend(reversed(subdirs))  # pop() then visits them in sorted order


def _dir_key(entry: os.DirEntry[str], rel: str, ancestors: frozenset[tuple[int, int]],
             seen: dict[tuple[int, int], str]
             ) -> tuple[WalkProblem | None, tuple[int, int] | None]:
    """Identify a directory by (dev, ino); report loops and second visits via symlinks."""
    try:
        st = entry.stat()
    except OSError as e:
        return WalkProblem(rel, "unreadable_dir", f"cannot stat directory {rel}: {e}"), None
    key = (st.st_dev, st.st_ino)
    if key in ancestors:
        target = seen.get(key, "an ancestor")
        return WalkProblem(rel, "symlink_loop", f"{rel} links back to {target}; not followed"), None
    if key in seen:
        return WalkProblem(rel, "duplicate_dir",
                           f"{rel} is the same directory as {seen[key]}; listed once"), None
    return None, key


def _file_entry(entry: os.DirEntry[str], rel: str) -> FileEntry:
    try:
        st = entry.stat()
    except OSError as e:
        reason = "broken symlink" if entry.is_symlink() else (e.strerror or str(e))
        return FileEntry(rel, entry.path, None, None, f"cannot stat file: {reason}")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader forever
        return FileEntry(rel, entry.path, st.st_size, st.st_mtime_ns, "not a regular file")
    return FileEntry(rel, entry.path, st.st_size, st.st_mtime_ns)


def absolute_root(root: str | os.PathLike[str]) -> str:
    """The absolute root as text (surrogate escapes kept), as stored in Parquet metadata."""
    return os.fsdecode(Path(os.path.abspath(os.fspath(root))))
