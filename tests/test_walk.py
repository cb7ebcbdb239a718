"""Walking a collection: what is listed, in which order, and what is reported instead of fatal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artylyze.tagging.walk import CollectionError, walk_collection


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rels(result) -> list[str]:
    return [f.rel for f in result.files]


def test_recursive_sorted_and_only_image_extensions(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "sub/z.tiff", "sub/deeper/y.webp", "notes.txt", "sub/x.JPEG",
                 "c.gif", "d.bmp", "e.tif", "noext"):
        touch(tmp_path / name)
    result = walk_collection(tmp_path)
    assert rels(result) == ["a.PNG", "b.jpg", "c.gif", "d.bmp", "e.tif", "sub/x.JPEG",
                            "sub/z.tiff", "sub/deeper/y.webp"]
    assert result.problems == []
    first = result.files[0]
    assert first.abspath == str(tmp_path / "a.PNG")
    assert first.size == 1 and first.mtime_ns == os.stat(tmp_path / "a.PNG").st_mtime_ns
    assert first.error is None


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    for name in ("keep/a.jpg", "keep/b.png", "keep/@eaDir/thumb.jpg", "other/c.jpg", "d.jpg"):
        touch(tmp_path / name)
    assert rels(walk_collection(tmp_path, include=["*.jpg"])) == [
        "d.jpg", "keep/a.jpg", "keep/@eaDir/thumb.jpg", "other/c.jpg"]
    assert rels(walk_collection(tmp_path, exclude=["@eaDir"])) == [
        "d.jpg", "keep/a.jpg", "keep/b.png", "other/c.jpg"]
    assert rels(walk_collection(tmp_path, include=["keep/*"], exclude=["*.png", "@eaDir"])) == [
        "keep/a.jpg"]
    assert rels(walk_collection(tmp_path, exclude=["other"])) == [
        "d.jpg", "keep/a.jpg", "keep/b.png", "keep/@eaDir/thumb.jpg"]


def test_symlinks_followed_loops_reported_special_files_flagged(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "a.jpg")
    os.symlink(tmp_path / "real", tmp_path / "alias")  # same dir twice
    os.symlink(tmp_path, tmp_path / "real" / "loop")  # back to the root
    os.symlink(tmp_path / "missing.jpg", tmp_path / "broken.jpg")
    os.mkfifo(tmp_path / "fifo.png")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    touch(outside / "o.jpg")
    os.symlink(outside, tmp_path / "linked")
    result = walk_collection(tmp_path)
    assert rels(result) == ["broken.jpg", "fifo.png", "alias/a.jpg", "linked/o.jpg"]
    broken, fifo = result.files[:2]
    assert broken.size is None and broken.error == "cannot stat file: broken symlink"
    assert fifo.error == "not a regular file"
    kinds = {(p.rel, p.kind) for p in result.problems}
    assert kinds == {("alias/loop", "symlink_loop"), ("real", "duplicate_dir")}


def test_unreadable_directory_is_a_problem_not_a_failure(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "locked" / "b.jpg")
    touch(tmp_path / "z" / "c.jpg")
    real_scandir = os.scandir

    def scandir(path):  # root may read anything, so refuse like a chmod 000 directory would
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = walk_collection(tmp_path)
    assert rels(result) == ["a.jpg", "z/c.jpg"]
    [problem] = result.problems
    assert (problem.rel, problem.kind) == ("locked", "unreadable_dir")
    assert "Permission denied" in problem.message


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.jpg"
    with open(raw, "wb") as f:
        f.write(b"data")
    [entry] = walk_collection(tmp_path).files
    assert os.fsencode(entry.rel) == b"caf\xe9 \xff.jpg"
    with open(entry.abspath, "rb") as f:
        assert f.read() == b"data"


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match="does not exist"):
        walk_collection(tmp_path / "nope")
    touch(tmp_path / "file.jpg")
    with pytest.raises(CollectionError, match="is not a directory"):
        walk_collection(tmp_path / "file.jpg")
