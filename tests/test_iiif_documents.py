"""IIIF reading without the model: documents (v3, v2.1, nested collections, limits, a
100,000-canvas manifest in flat memory), the Image API request choice, the fetcher's rules."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from iiif_support import (
    Faults,
    PlainServer,
    collection_v3,
    collection_v21,
    manifest_v3,
    manifest_v21,
    write_huge_manifest,
)

from artylyze.iiif.documents import Canvas, DocProblem, DocumentError, Walker, WalkLimits
from artylyze.iiif.fetch import Fetcher, FetchError, FetchOptions, retry_after
from artylyze.iiif.image_api import choose_request, parse_info

CANVASES = [{"id": f"http://127.0.0.1:1/c/{i}", "label": f"Canvas {i}", "width": 640,
             "height": 480, "service": f"http://127.0.0.1:1/iiif/img{i}"} for i in range(3)]


@pytest.fixture()
def served(tmp_path: Path):
    server = PlainServer(tmp_path, Faults(b"", b""))
    yield tmp_path, server
    server.close()


def walk(source: str, limits: WalkLimits | None = None) -> list[Canvas | DocProblem]:
    with Fetcher(FetchOptions(timeout=5, retries=0)) as f:
        return list(Walker(f, limits).walk(source))


def test_v3_manifest_made_with_prezi3_gives_every_canvas(tmp_path: Path) -> None:
    doc = tmp_path / "m.json"
    doc.write_text(json.dumps(manifest_v3("http://127.0.0.1:1/m", "Old masters", CANVASES)))
    got = walk(str(doc))
    assert [c.id for c in got] == [c["id"] for c in CANVASES]
    first = got[0]
    assert (first.label, first.manifest_id, first.manifest_label) == (
        "Canvas 0", "http://127.0.0.1:1/m", "Old masters")
    assert (first.service_id, first.service_version, first.width, first.height) == (
        "http://127.0.0.1:1/iiif/img0", 3, 640, 480)


def test_v21_manifest_gives_every_canvas_with_its_v2_service(tmp_path: Path) -> None:
    doc = tmp_path / "m.json"
    doc.write_text(json.dumps(manifest_v21("http://127.0.0.1:1/m2", "Zwei", CANVASES)))
    got = walk(str(doc))
    assert [(c.id, c.label, c.service_version) for c in got] == [
        (c["id"], c["label"], 2) for c in CANVASES]
    assert got[0].manifest_label == "Zwei"


def test_canvas_without_an_image_is_kept_with_its_reason(tmp_path: Path) -> None:
    m = manifest_v21("http://127.0.0.1:1/m", "x", CANVASES[:1])
    m["sequences"][0]["canvases"][0]["images"] = []
    doc = tmp_path / "m.json"
    doc.write_text(json.dumps(m))
    (c,) = walk(str(doc))
    assert c.error == "the canvas has no image"


def test_nested_collections_v3_and_v21_with_limits(served) -> None:
    root, server = served
    u = server.url
    (root / "m3.json").write_text(json.dumps(manifest_v3(f"{u}/m3.json", "three", CANVASES)))
    (root / "m2.json").write_text(json.dumps(manifest_v21(f"{u}/m2.json", "two", CANVASES)))
    (root / "inner.json").write_text(json.dumps(collection_v21(f"{u}/inner.json", "in",
                                                               [f"{u}/m2.json"])))
    (root / "top.json").write_text(json.dumps(collection_v3(f"{u}/top.json", "top", [
        (f"{u}/m3.json", "Manifest", "three"), (f"{u}/inner.json", "Collection", "in"),
        (f"{u}/fault/notjson.json", "Manifest", "broken"),
        (f"{u}/fault/missing.jpg", "Manifest", "gone")])))
    got = walk(f"{u}/top.json")
    canvases = [c for c in got if isinstance(c, Canvas)]
    problems = [p for p in got if isinstance(p, DocProblem)]
    assert [c.manifest_label for c in canvases] == ["three"] * 3 + ["two"] * 3
    assert sorted(p.kind for p in problems) == ["unreadable_manifest"] * 2
    assert any("not JSON" in p.message for p in problems)
    assert any("HTTP 404" in p.message for p in problems)
    # depth: the inner collection is one level too deep
    shallow = walk(f"{u}/top.json", WalkLimits(max_depth=1))
    assert len([c for c in shallow if isinstance(c, Canvas)]) == 3
    assert any("--max-depth" in p.message for p in shallow if isinstance(p, DocProblem))
    # counts: the walk stops, and says so
    few = walk(f"{u}/top.json", WalkLimits(max_canvases=4))
    assert len([c for c in few if isinstance(c, Canvas)]) == 4
    assert few[-1].kind == "limit" and "--max-canvases" in few[-1].message
    one = walk(f"{u}/top.json", WalkLimits(max_manifests=1))
    assert len([c for c in one if isinstance(c, Canvas)]) == 3


def test_top_document_that_is_not_json_or_not_iiif_is_an_error(served) -> None:
    root, server = served
    with pytest.raises(DocumentError, match="not JSON"):
        walk(f"{server.url}/fault/notjson.json")
    (root / "other.json").write_text('{"type": "Dataset"}')
    with pytest.raises(DocumentError, match="neither a IIIF Manifest nor a Collection"):
        walk(f"{server.url}/other.json")
    with pytest.raises(DocumentError, match="HTTP 404"):
        walk(f"{server.url}/fault/missing.jpg")


def test_a_local_collection_may_not_reach_files(tmp_path: Path) -> None:
    secret = tmp_path / "m.json"
    secret.write_text(json.dumps(manifest_v3("http://127.0.0.1:1/m", "x", CANVASES)))
    top = tmp_path / "top.json"
    top.write_text(json.dumps(collection_v21("http://127.0.0.1:1/top", "t",
                                             [secret.as_uri(), "/etc/passwd"])))
    got = walk(str(top))
    assert not [c for c in got if isinstance(c, Canvas)]
    assert [p.kind for p in got] == ["unreadable_manifest"] * 2
    assert all("only http and https" in p.message for p in got)


def test_100k_canvases_stream_in_flat_memory(tmp_path: Path) -> None:
    doc = tmp_path / "huge.json"
    write_huge_manifest(doc, 100_000, "http://127.0.0.1:1")
    size = doc.stat().st_size
    with Fetcher() as fetcher:  # httpx is imported before the count starts
        walker = Walker(fetcher)
        tracemalloc.start()
        try:
            n = 0
            for c in walker.walk(str(doc)):
                n += 1
                last = c
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert n == 100_000 and last.id.endswith("/canvas/99999")
    # json.load of this document would hold all of it (several times its size); the walk
    # holds one canvas at a time: its peak is a small fraction of the document
    assert size > 20e6
    assert peak < 2e6, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB document"


@pytest.mark.parametrize("info, want", [
    # level 2 (reference server, v3): !w,h that just covers 224 on the short side
    ({"@context": "http://iiif.io/api/image/3/context.json", "id": "http://s/i",
      "type": "ImageService3", "profile": "level2", "width": 640, "height": 480},
     ("http://s/i/full/!299,224/0/default.jpg", "!299,224")),
    # level 1, v2: w,
    ({"@context": "http://iiif.io/api/image/2/context.json", "@id": "http://s/i",
      "profile": ["http://iiif.io/api/image/2/level1.json"], "width": 640, "height": 480},
     ("http://s/i/full/299,/0/default.jpg", "299,")),
    # level 0 with sizes: the smallest listed size that covers 224
    ({"@context": "http://iiif.io/api/image/2/context.json", "@id": "http://s/i",
      "profile": ["http://iiif.io/api/image/2/level0.json"], "width": 2000, "height": 1000,
      "sizes": [{"width": 250, "height": 125}, {"width": 500, "height": 250},
                {"width": 1000, "height": 500}]},
     ("http://s/i/full/500,/0/default.jpg", "500,")),
    # level 0, v3, only tiles: the whole image as one tile at the scale factor that covers
    ({"@context": "http://iiif.io/api/image/3/context.json", "id": "http://s/i",
      "type": "ImageService3", "profile": "level0", "width": 1024, "height": 768,
      "tiles": [{"width": 512, "scaleFactors": [1, 2, 4]}]},
     ("http://s/i/full/512,384/0/default.jpg", "512,384")),  # 256x192 is too small
    # level 0, nothing listed: max
    ({"@context": "http://iiif.io/api/image/3/context.json", "id": "http://s/i",
      "type": "ImageService3", "profile": "level0", "width": 1024, "height": 768},
     ("http://s/i/full/max/0/default.jpg", "max")),
    # small image: never upscaled
    ({"@context": "http://iiif.io/api/image/2/context.json", "@id": "http://s/i",
      "profile": ["http://iiif.io/api/image/2/level2.json"], "width": 200, "height": 300},
     ("http://s/i/full/full/0/default.jpg", "full")),
    # sizeByConfinedWh as an extra feature of a level-1 v3 server
    ({"@context": "http://iiif.io/api/image/3/context.json", "id": "http://s/i",
      "type": "ImageService3", "profile": "level1", "extraFeatures": ["sizeByConfinedWh"],
      "width": 480, "height": 960}, ("http://s/i/full/!224,448/0/default.jpg", "!224,448")),
])
def test_request_suits_the_model(info: dict, want: tuple[str, str]) -> None:
    req = choose_request(parse_info(info, "http://s/i"), 224, "stretch")
    assert (req.url, req.size) == want


def test_letterbox_only_needs_the_long_side() -> None:
    info = {"@context": "http://iiif.io/api/image/3/context.json", "id": "http://s/i",
            "type": "ImageService3", "profile": "level2", "width": 900, "height": 450}
    assert choose_request(parse_info(info, "x"), 224, "letterbox").size == "!224,112"


def test_fetcher_refuses_other_schemes_and_parses_retry_after() -> None:
    with Fetcher() as f:
        for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x", "/etc/passwd"):
            with pytest.raises(FetchError) as e:
                f.get(url)
            assert e.value.kind == "scheme"
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_help_and_folder_tagging_import_no_iiif_library(tmp_path: Path) -> None:
    import subprocess
    import sys

    from iiif_support import BUNDLE, EXAMPLES

    code = f"""
import sys
from typer.testing import CliRunner
from artylyze.cli.main import app
r = CliRunner().invoke(app, ["tag", "--help"])
assert r.exit_code == 0 and "IIIF" in r.output
r = CliRunner().invoke(app, ["tag", {str(EXAMPLES)!r}, "--out", {str(tmp_path / 'm.parquet')!r},
                             "--model", {str(BUNDLE)!r}, "-q"])
assert r.exit_code == 0, r.output
print(sorted(m for m in ("httpx", "ijson", "iiif_prezi3", "artylyze.iiif") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
