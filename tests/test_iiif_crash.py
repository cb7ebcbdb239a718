"""``kill -9`` in the middle of ``artylyze tag URL``: the next run resumes from the committed
parts and fetches again only the canvases that were not committed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from iiif_support import BUNDLE, EXAMPLES, Faults, PlainServer, manifest_v3

from artylyze.store import OutputTarget

N = 30
CLI = [sys.executable, "-c", "from artylyze.cli.main import main; main()"]


def test_killed_iiif_run_resumes_without_fetching_committed_canvases(tmp_path: Path) -> None:
    image = next(iter(sorted(EXAMPLES.glob("*.jpg")))).read_bytes()
    server = PlainServer(tmp_path, Faults(image, image))
    try:
        u = server.url
        (tmp_path / "m.json").write_text(json.dumps(manifest_v3(f"{u}/m.json", "slow", [
            {"id": f"{u}/c/{i}", "label": str(i), "width": 224, "height": 224,
             "image": f"{u}/fault/count-{i}.jpg"} for i in range(N)])))  # 0.2 s each
        out = tmp_path / "meta.parquet"
        args = ["tag", f"{u}/m.json", "--out", str(out), "--model", str(BUNDLE)]
        small = ["-q", "--batch-size", "2", "--commit-every", "2", "--max-per-host", "1"]
        proc = subprocess.Popen([*CLI, *args, *small], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        parts = OutputTarget.resolve(out).workdir
        end = time.monotonic() + 120
        while not list(parts.glob("part-*.parquet")) and time.monotonic() < end:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists()
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
        hits = server.faults.hits
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(f"{u}/c/{i}" for i in range(N))
    assert {r["status"] for r in rows} == {"ok"}
    resumed = int(re.search(r"resumed (\d+) rows", done.stdout).group(1))
    assert resumed >= 2
    twice = sum(hits[f"/fault/count-{i}.jpg"] == 2 for i in range(N))
    assert all(hits[f"/fault/count-{i}.jpg"] in (1, 2) for i in range(N))
    assert twice <= N - resumed  # committed canvases were not fetched again
