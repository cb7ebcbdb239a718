"""``artylyze write META --iiif DIR``: Web Annotations read back with iiif-prezi3, the labels
equal to meta.parquet's (round trip), the annotated manifest copy, 2.1 and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from iiif_prezi3 import AnnotationPage, Manifest
from iiif_support import BUNDLE, small_site
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata.iiif_annotations import manifest_key
from artylyze.options import Write

TASKS = ("style", "genre", "artist", "nationality", "period")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("write")
    server, names = small_site(tmp)
    out = tmp / "meta.parquet"
    code, output = run("tag", f"{server.url}/m3.json", "--out", str(out), "--model",
                       str(BUNDLE), "-q")
    assert code == 0, output
    yield tmp, server, out
    server.close()


def expected(meta: Path) -> dict[str, set[tuple[str, str]]]:
    """What should be published per canvas: each task's top-1 the model is sure of."""
    want: dict[str, set[tuple[str, str]]] = {}
    for r in pq.read_table(meta).to_pylist():
        want[r["path"]] = {(t, r[t]) for t in TASKS if t in r and r[t] is not None
                           and (r.get(f"{t}_confident") if r.get(f"{t}_confident") is not None
                                else r[f"{t}_score"] >= Write.min_score.default)}
    return want


def published(page: dict) -> dict[str, set[tuple[str, str]]]:
    got: dict[str, set[tuple[str, str]]] = {}
    for a in page["items"]:
        got.setdefault(a["target"], set()).add((a["artylyze:task"], a["body"]["value"]))
    return got


def test_pages_and_copy_load_in_prezi3_and_round_trip_the_labels(tagged) -> None:
    tmp, server, meta = tagged
    out = tmp / "anno"
    base = f"{server.url}/anno"
    code, output = run("write", str(meta), "--iiif", str(out), "--base-url", base)
    assert code == 0, output
    key = manifest_key(f"{server.url}/m3.json")
    page = json.loads((out / key / "annotations.json").read_text())
    AnnotationPage(**page)  # the community's model reads it
    want = expected(meta)
    assert published(page) == {k: v for k, v in want.items() if v}
    scores = {(r["path"]): r for r in pq.read_table(meta).to_pylist()}
    for a in page["items"]:
        assert a["motivation"] == "tagging" and a["body"]["type"] == "TextualBody"
        assert a["body"]["purpose"] == "tagging" and a["creator"]["type"] == "Software"
        assert a["id"].startswith(f"{base}/{key}/annotations/") and "generated" in a
        row = scores[a["target"]]
        assert a["artylyze:score"] == pytest.approx(row[f"{a['artylyze:task']}_score"],
                                                    abs=1e-4)
        assert a["artylyze:model"] == row["model"]
    assert page["@context"] == [f"{base}/context.json",
                                "http://iiif.io/api/presentation/3/context.json"]
    copy = json.loads((out / key / "manifest.json").read_text())
    Manifest(**copy)
    assert copy["id"] == f"{base}/{key}/manifest.json"
    for i, canvas in enumerate(copy["items"]):
        (ref,) = canvas["annotations"]
        assert ref == {"id": f"{base}/{key}/canvas/{i}.json", "type": "AnnotationPage"}
        own = json.loads((out / key / "canvas" / f"{i}.json").read_text())
        AnnotationPage(**own)
        assert {a["target"] for a in own["items"]} <= {canvas["id"]}
        assert published(own).get(canvas["id"], set()) == want[canvas["id"]]
    coll = json.loads((out / "collection.json").read_text())
    assert [m["id"] for m in coll["items"]] == [copy["id"]]
    # written again (a re-run): the same files, the page listed once per canvas
    code, output = run("write", str(meta), "--iiif", str(out), "--base-url", base,
                       "--motivation", "classifying")
    assert code == 0, output
    copy = json.loads((out / key / "manifest.json").read_text())
    assert all(len(c["annotations"]) == 1 for c in copy["items"])
    page = json.loads((out / key / "annotations.json").read_text())
    assert {a["motivation"] for a in page["items"]} == {"classifying"}


def test_a_v21_manifest_gets_the_page_only(tagged) -> None:
    tmp, server, _ = tagged
    meta = tmp / "v21.parquet"
    code, output = run("tag", f"{server.url}/m21.json", "--out", str(meta), "--model",
                       str(BUNDLE), "-q")
    assert code == 0, output
    out = tmp / "anno21"
    code, output = run("write", str(meta), "--iiif", str(out))
    assert code == 0, output
    assert "1 Presentation 2.1 manifests get the page only" in output
    key = manifest_key(f"{server.url}/m21.json")
    assert (out / key / "annotations.json").is_file()
    assert not (out / key / "manifest.json").exists()


def test_meta_of_a_folder_is_refused(tmp_path: Path) -> None:
    from iiif_support import EXAMPLES

    meta = tmp_path / "folder.parquet"
    code, output = run("tag", str(EXAMPLES), "--out", str(meta), "--model", str(BUNDLE), "-q")
    assert code == 0, output
    code, output = run("write", str(meta), "--iiif", str(tmp_path / "anno"))
    assert code == 2 and "not made from a IIIF document" in output
    assert not (tmp_path / "anno").exists()
    assert "iiif_manifest" not in pq.read_schema(meta).names  # folder output: schema as before
