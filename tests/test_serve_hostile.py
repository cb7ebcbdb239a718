"""Hostile ids, bodies and index rows against ``serve`` (issue #24): each is answered with a
4xx in the JSON error shape, never a 500, and the connection stays usable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from serve_support import ERROR_KEYS, v2_collection

from artylyze.index.manifest import ROWS_FILE, read_manifest, seal
from artylyze.serve.app import create_app
from artylyze.serve.options import ServeOptions
from artylyze.serve.service import Service

NUL_ROW = 2  # the row whose path is made an escaped NUL


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return v2_collection(tmp_path_factory.mktemp("hostile"), n=12)


@pytest.fixture(scope="module")
def client(collection) -> TestClient:
    service = Service.open(ServeOptions(index=collection["idx"],
                                        collection=collection["root"]))
    yield TestClient(create_app(service), raise_server_exceptions=False)
    service.close()


def refused(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["status"] == status and error["kind"] == kind
    return error["message"]


def with_path(idx: Path, out: Path, row: int, text: str) -> Path:
    """A copy of the index ``idx`` whose row ``row`` has ``path`` = ``text``, resealed (as a
    hostile index would be: its manifest checks out)."""
    shutil.copytree(idx, out)
    table = pq.read_table(out / ROWS_FILE)
    paths = table.column("path").to_pylist()
    paths[row] = text
    table = table.set_column(table.column_names.index("path"), "path", pa.array(paths))
    pq.write_table(table, out / ROWS_FILE)
    manifest = read_manifest(out)
    seal(out, manifest, list(manifest.files))
    return out


# -- work ids -------------------------------------------------------------------------------

HOSTILE_IDS = ["%C2%B2", "%D9%A3", "%EF%BC%91", "1" * 5000, "0" * 30 + "1", "-1", "+1",
               "1_0", "%201", "1%20", "0x1", "%E2%85%A0"]


@pytest.mark.parametrize("suffix", ["", "/similar", "/thumbnail", "/image"])
@pytest.mark.parametrize("work_id", HOSTILE_IDS, ids=lambda x: x[:12])
def test_ids_that_are_not_plain_ascii_numbers_are_404(client, work_id, suffix) -> None:
    message = refused(client.get(f"/v1/works/{work_id}{suffix}"), 404, "not_found")
    assert message.startswith("no work with id") and len(message) < 200


def test_plain_ids_still_work(client) -> None:
    assert client.get("/v1/works/1").json()["id"] == 1
    assert client.post("/v1/similar", json={"id": "1"}).json()["query"]["id"] == 1
    assert client.post("/v1/similar", json={"id": 1}).json()["query"]["id"] == 1


@pytest.mark.parametrize("work_id", ["²", "٣", "１", "1" * 5000, "-1", " 1", 10 ** 30, -1],
                         ids=lambda x: str(x)[:12])
@pytest.mark.parametrize("route", ["/v1/similar", "/v1/influence"])
def test_json_ids_that_are_not_plain_numbers_are_404(client, route, work_id) -> None:
    refused(client.post(route, json={"id": work_id}), 404, "not_found")


@pytest.mark.parametrize("body", [
    '{"id": ' + "1" * 5000 + "}",  # past Python's int-string limit
    "[" * 10_000 + "]" * 10_000,  # RecursionError in json.loads
    '{"id": 1, "x": ' + "[" * 10_000 + "]" * 10_000 + "}",
    '{"id": ' + "{" * 5000,  # deep and unfinished
    '{"id": 1e999999}', '{"id": NaN}', '{"id": 1.5}', '{"id": true}', '{"id": null}',
    '["id", 1]', '"id"', "", "\ufeff{}", '{"id": "1\\u0000"}'], ids=lambda x: x[:16])
def test_hostile_json_bodies_are_400_or_404(client, body) -> None:
    response = client.post("/v1/similar", content=body.encode("utf-8", "surrogatepass"),
                           headers={"content-type": "application/json"})
    assert response.status_code in (400, 404), response.text
    refused(response, response.status_code, "bad_request" if response.status_code == 400
            else "not_found")


def test_a_deep_body_is_refused_with_its_reason(client) -> None:
    deep: list = [0]
    for _ in range(40):
        deep = [deep]
    body = json.dumps({"id": 1, "x": deep, "s": "[[[[" * 100})  # brackets in strings: fine
    message = refused(client.post("/v1/similar", content=body,
                                  headers={"content-type": "application/json"}),
                      400, "bad_request")
    assert "nested" in message


def test_the_connection_survives_a_hostile_id(client) -> None:
    for _ in range(3):
        refused(client.get("/v1/works/%C2%B2"), 404, "not_found")
        assert client.get("/v1/works/0").status_code == 200


# -- hostile rows in the index --------------------------------------------------------------

@pytest.mark.parametrize("text", ["\\x00.jpg", "a/\\x00/b.png", "x\\x00", "bad\\xZZ.jpg",
                                  "trailing\\x", "\\x2e\\x2e/\\x2e\\x2e/etc/passwd"])
def test_a_row_path_that_decodes_to_nul_or_nothing_is_404_and_listed(collection, tmp_path,
                                                                      text) -> None:
    idx = with_path(collection["idx"], tmp_path / "idx", NUL_ROW, text)
    service = Service.open(ServeOptions(index=idx, collection=collection["root"],
                                        bundle=collection["bundle"]))
    try:
        client = TestClient(create_app(service), raise_server_exceptions=False)
        work = client.get(f"/v1/works/{NUL_ROW}")
        assert work.status_code == 200 and work.json()["image"] is None
        refused(client.get(f"/v1/works/{NUL_ROW}/image"), 404, "not_found")
        refused(client.get(f"/v1/works/{NUL_ROW}/thumbnail"), 404, "not_found")
        listing = client.get("/v1/works", params={"limit": 12})
        assert listing.status_code == 200
        ids = [w["id"] for w in listing.json()["works"]]
        assert NUL_ROW in ids and len(ids) == 12
        assert client.get("/v1/works", params={"q": "jpg"}).status_code == 200
        assert client.get(f"/v1/works/{NUL_ROW}/similar").status_code == 200
        assert client.get(f"/v1/works/{NUL_ROW + 1}/image").status_code == 200
    finally:
        service.close()
