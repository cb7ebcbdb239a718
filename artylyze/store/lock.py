"""A lock file that says who holds it, appears whole or not at all, and never outlives its holder.

The lock is JSON (pid, host, boot id, the process's start time, wall-clock start, a random
token), written to a temp file and hard-linked into place: the link either creates the lock
with its full content or fails because one exists, so no reader ever sees a half-written
lock, and a full disk leaves nothing behind. Filesystems without hard links fall back to
``O_EXCL`` (then a lock that cannot be parsed is judged by its age).

A lock is stale, and is taken over, when its holder is gone, whatever state it was left in:
its pid is dead on this host, the pid now belongs to another process (start times differ),
the machine rebooted since (boot ids differ), or it cannot be read and is older than
:data:`GARBAGE_AFTER_S`. Locks of other hosts are never judged: only the user can know.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from artylyze.errors import ArtyLyzeError

GARBAGE_AFTER_S = 10.0  # an unreadable lock older than this was left by a crash
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ENOSYS}


class LockedError(ArtyLyzeError):
    """Another live run holds the lock."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux); tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name in field 2 may hold spaces and parentheses
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's content; None when it cannot be parsed (empty, garbage, half written)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def holder_gone(held: dict[str, Any] | None, path: Path) -> bool:
    """Whether the run that wrote ``held`` (the content of ``path``) can no longer be running."""
    if held is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > GARBAGE_AFTER_S
    if held.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if held.get("boot_id") and boot and held["boot_id"] != boot:
        return True
    pid = held["pid"]
    if not _alive(pid):
        return True
    ticks = held.get("start_ticks")
    return ticks is not None and _start_ticks(pid) not in (None, ticks)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``; nothing is left if that fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class FileLock:
    """``path`` held by this process; a stale lock is taken over (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], what: str | None = None) -> None:
        self.path = Path(path)
        self.what = what or str(self.path.with_suffix(""))  # named in the "locked" message
        self.took_over: str | None = None  # the stale lock replaced, described, if any
        self.info: dict[str, Any] = {}

    def _content(self) -> bytes:
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
                     "start_ticks": _start_ticks(os.getpid()), "started": time.time(),
                     "token": secrets.token_hex(8)}
        return json.dumps(self.info).encode()

    def _create(self) -> bool:
        """Make the lock with its whole content, or return False if one exists."""
        data = self._content()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{self.info['token']}.tmp")
        try:
            _write_new(tmp, data)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in _NO_LINKS:
                    raise
            return self._create_excl(data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _create_excl(self, data: bytes) -> bool:
        try:
            _write_new(self.path, data)
        except FileExistsError:
            return False
        return True

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                return self
            held = _read(self.path)
            if not holder_gone(held, self.path):
                raise self._locked(held)
            if self._take_aside(held):
                self.took_over = (f"pid {held.get('pid')} on {held.get('host')}" if held
                                  else "an unreadable lock left by a crash")
        if self._create():
            return self
        raise LockedError(f"could not take the lock {self.path}; another run is starting")

    def _locked(self, held: dict[str, Any] | None) -> LockedError:
        if held is None:
            return LockedError(f"{self.what} is being locked by another run that is starting "
                               f"({self.path}); try again in a few seconds")
        return LockedError(
            f"{self.what} is being written by another run (pid {held.get('pid', '?')} on "
            f"{held.get('host', '?')}); wait for it to finish, or delete {self.path} if no "
            "such run exists")

    def _take_aside(self, held: dict[str, Any] | None) -> bool:
        """Move the stale lock away, making sure what moved is what was judged stale:
        another run may have taken it over in between (then it is put back)."""
        aside = self.path.with_name(f".{self.path.name}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            if _read(aside) != held:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
                return False
            return True
        finally:
            aside.unlink(missing_ok=True)

    def release(self) -> None:
        held = _read(self.path)
        if held is not None and held.get("token") == self.info.get("token"):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
