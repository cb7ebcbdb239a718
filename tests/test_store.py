"""meta.parquet schema and rows, path text, the output lock, and crash recovery of the swap."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from artylyze.model.bundle import Manifest, Task
from artylyze.model.predict import Prediction, predictions
from artylyze.store import (
    OutputLock,
    OutputLockedError,
    OutputTarget,
    StoreError,
    build_row,
    decode_path,
    encode_path,
    make_schema,
    rows_to_table,
)

MANIFEST = Manifest(name="m", backbone="b", input_size=8, resize="stretch",
                    tasks=(Task("style", ("A", "B", "C")), Task("genre", ("x", "y"))),
                    embedding_dim=4, model_sha256="ab" * 32)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@given(st.lists(st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")), min_size=1, max_size=3))
def test_any_byte_path_round_trips_through_valid_utf8(parts: list[bytes]) -> None:
    rel = os.fsdecode(b"/".join(parts))
    text = encode_path(rel)
    text.encode("utf-8")  # valid UTF-8: Parquet accepts it
    assert os.fsencode(decode_path(text)) == b"/".join(parts)


@pytest.mark.parametrize(("raw", "text"), [
    (b"plain/caf\xc3\xa9.jpg", "plain/café.jpg"),
    (b"caf\xe9.jpg", "caf\\xe9.jpg"),
    (b"back\\slash.jpg", "back\\\\slash.jpg"),
])
def test_path_text_is_unchanged_when_possible(raw: bytes, text: str) -> None:
    assert encode_path(os.fsdecode(raw)) == text


def test_schema_columns_types_and_metadata() -> None:
    schema = make_schema(MANIFEST, root="/data/col", top_k=2)
    assert schema.names == [
        "path", "size", "mtime_ns", "sha256", "width", "height", "status", "error",
        "style", "style_score", "style_top", "genre", "genre_score", "genre_top",
        "embedding", "model", "tagged_at"]
    assert schema.field("size").type == pa.int64()
    assert schema.field("width").type == pa.int32()
    assert schema.field("style_score").type == pa.float32()
    assert schema.field("style_top").type == pa.list_(
        pa.struct([("label", pa.string()), ("score", pa.float32())]))
    assert schema.field("embedding").type == pa.list_(pa.float32(), 4)
    assert schema.field("tagged_at").type == pa.timestamp("us", tz="UTC")
    meta = schema.metadata
    assert json.loads(meta[b"artylyze.bundle"]) == MANIFEST.to_dict()
    assert meta[b"artylyze.root"] == b"/data/col"
    assert meta[b"artylyze.schema_version"] == b"1"


def test_task_names_that_clash_with_columns_are_refused() -> None:
    bad = Manifest(name="m", backbone="b", input_size=8, resize="stretch",
                   tasks=(Task("status", ("a",)),), embedding_dim=4, model_sha256="0" * 64)
    with pytest.raises(StoreError, match="clash"):
        make_schema(bad)


def test_predictions_and_rows_make_one_table() -> None:
    outputs = {"embedding": np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32),
               "style": np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32),
               "genre": np.array([[0.4, 0.6], [0.9, 0.1]], np.float32)}
    preds = predictions(outputs, MANIFEST, 2)
    assert preds[0].top["style"] == [("B", pytest.approx(0.7)), ("C", pytest.approx(0.2))]
    assert preds[1].top["genre"] == [("x", pytest.approx(0.9)), ("y", pytest.approx(0.1))]
    rows = [
        build_row("a.jpg", 10, 5, sha256="s1", model="m@1", tagged_at=NOW, width=3, height=4,
                  prediction=preds[0]),
        build_row("b.jpg", 0, 6, sha256=None, model="m@1", tagged_at=NOW,
                  error="file is empty (0 bytes)"),
        build_row("c.jpg", 11, 7, sha256="s3", model="m@1", tagged_at=NOW, width=3, height=4,
                  prediction=preds[1]),
    ]
    table = rows_to_table(rows, make_schema(MANIFEST))
    d = table.to_pylist()
    assert [r["status"] for r in d] == ["ok", "error", "ok"]
    assert d[0]["style"] == "B" and d[0]["style_score"] == pytest.approx(0.7)
    assert d[0]["genre_top"][0]["label"] == "y"
    assert d[1]["error"] == "file is empty (0 bytes)"
    assert d[1]["style"] is None and d[1]["embedding"] is None and d[1]["style_top"] is None
    assert d[2]["embedding"] == [0.0, 1.0, 0.0, 0.0]
    assert d[0]["tagged_at"] == NOW


def test_a_row_is_ok_or_error_never_both() -> None:
    pred = Prediction({"style": [("A", 1.0)]}, np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        build_row("a", 1, 1, sha256=None, model="m", tagged_at=NOW)
    with pytest.raises(ValueError):
        build_row("a", 1, 1, sha256=None, model="m", tagged_at=NOW, prediction=pred, error="e")


def test_output_target_file_or_dataset(tmp_path: Path) -> None:
    assert not OutputTarget.resolve(tmp_path / "meta.parquet").dataset
    assert OutputTarget.resolve(f"{tmp_path}/meta/").dataset
    (tmp_path / "existing").mkdir()
    target = OutputTarget.resolve(tmp_path / "existing")
    assert target.dataset
    assert target.workdir == tmp_path / ".existing.parts"
    assert target.lockfile == tmp_path / "existing.lock"
    (tmp_path / "f.parquet").write_bytes(b"")
    with pytest.raises(StoreError, match="is a file"):
        OutputTarget.resolve(f"{tmp_path}/f.parquet/")


def test_second_lock_names_the_holder(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path / "meta.parquet")
    with OutputLock(target):
        held = json.loads(target.lockfile.read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on "):
            OutputLock(target).acquire()
    assert not target.lockfile.exists()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_is_taken_over_but_not_another_hosts(tmp_path: Path) -> None:
    target = OutputTarget.resolve(tmp_path / "meta.parquet")
    pid = dead_pid()
    target.lockfile.write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with OutputLock(target) as lock:
        assert lock.took_over == f"pid {pid} on {socket.gethostname()}"
        assert json.loads(target.lockfile.read_text())["pid"] == os.getpid()
    target.lockfile.write_text(json.dumps({"pid": pid, "host": "elsewhere"}))
    with pytest.raises(OutputLockedError, match=f"pid {pid} on elsewhere"):
        OutputLock(target).acquire()


def write_dataset(path: Path, value: int) -> None:
    path.mkdir(parents=True)
    pq.write_table(pa.table({"v": [value]}), path / "part-00000.parquet")


def test_interrupted_dataset_swap_is_finished_or_undone(tmp_path: Path) -> None:
    target = OutputTarget.resolve(f"{tmp_path}/meta/")
    new, old = target.sibling(".new"), target.sibling(".old")
    # crashed between the two renames: the complete new output is put in place
    write_dataset(new, 2)
    write_dataset(old, 1)
    target.recover()
    assert pq.read_table(target.path).column("v").to_pylist() == [2]
    assert not new.exists() and not old.exists()
    # crashed while writing the new output: it is thrown away, the output stays
    write_dataset(new, 3)
    target.recover()
    assert pq.read_table(target.path).column("v").to_pylist() == [2]
    assert not new.exists()
