"""Fuzz of index loading (issue #24): 120 seeded corruptions of every file of three small
indexes (Flat with packed thumbnails; IVF,Flat; PCA + IVF,PQ with thumbnails), each with its
manifest resealed so that the sha256 check passes. Bit flips, truncations, hostile words
(2^29, 2^31, -1...), JSON values of the wrong type or size, Parquet columns of another type
and npz arrays of another shape or with NaN. Every case must end in a clear refusal (an
ArtyLyzeError) or an index that answers searches, pages and thumbnails; never another
exception, and the run's memory stays within MEMORY_BOUND above a clean load's.

The cases run in a child process (``index_fuzz_support.py``), so that its peak RSS is its
own; the seed is fixed, so a failure reproduces.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
from index_hostile_support import small_index

SEED = 24
CASES = 120
MEMORY_BOUND = 500 * 1024**2  # peak RSS over a clean load of the same indexes


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("fuzz")
    return [small_index(tmp / "flat", thumbnails=32)[1],
            small_index(tmp / "ivf", index_type="IVF4,Flat", thumbnails=None)[1],
            small_index(tmp / "pq", index_type="IVF4,PQ4x4", thumbnails=16, pca=8)[1]]


def test_corrupt_resealed_indexes_are_refused_or_answer(indexes, tmp_path):
    report = tmp_path / "fuzz.json"
    done = subprocess.run([sys.executable, str(Path(__file__).with_name(
        "index_fuzz_support.py")), str(report), str(SEED), str(CASES), *map(str, indexes)],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    bugs = [c for c in result["cases"] if c["outcome"].startswith("BUG")]
    assert not bugs, json.dumps(bugs, indent=1)[:4000]
    kinds = collections.Counter(c["outcome"].split(":")[0] for c in result["cases"])
    assert kinds["refused"] > CASES // 3 and kinds["ok"] > 0, kinds  # both paths exercised
    files = {c["file"] for c in result["cases"]}
    assert files >= {"manifest.json", "vectors.faiss", "rows.parquet", "clusters.npz",
                     "themes.json", "thumbs.parquet", "pca.npz"}, files
    grew = result["peak_rss"] - result["base_rss"]
    assert grew < MEMORY_BOUND, f"peak RSS grew by {grew / 2**20:.0f} MiB over a clean load"
