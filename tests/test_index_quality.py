"""Retrieval quality (precision@k) and the gallery builder, on planted data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_index_support import STYLES, planted, planted_meta
from tiny_bundle import make_tiny_bundle

from artylyze.index import quality
from artylyze.index.gallery import build_gallery
from artylyze.index.quality import precision_at_k


def test_precision_at_k_on_planted_groups() -> None:
    x, styles, _ = planted(n_per=20)
    split = ["test" if i % 4 == 0 else "train" for i in range(60)]
    artist = [f"a{i % 2}" if i < 20 else f"b{i % 5}" for i in range(60)]
    res = precision_at_k(x, {"style": styles, "artist": artist, "genre": [None] * 60}, split, k=5)
    assert res["style"] == {"precision": 1.0, "chance": pytest.approx(1 / 3, abs=1e-3),
                            "queries": 15, "gallery": 45, "k": 5}
    assert res["artist"]["precision"] < 1.0
    assert "genre" not in res  # no known label: nothing to measure


def test_quality_entry_reads_a_meta_parquet_and_labels(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    meta = planted_meta(tmp_path, n_per=10)
    paths = pq.read_table(meta).column("path").to_pylist()
    rows = [f"{p},{STYLES[i // 10]},{'test' if i % 5 == 0 else 'train'}"
            for i, p in enumerate(paths)]
    (tmp_path / "labels.csv").write_text("path,style,split\n" + "\n".join(rows) + "\n")
    assert quality.main([str(meta), str(tmp_path / "labels.csv"), "-k", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision_at_k"]["style"]["precision"] == 1.0
    assert report["precision_at_k"]["style"]["queries"] == 6
    x, _, _ = planted(n_per=10)
    np.savez(tmp_path / "raw.npz", path=np.array(paths), embedding=x)
    assert quality.main([str(tmp_path / "raw.npz"), str(tmp_path / "labels.csv"), "-k", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["precision_at_k"]["style"]["precision"] == 1.0


def test_gallery_is_small_and_carries_ground_truth(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle", dim=16)
    meta = planted_meta(tmp_path, n_per=20, model_id=json.loads(
        (bundle / "manifest.json").read_text())["model_id"])
    paths = pq.read_table(meta).column("path").to_pylist()
    rows = [f"{p},{STYLES[i // 20]},painter-{i % 7},{1800 + i},Dutch,train"
            for i, p in enumerate(paths)]
    (tmp_path / "labels.csv").write_text("path,style,artist,year,nationality,split\n"
                                         + "\n".join(rows) + "\n")
    result = build_gallery(meta, tmp_path / "labels.csv", tmp_path / "gallery", bundle, pca=8)
    man = result.index_dir.manifest
    assert (man.index_type, man.index_dim, man.bundle_dir) == ("SQfp16", 8, "../bundle")
    row = result.index_dir.rows.slice(3, 1).to_pylist()[0]
    assert (row["true_artist"], row["year"], row["true_nationality"], row["true_period"]) == (
        "painter-3", 1803, "Dutch", "1800-1849")
    assert row["title"] == "Work number 3"
