"""``kill -9`` in the middle of ``artylyze tag``: nothing corrupt, nothing lost but work in flight.

The run is a real CLI subprocess over 200 small images with tiny batches and chunks; it is
killed as soon as its first chunk is committed (we poll for the part file), never after a
fixed delay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_tag import rows_by_path, run, tag_cli, write_pictures
from tiny_bundle import make_tiny_bundle

from artylyze.store import OutputTarget

N_FILES = 200


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("crash")
    write_pictures(tmp / "col", N_FILES)
    bundle = make_tiny_bundle(tmp / "bundle", size=16)
    reference = tmp / "reference.parquet"
    run(tmp / "col", reference, bundle)
    return {"tmp": tmp, "col": tmp / "col", "bundle": bundle, "reference": reference}


def start_cli(col: Path, out: Path, bundle: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from artylyze.cli.main import main; main()", "tag", str(col),
           "--out", str(out), "--model", str(bundle), "--batch-size", "2", "--commit-every", "2",
           "--workers", "1", "--threads", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_until(proc: subprocess.Popen, reached, what: str, limit_s: float = 120) -> None:
    """Poll until ``reached()``; fail if the child ends first or never gets there (a guard
    against hangs, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not reached():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stdout.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never reached {what}")
        time.sleep(0.002)


def kill_after_first_part(proc: subprocess.Popen, out: Path) -> None:
    workdir = OutputTarget.resolve(out).workdir
    wait_until(proc, lambda: any(workdir.glob("part-*.parquet")), "its first part")


def sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"


def assert_same_predictions(out: Path, reference: Path) -> None:
    got, want = rows_by_path(out), rows_by_path(reference)
    assert pq.read_table(out).num_rows == len(got) == N_FILES  # exactly one row per file
    assert set(got) == set(want)
    for path, row in got.items():
        ref = want[path]
        assert (row["status"], row["style"], row["genre"], row["sha256"]) == (
            ref["status"], ref["style"], ref["genre"], ref["sha256"]), path
        np.testing.assert_allclose(row["embedding"], ref["embedding"], rtol=1e-5, atol=1e-6)
        assert row["style_score"] == pytest.approx(ref["style_score"], rel=1e-5)


def test_killed_run_resumes_to_the_same_result(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "fresh" / "meta.parquet"
    out.parent.mkdir()
    proc = start_cli(setup["col"], out, setup["bundle"])
    kill_after_first_part(proc, out)
    second = tag_cli(setup["col"], "--out", out, "--model", setup["bundle"])  # concurrent run
    sigkill(proc)
    assert second.exit_code == 2
    assert f"is being written by another run (pid {proc.pid} on" in second.output
    assert not out.exists()
    assert OutputTarget.resolve(out).lockfile.exists()  # left behind by the dead run

    summary = run(setup["col"], out, setup["bundle"])
    assert any(f"took over the stale lock of pid {proc.pid}" in w for w in summary.warnings)
    assert 0 < summary.resumed < N_FILES
    assert summary.unchanged == summary.resumed
    assert summary.images_inferred == summary.tagged == N_FILES - summary.resumed
    assert_same_predictions(out, setup["reference"])
    assert not OutputTarget.resolve(out).workdir.exists()
    assert not OutputTarget.resolve(out).lockfile.exists()


def test_kill_never_touches_the_existing_output(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "existing" / "meta.parquet"
    out.parent.mkdir()
    run(setup["col"], out, setup["bundle"])
    before = out.read_bytes()
    proc = start_cli(setup["col"], out, setup["bundle"], "--full")
    kill_after_first_part(proc, out)
    sigkill(proc)
    assert out.read_bytes() == before
    assert pq.read_table(out).num_rows == N_FILES

    summary = run(setup["col"], out, setup["bundle"], full=True)  # resumes the --full run
    assert 0 < summary.resumed < N_FILES
    assert summary.images_inferred == N_FILES - summary.resumed
    assert_same_predictions(out, setup["reference"])
