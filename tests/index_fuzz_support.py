"""The index-loading fuzz run, in its own process so that its peak memory can be measured:
``python index_fuzz_support.py OUT.json SEED CASES INDEX_DIR...``.

Each case copies one of the index folders, corrupts one of its files (bit flips, a
truncation, an aligned word overwritten with a hostile value such as 2^29, 2^31 or -1, junk
appended or a run of bytes zeroed), reseals the manifest (every sha256 recomputed, so the
integrity check passes) and then loads and uses the index the way pages and commands do.
The outcome is "ok", "refused: <kind>" (an ArtyLyzeError) or "BUG: <exception>". The
process's peak RSS is measured after a clean warm-up load and at the end.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

HOSTILE = (0, 1, 2**29, 2**31, 2**32 - 1, 2**40, 2**62, 2**63 - 1, -1, -(2**31))


def corrupt(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random corruption of ``data`` and its description."""
    buf = bytearray(data)
    how = rng.choice(["flip", "truncate", "word", "word", "junk", "zero"])
    if how == "flip" and buf:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        del buf[rng.randrange(len(buf) + 1):]
    elif how == "word" and len(buf) >= 8:
        size = rng.choice([4, 8])
        i = rng.randrange(0, len(buf) - size + 1) // size * size
        value = rng.choice(HOSTILE) % (1 << (8 * size))
        buf[i:i + size] = value.to_bytes(size, "little")
        how = f"word@{i}={value:#x}"
    elif how == "junk":
        buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif how == "zero" and buf:
        i = rng.randrange(len(buf))
        n = len(buf[i:i + rng.randint(1, 256)])
        buf[i:i + n] = bytes(n)
    return bytes(buf), how


WRONG = (None, -1, 2**31, 2**63 - 1, 1e308, "x", "", [], {}, [[1]], True, -0.5)


def _paths(value: object, here: tuple = ()) -> list[tuple]:
    """Every path into a parsed JSON value."""
    found = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            found += _paths(v, (*here, i))
    return found


def wrong_json(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One value somewhere in a JSON document replaced by one of another type or size."""
    doc = json.loads(data)
    path = rng.choice(_paths(doc)[1:])
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value = rng.choice(WRONG)
    return json.dumps(doc).encode(), f"json {list(path)} = {value!r}"


def wrong_parquet(file: Path, rng: random.Random) -> str:
    """One column replaced by values of another type or range."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(file)
    name = rng.choice(table.column_names)
    n = table.num_rows
    column = rng.choice([pa.nulls(n), pa.array([-1] * n, pa.int64()),
                         pa.array([2**40] * n, pa.int64()), pa.array(["x\\xZZ"] * n),
                         pa.array([1.5] * n, pa.float64()), pa.array([b"\x00" * 3] * n)])
    table = table.set_column(table.column_names.index(name), name, column)
    pq.write_table(table.replace_schema_metadata(None), file)
    return f"column {name} = {column.type} {column[0]}"


def wrong_npz(file: Path, rng: random.Random) -> str:
    """One array replaced by one of another shape, type or with non-finite values."""
    import numpy as np

    with np.load(file, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    name = rng.choice(sorted(arrays))
    old = arrays[name]
    arrays[name] = rng.choice([np.zeros((0,)), np.full(old.shape, np.nan), np.array("str"),
                               np.zeros((*old.shape, 2)), np.ones(old.shape, np.int8),
                               np.full(old.shape, np.inf), old.reshape(-1)[:1]])
    np.savez(file, **arrays)
    return f"array {name} -> {arrays[name].dtype} {arrays[name].shape}"


def reseal(index_dir: Path) -> None:
    import hashlib

    file = index_dir / "manifest.json"
    man = json.loads(file.read_text())
    if not isinstance(man, dict) or not isinstance(man.get("files"), dict):
        return  # the change was to the list itself: nothing to reseal
    for name in [n for n in man["files"] if isinstance(n, str) and (index_dir / n).is_file()]:
        data = (index_dir / name).read_bytes()
        man["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    file.write_text(json.dumps(man, indent=2))


def use(index_dir: Path) -> None:
    """Load the index and do what pages and commands do with it."""
    import numpy as np

    from artylyze.index.collection import from_index
    from artylyze.index.faiss_index import search
    from artylyze.index.search import Gallery
    from artylyze.index.store import load_index_dir
    from artylyze.index.thumbs import row_thumbnail

    index = load_index_dir(index_dir)
    raw = np.random.default_rng(0).normal(size=(2, index.manifest.dim)).astype(np.float32)
    scores, ids = search(index.index, index.to_index_space(raw), 5)
    assert ((ids >= -1) & (ids < index.count)).all(), ids
    index.clusters.posteriors(raw)
    gallery = Gallery(index)
    for row in range(min(3, index.count)):
        gallery.entry(row)
        row_thumbnail(index, row, 32)
    coll = from_index(index_dir)
    if coll.count:
        coll.neighbours(0, 3)


def run(out: Path, seed: int, cases: int, sources: list[Path]) -> None:
    from artylyze.errors import ArtyLyzeError

    for src in sources:  # warm up: imports, caches and a clean load of each index
        use(src)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rng = random.Random(seed)
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(cases):
            src = rng.choice(sources)
            files = sorted(p.name for p in src.iterdir() if p.name != "manifest.json")
            name = rng.choice(files)
            work = Path(tmp) / f"case{case}"
            shutil.copytree(src, work)
            if rng.random() < 0.5:  # bytes
                data, how = corrupt((work / name).read_bytes(), rng)
                (work / name).write_bytes(data)
            elif name.endswith(".json") or rng.random() < 0.2:  # values: themes or manifest
                name = name if name.endswith(".json") else "manifest.json"
                data, how = wrong_json((work / name).read_bytes(), rng)
                (work / name).write_bytes(data)
            elif name.endswith(".parquet"):
                how = wrong_parquet(work / name, rng)
            elif name.endswith(".npz"):
                how = wrong_npz(work / name, rng)
            else:
                data, how = corrupt((work / name).read_bytes(), rng)
                (work / name).write_bytes(data)
            reseal(work)
            try:
                use(work)
                outcome = "ok"
            except ArtyLyzeError as e:
                outcome = f"refused: {e.kind}"
            except Exception as e:  # noqa: BLE001 - what the test is looking for
                outcome = f"BUG: {type(e).__name__}: {str(e)[:300]} " + "".join(
                    traceback.format_tb(e.__traceback__)[-3:])
            outcomes.append({"case": case, "index": src.name, "file": name, "how": how,
                             "outcome": outcome})
            shutil.rmtree(work)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.write_text(json.dumps({"base_rss": base, "peak_rss": peak, "cases": outcomes}))


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), [Path(p) for p in sys.argv[4:]])
