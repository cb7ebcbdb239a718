"""Someone else's index is untrusted even when its manifest is self-consistent (issue #24):
thumbnail bombs, a thumbnail column of another type, FAISS headers that declare 2^29 or
2^31 vectors, broken path escapes and symlinks out of the collection, manifests with a
5,000-digit number or 100,000-deep nesting. Each ends in a clear refusal (exit 2, one line)
or a correct page with grey tiles; never "internal error". Also: a work is never its own
neighbour in a report, and the journey chart shows one period."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from index_hostile_support import copy_index, reseal, small_index
from PIL import Image
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.index.checks import THUMB_MAX_PIXELS, decode_thumbnail
from artylyze.index.errors import IndexStoreError
from artylyze.index.store import load_index_dir
from artylyze.index.thumbs import GREY, locate, row_thumbnail

BAD_PATHS = ["Baroque/bad\\xZZ.jpg", "Baroque/trailing\\x", "Baroque/\\x00.jpg"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("hostile")
    meta, idx = small_index(tmp / "a", paths=BAD_PATHS)
    return {"meta": meta, "idx": idx, "root": tmp / "a", "tmp": tmp}


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "internal error" not in result.output, result.output
    return result


def webp_bomb(width: int = 13000, height: int = 13000) -> bytes:
    """A 32-byte lossless WebP whose header declares width x height (issue: 2.8 GB, 32 s)."""
    data = b"\x2f" + struct.pack("<I", (width - 1) | ((height - 1) << 14)) + b"\x00" * 7
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                       zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def with_thumbs(idx: Path, dst: Path, column: pa.Array) -> Path:
    doctored = copy_index(idx, dst)
    pq.write_table(pa.table({"thumbnail": column}), doctored / "thumbs.parquet")
    reseal(doctored)
    return doctored


@pytest.mark.parametrize("bomb", [webp_bomb(), png_bomb()], ids=["webp", "png"])
def test_packed_thumbnail_bombs_are_refused_on_their_header(built, tmp_path, bomb):
    assert len(bomb) < 100  # a few dozen bytes that declare 169 or 400 million pixels
    assert decode_thumbnail(bomb, 64) is None
    index = load_index_dir(built["idx"])
    count = index.count
    doctored = with_thumbs(built["idx"], tmp_path / "idx", pa.array([bomb] * count,
                                                                    pa.binary()))
    index = load_index_dir(doctored)
    tile = row_thumbnail(index, 5, 64)  # the bomb is skipped; the file under the root shows
    assert max(tile.size) <= 64 and tile.getpixel((0, 0)) != GREY
    result = run("clusters", "report", str(doctored), "--out", str(tmp_path / "page"))
    assert result.exit_code == 0, result.output


def test_small_thumbnails_still_decode():
    buf = io.BytesIO()
    Image.new("RGB", (512, 300), (10, 200, 30)).save(buf, "WEBP")
    img = decode_thumbnail(buf.getvalue(), 64)
    assert img is not None and img.size == (64, 38)
    assert THUMB_MAX_PIXELS >= 512 * 512


def test_a_thumbnail_column_of_another_type_is_a_clear_refusal(built, tmp_path):
    count = load_index_dir(built["idx"]).count
    doctored = with_thumbs(built["idx"], tmp_path / "idx", pa.array(range(count), pa.int64()))
    result = run("clusters", "report", str(doctored), "--out", str(tmp_path / "page"))
    assert result.exit_code == 2
    assert "column 'thumbnail' is int64, not binary" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _faiss_with(idx: Path, dst: Path, offset: int, value: int, **manifest: object) -> Path:
    doctored = copy_index(idx, dst)
    data = bytearray((doctored / "vectors.faiss").read_bytes())
    data[offset:offset + 8] = struct.pack("<q", value)
    (doctored / "vectors.faiss").write_bytes(bytes(data))
    reseal(doctored, **manifest)
    return doctored


@pytest.mark.parametrize("ntotal", [2**29, 2**31])
@pytest.mark.parametrize("manifest_too", [False, True], ids=["header", "header+manifest"])
def test_faiss_headers_declaring_huge_counts_are_refused_before_faiss(built, tmp_path,
                                                                     monkeypatch, ntotal,
                                                                     manifest_too):
    changes = {"count": ntotal} if manifest_too else {}
    doctored = _faiss_with(built["idx"], tmp_path / "idx", 8, ntotal, **changes)

    def never(*_a: object) -> None:
        raise AssertionError("faiss.read_index was reached")

    monkeypatch.setattr("artylyze.index.store.load_index", never)
    with pytest.raises(IndexStoreError, match="not a readable FAISS index"):
        load_index_dir(doctored)


def test_a_faiss_vector_size_larger_than_the_file_is_refused(built, tmp_path, monkeypatch):
    doctored = _faiss_with(built["idx"], tmp_path / "idx", 37, 2**40)  # the codes' length
    monkeypatch.setattr("artylyze.index.store.load_index", lambda *_a: pytest.fail("reached"))
    with pytest.raises(IndexStoreError, match="declares"):
        load_index_dir(doctored)
    result = run("clusters", "report", str(doctored), "--out", str(tmp_path / "page"))
    assert result.exit_code == 2 and "not a readable FAISS index" in result.stderr


def test_broken_path_escapes_become_grey_tiles(built, tmp_path):
    index = load_index_dir(built["idx"])
    for row in range(len(BAD_PATHS)):
        assert locate(str(built["root"]), index.rows.column("path")[row].as_py()) is None
    for args in (["clusters", "report", str(built["idx"]), "--out", str(tmp_path / "c")],
                 ["report", str(built["idx"]), "--out", str(tmp_path / "r"), "--cases", "2"],
                 ["report", str(built["meta"]), "--index", str(built["idx"]), "--out",
                  str(tmp_path / "m"), "--cases", "2"],
                 ["similar", str(built["root"] / "Cubism" / os.listdir(
                     built["root"] / "Cubism")[0]), "--index", str(built["idx"]), "-k", "29",
                  "--html", str(tmp_path / "s.html")]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)


def test_symlinks_out_of_the_collection_are_not_followed(built, tmp_path):
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)
    link = built["root"] / "Baroque" / "link.jpg"
    link.symlink_to(outside)
    inside = built["root"] / "Baroque" / "inside.jpg"
    inside.symlink_to(built["root"] / "Cubism" / os.listdir(built["root"] / "Cubism")[0])
    try:
        assert locate(str(built["root"]), "Baroque/link.jpg") is None
        assert locate(str(built["root"]), "Baroque/inside.jpg") is not None
        assert locate(str(built["root"]), "../secret.jpg") is None
    finally:
        link.unlink()
        inside.unlink()


@pytest.mark.parametrize("poison", ["number", "nesting", "fifo"])
def test_a_hostile_manifest_is_a_one_line_refusal(built, tmp_path, poison):
    doctored = copy_index(built["idx"], tmp_path / "idx")
    file = doctored / "manifest.json"
    text = file.read_text()
    if poison == "number":
        file.write_text(text.replace('"count": ', '"count": ' + "9" * 5000 + ", \"was\": ", 1))
    elif poison == "nesting":
        file.write_text(text[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    else:
        file.unlink()
        os.mkfifo(file)
    result = run("clusters", "report", str(doctored), "--out", str(tmp_path / "page"))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_work_is_never_its_own_neighbour(built):
    from artylyze.index.collection import from_meta

    coll = from_meta(built["meta"], built["idx"])
    paths = coll.index.rows.column("path").to_pylist()
    for work in range(5):
        mine = coll.entries.rows.column("path")[work].as_py()
        found = coll.neighbours(work, 5)
        assert len(found) == 5 and all(paths[row] != mine for row, _ in found), found
        assert all(score < 0.9999 for _, score in found)


def test_the_journey_chart_shows_a_single_period(tmp_path):
    from artylyze.index.collection_plots import journey_chart

    out = journey_chart(np.array([[5], [3], [2]]), ["Baroque", "Cubism", "Ukiyo_e"],
                        ["1850-1899"], "predicted", tmp_path / "journey.png")
    px = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    plot = px[: px.shape[0] * 2 // 3, : px.shape[1] * 2 // 3]  # the area chart, no legend
    saturated = (plot.max(axis=2) - plot.min(axis=2)) > 60
    assert saturated.mean() > 0.05, "the period's shares are drawn, not only the legend"


def test_index_option_given_a_file_is_one_line(built, tmp_path):
    result = run("similar", "x.jpg", "--index", str(built["meta"]))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --index") and len(result.stderr.splitlines()) == 1
    assert json.loads((built["idx"] / "manifest.json").read_text())["kind"] == "artylyze-index"
