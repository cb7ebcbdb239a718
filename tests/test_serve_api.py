"""The JSON API over the shipped model and real paintings tagged and indexed with it: every
endpoint, and every refusal with its exact status, kind and message (no 500s, no hangs).
Labels and tasks are read from the model, so a new shipped model passes the same tests."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_support import (
    ERROR_KEYS,
    EXAMPLE,
    EXAMPLES,
    image_file,
    real_collection,
    v2_collection,
    with_options,
)

from artylyze.imaging import load_image
from artylyze.index.store import DEFAULT_GALLERY_DIR
from artylyze.model.bundle import DEFAULT_BUNDLE_DIR
from artylyze.model.predict import predictions
from artylyze.serve.app import create_app
from artylyze.serve.options import ServeOptions
from artylyze.serve.service import Service
from artylyze.store import make_schema


@pytest.fixture(scope="module")
def collection(tmp_path_factory, wikiart):
    return real_collection(tmp_path_factory, wikiart)


@pytest.fixture(scope="module")
def service(collection) -> Service:
    service = Service.open(ServeOptions(index=collection["idx"], meta=collection["meta"]))
    service.warm_up()
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(service: Service) -> TestClient:
    return TestClient(create_app(service))


def refused(response, status: int, kind: str, message: str | None = None) -> str:
    """Check an error answer's shape, status and kind; return its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["status"] == status and error["kind"] == kind
    if message is not None:
        assert error["message"] == message
    return error["message"]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds almost none (a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 16)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + struct.pack(">I", len(idat)) + b"IDAT"
            + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat)))


# -- endpoints ------------------------------------------------------------------------------

def test_info_and_health_describe_the_model_and_collection(client, service) -> None:
    info = client.get("/v1/info").json()
    assert info["model"] == service.manifest.model_id
    assert info["tasks"] == list(service.manifest.label_tasks)
    assert info["facets"] == list(service.gallery.index.manifest.tasks)
    assert info["works"] == service.gallery.index.count
    assert info["limits"]["max_upload_bytes"] == ServeOptions.max_upload_bytes
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["works"] == info["works"]


def test_with_no_options_it_serves_the_shipped_model_and_gallery() -> None:
    service = Service.open(ServeOptions())
    client = TestClient(create_app(service))
    shipped = service.gallery.index
    assert shipped.path == DEFAULT_GALLERY_DIR and service.bundle.path == DEFAULT_BUNDLE_DIR
    # the session's threads and spinning are chosen when the bundle is made, not changed later
    assert service.bundle.spin is False and service.bundle.threads >= 1
    assert client.get("/v1/info").json()["works"] == shipped.count
    answer = client.post("/v1/similar", files=image_file(EXAMPLE)).json()
    assert len(answer["results"]) == 10
    assert client.get(answer["results"][0]["thumbnail"]).status_code == 200
    service.close()


def test_tag_gives_the_fields_of_a_meta_parquet_row(client, service) -> None:
    response = client.post("/v1/tag", files=image_file(EXAMPLE))
    assert response.status_code == 200
    row = response.json()
    man = service.manifest
    assert list(row) == make_schema(man).names  # same columns, same order
    data = EXAMPLE.read_bytes()
    assert row["path"] == EXAMPLE.name and row["size"] == len(data) and row["status"] == "ok"
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert (row["width"], row["height"]) == Image.open(EXAMPLE).size
    pixels = load_image(EXAMPLE, man.input_size, man.resize).pixels[None]
    (want,) = predictions(service.bundle.run(pixels), man, 3)
    for task, top in want.top.items():
        assert [t["label"] for t in row[f"{task}_top"]] == [label for label, _ in top]
        assert row[f"{task}_score"] == pytest.approx(top[0][1], abs=1e-5)
    assert np.allclose(row["embedding"], want.embedding, atol=1e-5)
    assert row["model"] == man.model_id and row["mtime_ns"] is None


def test_a_raw_body_is_tagged_like_a_form_upload(client) -> None:
    form = client.post("/v1/tag", files=image_file(EXAMPLE), params={"embedding": "false"})
    raw = client.post("/v1/tag", content=EXAMPLE.read_bytes(), params={"embedding": "false",
                                                                       "top_k": 1},
                      headers={"Content-Type": "application/octet-stream"})
    assert raw.status_code == form.status_code == 200
    assert "embedding" not in raw.json() and raw.json()["path"] == "upload"
    assert raw.json()["style"] == form.json()["style"] and len(raw.json()["style_top"]) == 1


def test_similar_to_an_upload_finds_k_works_and_leaves_itself_out(client, service) -> None:
    answer = client.post("/v1/similar", files=image_file(EXAMPLE)).json()
    results = answer["results"]
    assert answer["query"]["source"] == "upload"
    itself = answer["query"]["id"]  # the example is in the gallery: found by its bytes
    assert service.gallery.column("path")[itself].endswith(EXAMPLE.name)
    assert len(results) == 10 and itself not in [r["id"] for r in results]
    assert [r["rank"] for r in results] == list(range(1, 11))
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(r["thumbnail"] == f"/v1/works/{r['id']}/thumbnail" for r in results)
    assert set(answer["query"]["predicted"]) == set(service.manifest.label_tasks)


def test_similar_by_id_is_the_works_own_similar(client) -> None:
    by_body = client.post("/v1/similar", json={"id": 42}, params={"k": 5}).json()
    by_path = client.get("/v1/works/42/similar", params={"k": 5}).json()
    assert by_body == by_path
    assert by_body["query"]["source"] == "index" and by_body["query"]["id"] == 42
    assert len(by_body["results"]) == 5 and 42 not in [r["id"] for r in by_body["results"]]


def test_influence_of_an_upload_and_of_a_work(client, service) -> None:
    painting = EXAMPLES / "sam-francis_decent-1982.jpg"
    upload = client.post("/v1/influence", files=image_file(painting), params={"top": 3}).json()
    work = client.post("/v1/influence", json={"id": "7"}).json()
    k = service.gallery.index.clusters.gmm.k
    for answer in (upload, work):
        assert len(answer["posterior"]) == k
        assert sum(p["share"] for p in answer["posterior"]) == pytest.approx(1, abs=1e-3)
        assert answer["top"] and all(t["name"] for t in answer["top"])
    assert len(upload["top"]) <= 3 and work["query"]["id"] == 7


def test_works_filter_sort_and_page(client, service) -> None:
    styles = service.gallery.column("style")
    everything = client.get("/v1/works", params={"limit": 1}).json()
    assert everything["total"] == service.catalog.count
    first, second = (f["label"] for f in everything["facets"]["style"][:2])
    page = client.get("/v1/works", params={"style": first, "sort": "confidence",
                                           "limit": 20}).json()
    assert page["total"] == styles.count(first)
    assert all(w["predicted"]["style"]["label"] == first for w in page["works"])
    scores = [w["predicted"]["style"]["score"] for w in page["works"]]
    assert scores == sorted(scores)  # least confident first
    two = client.get(f"/v1/works?style={first}&style={second}&limit=1").json()
    assert two["total"] == styles.count(first) + styles.count(second)
    assert sum(f["count"] for f in page["facets"]["genre"]) <= page["total"]
    assert {f["label"]: f["count"] for f in page["facets"]["style"]}[second] == \
        styles.count(second)  # a facet's own filter does not narrow its counts
    following = client.get("/v1/works", params={"style": first, "sort": "confidence",
                                                "offset": 10, "limit": 10}).json()
    assert [w["id"] for w in following["works"]] == [w["id"] for w in page["works"][10:]]
    newest = client.get("/v1/works", params={"sort": "-year", "limit": 3}).json()["works"]
    assert newest[0]["year"] >= newest[1]["year"] >= newest[2]["year"]
    slug = service.gallery.column("artist_slug")[0]
    found = client.get("/v1/works", params={"q": slug.upper(), "limit": 200}).json()
    assert found["total"] and all(slug in w["path"].lower() for w in found["works"])
    novel = client.get("/v1/works", params={"sort": "novelty"}).json()["works"]
    values = [w["estimated"]["novelty"] for w in novel]
    assert values == sorted(values, reverse=True)  # most unlike the training styles first


def test_a_work_its_thumbnail_and_its_file(client, service, collection) -> None:
    work = client.get("/v1/works/0").json()
    assert work["id"] == 0 and work["path"] == service.gallery.column("path")[0]
    assert set(work["top"]) == set(service.manifest.label_tasks)  # from --meta
    thumb = client.get("/v1/works/0/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.content == service.gallery.index.packed_thumbnail(0)
    image = client.get(work["image"])  # the collection folder is the meta's root
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content == (collection["root"] / work["path"]).read_bytes()


def test_openapi_documents_every_route(client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/info", "/v1/tag", "/v1/similar", "/v1/influence", "/v1/works",
            "/v1/works/{work_id}", "/v1/works/{work_id}/similar",
            "/v1/works/{work_id}/thumbnail", "/v1/works/{work_id}/image",
            "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/similar"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/json"} <= set(body)
    assert client.get("/docs").status_code == 200


# -- refusals --------------------------------------------------------------------------------

def test_oversized_uploads_are_refused_with_413(service) -> None:
    small = TestClient(create_app(with_options(service, max_upload_bytes=10_000)))
    data = EXAMPLE.read_bytes()  # 13,534 bytes
    refused(small.post("/v1/tag", files={"image": ("a.jpg", data)}), 413, "too_large",
            f"upload of {len(data):,} bytes exceeds the limit of 10,000 bytes")
    big = b"\xff\xd8\xff" + bytes(200_000)
    refused(small.post("/v1/tag", content=big), 413, "too_large",
            f"upload of {len(big):,} bytes exceeds the limit of 10,000 bytes")


@pytest.mark.parametrize("body", [b"hello, world", b"<html><script>alert(1)</script></html>",
                                  b"%PDF-1.4 not a painting", b"RIFF\x00\x00\x00\x00WAVE"])
def test_what_is_not_an_image_is_refused_with_415(client, body) -> None:
    for response in (client.post("/v1/tag", files={"image": ("x.jpg", body, "image/jpeg")}),
                     client.post("/v1/similar", content=body,
                                 headers={"Content-Type": "image/jpeg"})):
        refused(response, 415, "not_an_image", "the upload is not an image: it does not "
                "start like JPEG, PNG, WebP, TIFF, BMP or GIF")


def test_broken_images_and_bombs_are_refused_with_422(client) -> None:
    data = EXAMPLE.read_bytes()
    refused(client.post("/v1/tag", files={"image": ("t.jpg", data[: len(data) // 3])}), 422,
            "bad_image", "cannot decode the upload: truncated image file")
    refused(client.post("/v1/similar", content=png_header(8_000, 8_000)), 422, "bad_image",
            "cannot decode the upload: 64,000,000 pixels exceeds the limit of 50,000,000")
    refused(client.post("/v1/influence", content=png_header(100_000, 100_000)), 422,
            "bad_image", "cannot decode the upload: 10,000,000,000 pixels exceeds the limit "
            "of 50,000,000")
    garbage = data[:600] + bytes(range(256)) * 8
    message = refused(client.post("/v1/tag", content=garbage), 422, "bad_image")
    assert message.startswith("cannot decode the upload: ")


def test_bad_bodies_are_refused_with_400(client) -> None:
    refused(client.post("/v1/tag"), 400, "bad_request", "no image in the request: send it as "
            "the multipart form field 'image' or as the raw body")
    refused(client.post("/v1/tag", files={"picture": ("x.jpg", EXAMPLE.read_bytes())}), 400,
            "bad_request", "the form has no file field 'image'")
    refused(client.post("/v1/tag", data={"image": "just text"},
                        files={"other": ("x", b"1")}), 400, "bad_request",
            "the form has no file field 'image'")
    refused(client.post("/v1/similar", content=b"{not json",
                        headers={"Content-Type": "application/json"}), 400, "bad_request")
    for body in ({"id": True}, {"work": 3}, [3]):
        refused(client.post("/v1/similar", json=body), 400, "bad_request",
                'expected {"id": <work id>} or an uploaded image')
    refused(client.post("/v1/tag", content=b"x", headers={"Content-Length": "abc"}), 400,
            "bad_request", "Content-Length 'abc' is not a number")


@pytest.mark.parametrize("work_id", ["99999", "122", "abc", "-1", "1e3", "%201",
                                     "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "0x10"])
def test_unknown_ids_are_404(client, service, work_id) -> None:
    for suffix in ("", "/similar", "/thumbnail", "/image"):
        response = client.get(f"/v1/works/{work_id}{suffix}")
        assert response.status_code == 404, (work_id, suffix, response.text)
        assert response.json()["error"]["kind"] == "not_found"
    last = service.catalog.count - 1
    refused(client.post("/v1/similar", json={"id": 99999}), 404, "not_found",
            f"no work with id '99999': ids are 0 to {last}")


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/..%2F..%2Fetc%2Fpasswd",
                                  "/static/%2e%2e/%2e%2e/etc/passwd", "/static/app.py",
                                  "/static/", "/etc/passwd", "/v1/works/0/image/../../../x"])
def test_paths_outside_the_page_are_404(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 404 and response.json()["error"]["kind"] == "not_found"
    assert b"root:" not in response.content


def test_bad_parameters_are_refused_with_400_or_422(client, service) -> None:
    tasks = ", ".join(service.catalog.tasks)
    refused(client.get("/v1/works/1/similar", params={"k": 0}), 422, "invalid_parameter",
            "k: Input should be greater than or equal to 1")
    refused(client.get("/v1/works/1/similar", params={"k": 101}), 422, "invalid_parameter",
            "k: Input should be less than or equal to 100")
    refused(client.get("/v1/works", params={"limit": "many"}), 422, "invalid_parameter",
            "limit: Input should be a valid integer, unable to parse string as an integer")
    refused(client.get("/v1/works", params={"colour": "red"}), 400, "bad_request",
            f"unknown filter 'colour'; filters are {tasks}, confident, task, q, sort, offset "
            "and limit")
    refused(client.get("/v1/works", params={"sort": "price"}), 400, "bad_request",
            "unknown sort 'price'; sorts are id, title, artist, year, novelty, confidence "
            "(prefix - to reverse)")
    refused(client.get("/v1/works", params={"task": "colour"}), 400, "bad_request",
            f"unknown task 'colour'; this index has {tasks}")
    refused(client.get("/v1/tag"), 405, "method_not_allowed", "Method Not Allowed")


def test_an_uncalibrated_index_refuses_novelty_and_confident(tmp_path) -> None:
    plain = v2_collection(tmp_path, n=8, calibrated=False)
    service = Service.open(ServeOptions(index=plain["idx"]))
    client = TestClient(create_app(service))
    info = client.get("/v1/info").json()
    assert info["confident"] == [] and info["novelty"] is False
    assert "novelty" not in info["sorts"]
    refused(client.get("/v1/works", params={"sort": "novelty"}), 400, "bad_request",
            "this index has no novelty scores (its model has no calibration); sort by "
            "confidence, title, year or id")
    refused(client.get("/v1/works", params={"confident": "true"}), 400, "bad_request",
            "this index has no confident flags for 'style' (its model has no calibration); "
            "confident filters need a calibrated model")
    service.close()


# -- on a network ------------------------------------------------------------------------

def test_security_headers_and_no_cors_unless_asked(client, service) -> None:
    page = client.get("/", headers={"Origin": "http://elsewhere.example"})
    assert page.status_code == 200 and "default-src 'none'" in page.headers[
        "content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in page.headers
    assert client.options("/v1/tag", headers={
        "Origin": "http://elsewhere.example",
        "Access-Control-Request-Method": "POST"}).status_code == 405
    allowed = TestClient(create_app(with_options(
        service, cors_origins=("http://museum.example",))))
    ok = allowed.get("/v1/info", headers={"Origin": "http://museum.example"})
    assert ok.headers["access-control-allow-origin"] == "http://museum.example"
    other = allowed.get("/v1/info", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_access_log_is_one_json_line_without_queries_or_headers(client) -> None:
    # a handler on the access logger itself, enabled: code that ran earlier in this process
    # may have stopped it from propagating to the root, where caplog is (configure_logging),
    # or disabled it (a logging.config.dictConfig that disables existing loggers)
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    access = logging.getLogger("artylyze.access")
    level, disabled = access.level, access.disabled
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.disabled = False
    try:
        response = client.get("/v1/works", params={"q": "secret-token"},
                              headers={"Authorization": "Bearer hunter2",
                                       "X-Request-ID": "abc-123"})
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
        access.disabled = disabled
    assert response.headers["x-request-id"] == "abc-123"
    (line,) = lines
    record = json.loads(line)
    assert record["path"] == "/v1/works" and record["status"] == 200
    assert record["request_id"] == "abc-123" and record["method"] == "GET"
    assert "secret" not in line and "hunter2" not in line
    assert set(record) == {"time", "request_id", "client", "method", "path", "status",
                           "bytes", "ms"}


def test_a_corrupt_upload_in_every_format_never_gives_a_500(client) -> None:
    for fmt in ("PNG", "WEBP", "TIFF", "BMP", "GIF"):
        buf = io.BytesIO()
        Image.open(EXAMPLE).convert("RGB").save(buf, fmt)
        data = buf.getvalue()
        for cut in (len(data) // 2, 40):
            response = client.post("/v1/tag", content=data[:cut])
            assert response.status_code in (200, 415, 422), (fmt, cut, response.text)
