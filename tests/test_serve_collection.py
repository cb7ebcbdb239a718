"""``serve`` over a tagged collection of its own: a calibrated model's optional columns
(confident flags, novelty) become facets and sorts, ``--meta`` adds detail, and the works'
files are served from the collection folder only, whatever a row or a link says."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from serve_support import v2_collection

from artylyze.serve.app import create_app
from artylyze.serve.errors import ServeConfigError
from artylyze.serve.files import work_file
from artylyze.serve.options import ServeOptions
from artylyze.serve.service import Service


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return v2_collection(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def service(collection) -> Service:
    service = Service.open(ServeOptions(index=collection["idx"], meta=collection["meta"],
                                        collection=collection["root"]))
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    return TestClient(create_app(service))


def test_info_offers_what_the_calibrated_model_gives(client) -> None:
    info = client.get("/v1/info").json()
    assert info["confident"] == ["style", "genre"] and info["novelty"] is True
    assert "novelty" in info["sorts"] and info["images"] is True
    assert info["meta"] == {"rows": 24, "errors": 0, "matched": 24}


def test_a_tagged_upload_has_the_calibrated_columns(client, collection) -> None:
    image = collection["root"] / "Cubism/artist-1_painting-1-1851.png"
    row = client.post("/v1/tag", files={"image": (image.name, image.read_bytes())}).json()
    stored = next(r for r in pq.read_table(collection["meta"]).to_pylist()
                  if r["path"] == "Cubism/artist-1_painting-1-1851.png")
    for name in ("style", "style_confident", "genre_confident"):
        assert row[name] == stored[name]
    assert row["novelty"] == pytest.approx(stored["novelty"], abs=1e-5)


def test_confident_filter_and_novelty_sort(client) -> None:
    unsure = client.get("/v1/works", params={"confident": "false", "task": "genre"}).json()
    sure = client.get("/v1/works", params={"confident": "true", "task": "genre"}).json()
    assert unsure["total"] + sure["total"] == 24
    assert all(w["predicted"]["genre"]["confident"] is False for w in unsure["works"])
    assert sure["facets"]["confident"] == {"task": "genre", "true": sure["total"],
                                           "false": unsure["total"]}
    novel = client.get("/v1/works", params={"sort": "novelty"}).json()["works"]
    values = [w["estimated"]["novelty"] for w in novel]
    assert values == sorted(values, reverse=True)
    assert [w["id"] for w in client.get("/v1/works?sort=-novelty").json()["works"]] == \
        [w["id"] for w in reversed(novel)]


def test_a_work_has_its_meta_detail_and_its_file(client, collection) -> None:
    work = client.get("/v1/works/3").json()
    assert len(work["top"]["style"]) == 3 and work["width"] == 48 and work["height"] == 48
    image = client.get("/v1/works/3/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (collection["root"] / work["path"]).read_bytes()
    thumb = client.get("/v1/works/3/thumbnail")  # no packed thumbnails: made from the file
    assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"


def test_files_that_are_not_plain_files_inside_the_root_are_404(client, service,
                                                                tmp_path) -> None:
    root = service.catalog.root
    paths = service.gallery.column("path")
    secret = tmp_path / "secret.png"
    secret.write_bytes((root / paths[0]).read_bytes())
    os.replace(root / paths[5], tmp_path / "moved.png")
    (root / paths[5]).symlink_to(secret)  # a link out of the collection
    (root / paths[6]).unlink()
    (root / paths[6]).mkdir()  # a folder where the file was
    (root / paths[7]).unlink()
    os.mkfifo(root / paths[7])  # a FIFO: opening it must not block
    (root / paths[8]).unlink()
    (root / paths[8]).symlink_to(root / paths[0])  # a link that stays inside is fine
    for row in (5, 6, 7):
        for suffix in ("image", "thumbnail"):
            response = client.get(f"/v1/works/{row}/{suffix}")
            assert response.status_code == 404, (row, suffix)
            assert response.json()["error"]["kind"] == "not_found"
        assert client.get(f"/v1/works/{row}").json()["image"] is None
    assert client.get("/v1/works/8/image").content == (root / paths[0]).read_bytes()


@pytest.mark.parametrize("rel", ["../secret.png", "/etc/passwd", "a/../../secret.png",
                                 "images/../../secret.png", "x\x00.png", "", ".", "..",
                                 "\\\\server\\share\\x.png"])
def test_work_file_refuses_names_that_leave_the_root(tmp_path, rel) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert work_file(root, rel) is None


def test_meta_of_another_collection_is_refused_at_start(collection, tmp_path) -> None:
    other = v2_collection(tmp_path, n=4)
    table = pq.read_table(other["meta"])
    renamed = table.set_column(0, "path", [["elsewhere/" + p for p in
                                            table.column("path").to_pylist()]])
    pq.write_table(renamed, tmp_path / "other.parquet")
    with pytest.raises(ServeConfigError, match="none of its 4 tagged paths is in the index"):
        Service.open(ServeOptions(index=collection["idx"], meta=tmp_path / "other.parquet"))
    with pytest.raises(ServeConfigError, match="collection folder not found"):
        Service.open(ServeOptions(index=collection["idx"], collection=tmp_path / "nowhere"))
