"""Stop signals sent to real ``artylyze`` child processes (issue 18, items 6 and 9).

SIGTERM (what systemd, Kubernetes and ``timeout`` send) and SIGINT stop a run cleanly: exit
143 / 130, what was committed stays, no temp file or lock is left, and the next run
resumes to the same result as an uninterrupted one. ``kill -9`` of an index build leaves
the previous index whole. Signals are sent when the child reaches a known point (a part
file appears, a hook writes a file), never after a fixed delay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_faults import leftovers
from test_tag import run, write_pictures
from test_tag_crash import assert_same_predictions, kill_after_first_part, wait_until
from tiny_bundle import make_tiny_bundle

from artylyze.index.store import load_index_dir
from artylyze.store import OutputTarget

N_FILES = 200  # what test_tag_crash.assert_same_predictions expects


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("signals")
    write_pictures(tmp / "col", N_FILES)
    bundle = make_tiny_bundle(tmp / "bundle", size=16)
    run(tmp / "col", tmp / "reference.parquet", bundle)
    return {"tmp": tmp, "col": tmp / "col", "bundle": bundle,
            "reference": tmp / "reference.parquet"}


def artylyze(*args: str | os.PathLike[str], code: str = "", **popen) -> subprocess.Popen:
    """The CLI in a child process; ``code`` runs first (a hook that pauses it)."""
    script = f"{code}\nfrom artylyze.cli.main import main\nmain()"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def tag_child(setup: dict[str, Path], out: Path, *extra: str, **popen) -> subprocess.Popen:
    return artylyze("tag", setup["col"], "--out", out, "--model", setup["bundle"],
                    "--batch-size", "2", "--commit-every", "2", "--workers", "1",
                    "--threads", "1", *extra, **popen)


def finished(proc: subprocess.Popen) -> tuple[int, str]:
    output = proc.communicate(timeout=300)[0].decode()
    return proc.returncode, output


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_commits_what_is_done_and_the_next_run_resumes(
        setup: dict[str, Path], tmp_path: Path, sig: signal.Signals, code: int) -> None:
    out = tmp_path / "meta.parquet"
    proc = tag_child(setup, out)
    kill_after_first_part(proc, out)
    proc.send_signal(sig)
    returncode, output = finished(proc)
    assert returncode == code, output
    assert f"stopped by {sig.name}: stopped cleanly" in output and "Traceback" not in output
    assert leftovers(tmp_path) == []  # no lock, no part-*.tmp
    parts = list(OutputTarget.resolve(out).workdir.glob("part-*.parquet"))
    assert parts and not out.exists()

    summary = run(setup["col"], out, setup["bundle"])
    assert not any("stale lock" in w for w in summary.warnings)
    assert 0 < summary.resumed < N_FILES
    assert summary.images_inferred == N_FILES - summary.resumed
    assert_same_predictions(out, setup["reference"])


def test_ctrl_c_to_the_whole_group_leaves_no_false_error_rows(setup: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """A terminal sends SIGINT to every process of the group, decode processes included:
    they leave the stop to the main process, so no good file gets an error row."""
    out = tmp_path / "meta.parquet"
    proc = tag_child(setup, out, "--executor", "process", start_new_session=True)
    kill_after_first_part(proc, out)
    os.killpg(proc.pid, signal.SIGINT)
    returncode, output = finished(proc)
    assert returncode == 130, output
    parts = sorted(OutputTarget.resolve(out).workdir.glob("part-*.parquet"))
    statuses = {s for p in parts for s in pq.read_table(p).column("status").to_pylist()}
    assert statuses == {"ok"}
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- index build

PAUSE = textwrap.dedent("""
    import sys, time, pathlib
    import artylyze.index.store as store
    real = store._write_parts
    def paused(folder, *args, **kwargs):
        real(folder, *args, **kwargs)
        note = pathlib.Path({ready!r} + ".tmp")  # every part written, not swapped in yet
        note.write_text(str(folder))
        note.rename({ready!r})  # whole, so the test never reads it half written
        time.sleep(120)
    store._write_parts = paused
""")


@pytest.fixture(scope="module")
def meta(setup: dict[str, Path]) -> Path:
    return setup["reference"]


def build_paused(meta: Path, out: Path, ready: Path, *extra: str) -> subprocess.Popen:
    proc = artylyze("index", "build", meta, "--out", out, *extra,
                    code=PAUSE.format(ready=str(ready)))
    wait_until(proc, ready.exists, "its write", limit_s=300)
    return proc


def manifest_of(idx: Path) -> dict:
    return json.loads((idx / "manifest.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_index_build_leaves_the_old_index_whole(meta: Path, tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    out = tmp_path / "idx"
    first = artylyze("index", "build", meta, "--out", out, "--gmm-k", "2", "--k", "2")
    assert finished(first)[0] == 0
    before = manifest_of(out)

    proc = build_paused(meta, out, tmp_path / "ready", "--gmm-k", "3", "--k", "3")
    temp = Path((tmp_path / "ready").read_text())
    assert temp.parent == tmp_path and temp.name.startswith(".idx.build-")
    proc.send_signal(sig)
    returncode, output = finished(proc)
    assert returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 143), output
    assert manifest_of(out) == before
    assert load_index_dir(out).manifest.clusters["gmm_k"] == 2  # whole, and verified
    if sig == signal.SIGTERM:
        assert not temp.exists() and leftovers(tmp_path) == []
    else:
        assert temp.exists()  # left by kill -9; the next build removes it

    again = artylyze("index", "build", meta, "--out", out, "--gmm-k", "3", "--k", "3")
    returncode, output = finished(again)
    assert returncode == 0, output
    assert load_index_dir(out).manifest.clusters["gmm_k"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "ready"]
