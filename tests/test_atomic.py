"""artylyze.atomic.atomic_write: the one way a single file is written (temp + fsync + rename)."""

from __future__ import annotations

import os

import pytest

from artylyze import atomic
from artylyze.atomic import atomic_write, atomic_write_text


def test_writes_durably_and_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    target = tmp_path / "out.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(atomic.FILE_MODE)
    assert any(p.endswith(".tmp") for p in synced), "the data is synced before the rename"
    assert str(tmp_path) in synced, "the folder is synced after it"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def boom(f) -> None:
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
