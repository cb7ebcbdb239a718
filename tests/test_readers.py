"""meta.parquet as curators open it: pandas, polars and DuckDB read the local engine's file and
the Ray engine's folder of part files, see the documented schema and the same values as
pyarrow, and the DuckDB queries of docs/tagging.md run as written.

The example paintings plus one corrupt file, tagged by the shipped bundle; the Ray run
joins a records table too, so ``record_id`` is read across parts.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray  # the [ray] extra: CI installs it; a missing one must fail, not skip
from tagged_examples import RENOIR, copy_examples, tag

import artylyze.store.merge as store_merge

TAGGING_DOC = Path(__file__).resolve().parents[1] / "docs" / "tagging.md"
TASKS = ("style", "genre", "artist", "nationality", "period")
#: The documented columns (docs/tagging.md, "Output schema") for the shipped bundle, in order;
#: a bundle with a year head or calibration adds its columns there and here.
COLUMNS = ["path", "size", "mtime_ns", "sha256", "width", "height", "status", "error",
           *(c for t in TASKS for c in (t, f"{t}_score", f"{t}_top", f"{t}_confident")),
           "year", "year_low", "year_high", "novelty", "domain", "domain_score", "embedding",
           "model", "tagged_at"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readers") / "collection"
    copy_examples(root)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


@pytest.fixture(scope="module")
def local(collection: Path) -> Path:
    out = collection.parent / "meta.parquet"
    tag(collection, out)
    return out


@pytest.fixture(scope="module")
def parts(collection: Path) -> Path:
    """The Ray engine's folder of parts, several of them (4 rows a file instead of 131,072),
    with record ids joined."""
    records = collection.parent / "records.csv"
    records.write_text(f"id,file\n1985.52.1,{RENOIR}\n")
    out = collection.parent / "meta"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             log_to_driver=False, logging_level="warning")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(store_merge, "ROWS_PER_FILE", 4)
            tag(collection, f"{out}/", "--engine", "ray", "--batch-size", "4",
                "--commit-every", "4", "--records", str(records))
    finally:
        ray.shutdown()
    assert len(list(out.glob("*.parquet"))) > 1
    return out


def truth(source: Path) -> pa.Table:
    """pyarrow's reading, in path order: what every other reader must agree with."""
    return pq.read_table(source).sort_by("path")


def check_values(df: pd.DataFrame, want: pa.Table, reader: str) -> None:
    df = df.sort_values("path").reset_index(drop=True)
    assert df["path"].tolist() == want.column("path").to_pylist(), reader
    assert df["status"].tolist() == want.column("status").to_pylist(), reader
    ok = want.column("status").to_numpy(zero_copy_only=False) == "ok"
    assert (~ok).sum() == 1, "the corrupt file has its error row"
    for task in TASKS:
        assert df[task][ok].tolist() == np.asarray(want.column(task))[ok].tolist(), reader
        np.testing.assert_array_equal(df[f"{task}_score"][ok].to_numpy(np.float32),
                                      want.column(f"{task}_score").to_numpy()[ok], reader)
    vectors = np.stack(df["embedding"][ok].to_numpy())
    expected = np.stack(want.column("embedding").to_numpy(zero_copy_only=False)[ok])
    np.testing.assert_array_equal(vectors.astype(np.float32), expected, reader)
    top = df["genre_top"][ok].iloc[0]
    assert [t["label"] for t in top] == [t["label"] for t in
                                         want.filter(pa.array(ok)).column("genre_top")[0].as_py()]


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_pandas_reads_the_documented_schema_and_values(engine, local, parts):
    source = local if engine == "local" else parts
    df = pd.read_parquet(source)
    want = COLUMNS if engine == "local" else [COLUMNS[0], "record_id", *COLUMNS[1:]]
    assert list(df.columns) == want
    assert df["style_score"].dtype == np.float32 and df["size"].dtype == np.int64
    assert str(df["tagged_at"].dtype) == "datetime64[us, UTC]"
    first = df[df.status == "ok"]["embedding"].iloc[0]
    assert first.dtype == np.float32 and first.shape == (256,)
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    check_values(df, truth(source), f"pandas {engine}")


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_polars_reads_the_documented_schema_and_values(engine, local, parts):
    source = local if engine == "local" else parts
    df = pl.read_parquet(source if engine == "local" else f"{source}/*.parquet")
    schema = df.schema
    assert schema["embedding"] == pl.Array(pl.Float32, 256)
    assert schema["style_top"] == pl.List(pl.Struct({"label": pl.String, "score": pl.Float32}))
    assert schema["tagged_at"] == pl.Datetime("us", "UTC")
    assert schema["status"] == pl.String and schema["width"] == pl.Int32
    check_values(df.to_pandas(), truth(source), f"polars {engine}")


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_duckdb_reads_the_documented_schema_and_values(engine, local, parts):
    source = str(local) if engine == "local" else f"{parts}/*.parquet"
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{source}')").fetchall()
    types = {row[0]: row[1] for row in described}
    assert [c for c in types if c != "record_id"] == COLUMNS
    assert types["embedding"] == "FLOAT[]"
    assert types["style_top"] == 'STRUCT("label" VARCHAR, score FLOAT)[]'
    assert types["tagged_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["mtime_ns"] == "BIGINT"
    df = duckdb.sql(f"SELECT * FROM read_parquet('{source}')").df()
    check_values(df, truth(local if engine == "local" else parts), f"duckdb {engine}")


def test_record_ids_read_across_ray_parts(parts):
    got = duckdb.sql(f"SELECT path, record_id FROM read_parquet('{parts}/*.parquet') "
                     "WHERE record_id IS NOT NULL").fetchall()
    assert got == [(RENOIR, "1985.52.1")]
    assert pl.read_parquet(f"{parts}/*.parquet")["record_id"].null_count() == 12


def documented_queries() -> list[str]:
    section = TAGGING_DOC.read_text().split("### SQL with DuckDB", 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block, "docs/tagging.md's DuckDB section has a sql block"
    return [q.strip() for q in block.group(1).split(";") if q.strip()]


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_the_documented_duckdb_queries_work(engine, local, parts):
    source = str(local) if engine == "local" else f"{parts}/*.parquet"
    styles, closest, runners_up = (
        duckdb.sql(q.replace("'meta.parquet'", f"'{source}'")).df() for q in documented_queries())
    want = truth(local if engine == "local" else parts).to_pandas()
    ok = want[want.status == "ok"]
    sure = ok[ok.style_score >= 0.5]
    assert dict(zip(styles["style"], styles["works"], strict=True)) == \
        sure["style"].value_counts().to_dict()

    vectors = np.stack(ok["embedding"].to_numpy())
    query = vectors[ok["path"].tolist().index(RENOIR)]
    cosines = vectors @ query
    order = [p for p in ok["path"].to_numpy()[np.argsort(-cosines)] if p != RENOIR][:5]
    assert closest["path"].tolist() == order
    assert closest["cosine"].iloc[0] == pytest.approx(np.sort(cosines)[-2], abs=1e-5)

    assert len(runners_up) == sum(len(t) for t in ok["genre_top"])
    assert set(runners_up["path"]) == set(ok["path"])
