"""Faults an operator meets (issue 18): full disks, stale locks, outputs ArtyLyze did not write,
errors that used to end in tracebacks, ``--strict`` with unreadable folders.

A full disk is a fake filesystem layer (Parquet writes raise ENOSPC) so CI needs no mount;
one test repeats the issue's exact steps on a real 1 MB tmpfs where mounting is allowed.
Signals sent to real child processes are in ``test_faults_signals.py``, hostile inputs in
``test_faults_inputs.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_tag import rows_by_path, run, tag_cli, write_pictures
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.errors import Interrupted
from artylyze.signals import critical, stop_signals
from artylyze.store import OutputLock, OutputTarget
from artylyze.store import lock as lock_module
from artylyze.store.lock import LockedError


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), size=16)


def error_lines(output: str) -> list[str]:
    """The ``error:`` lines of a CLI run; the policy says: exactly one, no traceback."""
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.startswith("error:")]


def leftovers(folder: Path) -> list[str]:
    """Temp and lock files anywhere under ``folder``: a clean stop leaves none."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".lock")) or ".stale-" in p.name)


class FullDisk:
    """A fake filesystem layer: every Parquet write after the first ``after`` fails with
    ENOSPC, as on a full disk, until :meth:`free`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
        self.after, self.writes, self.full = after, 0, True
        real, layer = pq.ParquetWriter, self

        class Writer(real):
            def write_table(self, *args, **kwargs):
                layer.writes += 1
                if layer.full and layer.writes > layer.after:
                    raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] "
                                                "No space left on device")
                return super().write_table(*args, **kwargs)

        monkeypatch.setattr(pq, "ParquetWriter", Writer)

    def free(self) -> None:
        self.full = False


# ---------------------------------------------------------------- 1. full disks and locks

def test_a_full_disk_commits_what_is_done_releases_the_lock_and_the_next_run_resumes(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col, out = tmp_path / "col", tmp_path / "out" / "meta.parquet"
    write_pictures(col, 20)
    reference = tmp_path / "reference.parquet"
    run(col, reference, bundle_dir)
    disk = FullDisk(monkeypatch, after=3)
    res = tag_cli(col, "--out", out, "--model", bundle_dir, "--batch-size", 2,
                  "--commit-every", 2, "--workers", 1)
    assert res.exit_code == 2, res.output
    (line,) = error_lines(res.output)
    assert "No space left on device; free some space and run again" in line
    assert leftovers(tmp_path / "out") == []  # no lock, no part-*.tmp
    workdir = OutputTarget.resolve(out).workdir
    assert len(list(workdir.glob("part-*.parquet"))) == 3  # committed before the disk filled
    assert not out.exists()

    disk.free()
    again = tag_cli(col, "--out", out, "--model", bundle_dir)
    assert again.exit_code == 0, again.output
    assert "resumed 6 rows from an interrupted run" in again.output
    assert "stale lock" not in again.output  # there was none to take over
    assert rows_by_path(out).keys() == rows_by_path(reference).keys()
    assert leftovers(tmp_path / "out") == [] and not workdir.exists()


def test_a_full_disk_during_the_final_merge_keeps_the_old_output(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    col, out = tmp_path / "col", tmp_path / "meta.parquet"
    write_pictures(col, 6)
    run(col, out, bundle_dir)
    before = out.read_bytes()
    write_pictures(col, 2, start=6)
    disk = FullDisk(monkeypatch, after=1)  # the new part fits, the merged output does not
    res = tag_cli(col, "--out", out, "--model", bundle_dir, "--quiet")
    assert res.exit_code == 2 and "No space left on device" in error_lines(res.output)[0]
    assert out.read_bytes() == before and leftovers(tmp_path) == []
    disk.free()
    s = run(col, out, bundle_dir)
    assert (s.resumed, s.images_inferred, s.rows_written) == (2, 0, 8)


def test_a_full_disk_during_an_index_build_keeps_the_old_index(
        tmp_path: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(index_dir, idx)
    before = (idx / "manifest.json").read_bytes()
    import artylyze.index.store as index_store

    def full(path: Path, data: object) -> None:  # the last parts, in the temp folder, do not fit
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(index_store, "write_json", full)
    meta = index_dir.parent / "meta.parquet"
    res = CliRunner().invoke(app, ["index", "build", str(meta), "--out", str(idx)])
    assert res.exit_code == 2
    assert "No space left on device; free some space" in error_lines(res.output)[0]
    assert (idx / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temp folder, no lock


def test_a_full_disk_while_taking_the_lock_leaves_nothing(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pictures(tmp_path / "col", 2)
    real = lock_module._write_new

    def full(path: Path, data: bytes) -> None:
        real(path, b"")  # the file is made, its content does not fit
        path.unlink()
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(lock_module, "_write_new", full)
    res = tag_cli(tmp_path / "col", "--out", tmp_path / "meta.parquet", "--model", bundle_dir)
    assert res.exit_code == 2
    assert "meta.parquet.lock" in error_lines(res.output)[0]
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(lock_module, "_write_new", real)
    assert tag_cli(tmp_path / "col", "--out", tmp_path / "meta.parquet", "--model",
                   bundle_dir).exit_code == 0


def test_the_issue_steps_on_a_real_full_tmpfs(tmp_path: Path, bundle_dir: Path) -> None:
    """``mount -t tmpfs``, tag into it, fill it, tag again, free it, tag again."""
    small = tmp_path / "small"
    small.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {e}")
    try:
        col, out = tmp_path / "col", small / "meta.parquet"
        write_pictures(col, 12)
        assert tag_cli(col, "--out", out, "--model", bundle_dir).exit_code == 0
        write_pictures(col, 12, start=12)
        filler = small / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # dd if=/dev/zero until it is full
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        res = tag_cli(col, "--out", out, "--model", bundle_dir)
        assert res.exit_code == 2 and "No space left on device" in error_lines(res.output)[0]
        assert leftovers(small) == []
        filler.unlink()
        res = tag_cli(col, "--out", out, "--model", bundle_dir)
        assert res.exit_code == 0, res.output
        assert pq.read_table(out).num_rows == 24 and leftovers(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_lock_appears_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path / "meta.parquet")
    with OutputLock(target):
        held = json.loads(target.lockfile.read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert {"boot_id", "start_ticks", "started", "token"} <= held.keys()
        assert [p.name for p in tmp_path.iterdir()] == ["meta.parquet.lock"]
    assert list(tmp_path.iterdir()) == []


def test_an_empty_or_garbled_lock_left_by_a_crash_is_taken_over(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path / "meta.parquet")
    for garbage in (b"", b'{"pid": 12', b"\x00\x00\x00", b"[1, 2]"):
        target.lockfile.write_bytes(garbage)
        long_ago = time.time() - 3600
        os.utime(target.lockfile, (long_ago, long_ago))
        with OutputLock(target) as lock:
            assert lock.took_over == "an unreadable lock left by a crash"
        assert not target.lockfile.exists()
    target.lockfile.write_bytes(b"")  # just made: a run that is writing its lock right now
    with pytest.raises(LockedError, match="another run that is starting"):
        OutputLock(target).acquire()


def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path / "meta.parquet")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = lock_module._start_ticks(other.pid)
        if ticks is None:
            pytest.skip("no /proc: process start times are not known here")
        lock = {"pid": other.pid, "host": socket.gethostname(), "boot_id": lock_module._boot_id()}
        target.lockfile.write_text(json.dumps({**lock, "start_ticks": ticks}))
        with pytest.raises(LockedError, match=f"pid {other.pid} on"):
            OutputLock(target).acquire()  # its holder is alive
        target.lockfile.write_text(json.dumps({**lock, "start_ticks": ticks + 1}))
        with OutputLock(target) as taken:  # same pid, another process: the holder is gone
            assert taken.took_over == f"pid {other.pid} on {socket.gethostname()}"
        target.lockfile.write_text(json.dumps({**lock, "start_ticks": ticks,
                                               "boot_id": "another-boot"}))
        with OutputLock(target) as taken:  # written before the machine rebooted
            assert taken.took_over
    finally:
        other.kill()
        other.wait()


# ---------------------------------------------------------------- 5. outputs not ours

def foreign_parquet(path: Path) -> bytes:
    pq.write_table(pa.table({"accession": ["A-1", "A-2"], "value": [1, 2]}), path)
    return path.read_bytes()


def test_a_parquet_artylyze_did_not_write_is_never_replaced_without_force(
        tmp_path: Path, bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 3)
    out = tmp_path / "catalogue.parquet"
    before = foreign_parquet(out)
    for extra in ((), ("--full",)):
        res = tag_cli(tmp_path / "col", "--out", out, "--model", bundle_dir, *extra)
        assert res.exit_code == 2
        (line,) = error_lines(res.output)
        assert "was not written by ArtyLyze" in line and "--force" in line
        assert out.read_bytes() == before
    assert leftovers(tmp_path) == [] and not OutputTarget.resolve(out).workdir.exists()
    res = tag_cli(tmp_path / "col", "--out", out, "--model", bundle_dir, "--force")
    assert res.exit_code == 0, res.output
    assert "replaced (--force)" in res.output and pq.read_table(out).num_rows == 3


def test_a_file_that_is_not_parquet_at_out_is_not_replaced(tmp_path: Path,
                                                          bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 2)
    out = tmp_path / "meta.parquet"
    out.write_text("my notes, not a Parquet file\n")
    res = tag_cli(tmp_path / "col", "--out", out, "--model", bundle_dir)
    assert res.exit_code == 2 and "cannot be read as Parquet" in error_lines(res.output)[0]
    assert out.read_text() == "my notes, not a Parquet file\n"


def test_foreign_part_files_in_a_dataset_folder_are_not_replaced(tmp_path: Path,
                                                                 bundle_dir: Path) -> None:
    write_pictures(tmp_path / "col", 2)
    (tmp_path / "meta").mkdir()
    before = foreign_parquet(tmp_path / "meta" / "part-00000.parquet")
    res = tag_cli(tmp_path / "col", "--out", f"{tmp_path}/meta/", "--model", bundle_dir)
    assert res.exit_code == 2 and "was not written by ArtyLyze" in error_lines(res.output)[0]
    assert (tmp_path / "meta" / "part-00000.parquet").read_bytes() == before


# ---------------------------------------------------------------- 7. one exit-code policy

def _missing_columns(tmp: Path, bundle_dir: Path, _mp: pytest.MonkeyPatch) -> list[str]:
    write_pictures(tmp / "col", 3)
    run(tmp / "col", tmp / "meta.parquet", bundle_dir)
    table = pq.read_table(tmp / "meta.parquet")
    pq.write_table(table.drop_columns(["size"]), tmp / "meta.parquet")  # keeps our metadata
    return ["tag", str(tmp / "col"), "--out", str(tmp / "meta.parquet"), "--model",
            str(bundle_dir)]


def _text_file_as_meta(tmp: Path, bundle_dir: Path, _mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "notes.txt").write_text("hello\n")
    return ["index", "build", str(tmp / "notes.txt"), "--out", str(tmp / "idx")]


def _proc_out(tmp: Path, bundle_dir: Path, _mp: pytest.MonkeyPatch) -> list[str]:
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    write_pictures(tmp / "col", 1)
    return ["tag", str(tmp / "col"), "--out", "/proc/artylyze-test/meta.parquet", "--model",
            str(bundle_dir)]


def _read_only_out(tmp: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    write_pictures(tmp / "col", 1)

    def read_only(path: Path, data: bytes) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(lock_module, "_write_new", read_only)
    return ["tag", str(tmp / "col"), "--out", str(tmp / "meta.parquet"), "--model",
            str(bundle_dir)]


@pytest.mark.parametrize(("make", "message"), [
    (_missing_columns, "lacks the columns ['size']"),
    (_text_file_as_meta, "notes.txt: not a readable Parquet file"),
    (_proc_out, "cannot write /proc/artylyze-test"),
    (_read_only_out, "Read-only file system; the filesystem is read-only"),
])
def test_what_a_user_can_cause_is_one_line_and_exit_2(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch, make, message: str
) -> None:
    res = CliRunner().invoke(app, make(tmp_path, bundle_dir, monkeypatch))
    assert res.exit_code == 2, res.output
    (line,) = error_lines(res.output)
    assert message in line


def _break_manifest(idx: Path, **changes: object) -> None:
    man = json.loads((idx / "manifest.json").read_text())
    man.update(changes)
    (idx / "manifest.json").write_text(json.dumps(man))


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("idx")
    write_pictures(tmp / "col", 24)
    run(tmp / "col", tmp / "meta.parquet", bundle_dir)
    res = CliRunner().invoke(app, ["index", "build", str(tmp / "meta.parquet"), "--out",
                                   str(tmp / "idx"), "--gmm-k", "2", "--k", "2"])
    assert res.exit_code == 0, res.output
    return tmp / "idx"


@pytest.mark.parametrize(("changes", "message"), [
    ({"files": 5}, "'files' is int, not dict"),
    ({"count": "many"}, "'count' is str, not int"),
    ({"source": ["x"]}, "'source' is list"),
    ({"files": {"../../etc/passwd": {"bytes": 1, "sha256": "0"}}}, "lists '../../etc/passwd'"),
    ({"files": {"vectors.faiss": {"bytes": "big"}}}, "needs 'bytes' and 'sha256'"),
    ({"kind": "something-else"}, "not an ArtyLyze index manifest"),
])
def test_a_malformed_index_manifest_is_one_line_and_exit_2(
        tmp_path: Path, index_dir: Path, changes: dict, message: str) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(index_dir, idx)
    _break_manifest(idx, **changes)
    res = CliRunner().invoke(app, ["similar", "img001.png", "--index", str(idx)])
    assert res.exit_code == 2
    (line,) = error_lines(res.output)
    assert message in line


def test_debug_shows_the_traceback_with_the_same_exit_code(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    args = ["index", "build", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "idx")]
    res = CliRunner().invoke(app, ["--debug", *args])
    assert res.exit_code == 2
    assert "Traceback" in res.output and "IndexBuildError" in res.output


def test_a_bug_still_exits_2_releases_the_lock_and_says_how_to_see_it(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import artylyze.tagging.core as tagging_core

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(tagging_core, "walk_collection", broken)
    (tmp_path / "col").mkdir()
    res = tag_cli(tmp_path / "col", "--out", tmp_path / "meta.parquet", "--model", bundle_dir)
    assert res.exit_code == 2
    (line,) = error_lines(res.output)
    assert "internal error (TypeError: a bug); run with --debug" in line
    assert leftovers(tmp_path) == []


def test_an_interrupt_exits_130_after_a_clean_stop(tmp_path: Path, bundle_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import artylyze.tagging.core as tagging_core

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tagging_core, "walk_collection", interrupted)
    (tmp_path / "col").mkdir()
    res = tag_cli(tmp_path / "col", "--out", tmp_path / "meta.parquet", "--model", bundle_dir)
    assert res.exit_code == 130 and "stopped cleanly" in res.output
    assert "Aborted" not in res.output and leftovers(tmp_path) == []


# ---------------------------------------------------------------- 10. --strict

def test_strict_fails_when_a_folder_could_not_be_read(tmp_path: Path, bundle_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    col = tmp_path / "col"
    write_pictures(col, 2)
    write_pictures(col, 2, sub="locked/")
    real_scandir = os.scandir

    def scandir(path):  # root reads everything: make the folder fail as it does for others
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    args = (col, "--out", tmp_path / "meta.parquet", "--model", bundle_dir)
    assert tag_cli(*args).exit_code == 0
    res = tag_cli(*args, "--strict")
    assert res.exit_code == 1
    assert error_lines(res.output) == ["error: 1 folders could not be read (--strict)"]


def test_a_signal_inside_a_critical_section_waits_for_its_end() -> None:
    """The swap of a new output and the removal of the old one are never cut in half."""
    steps = []
    with pytest.raises(Interrupted) as stopped, stop_signals():
        with critical():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("after the signal")  # still runs: the signal is held
        steps.append("never")
    assert steps == ["after the signal"] and stopped.value.exit_code == 143
