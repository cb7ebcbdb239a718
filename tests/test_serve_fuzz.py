"""A fuzz test of the HTTP API (issue #24): Hypothesis reads the service's own OpenAPI
document, picks an operation, and sends it hostile path ids, query values, JSON bodies,
raw bytes and multipart forms, in process (no socket). No answer may be a 5xx other than
the documented 503s (busy, timeout), and every refusal has the JSON error shape.

Bounded: ``MAX_EXAMPLES`` requests over a 12-work collection and the tiny bundle, no
deadline per example (the machine is shared); about 20 s on 2 cores."""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from serve_support import ERROR_KEYS, v2_collection

from artylyze.serve.app import create_app
from artylyze.serve.options import ServeOptions
from artylyze.serve.service import Service

MAX_EXAMPLES = 200
DOCUMENTED_5XX = {(503, "busy"), (503, "timeout")}
NASTY_TEXT = ["²", "٣", "１", "1" * 5000, "9" * 19, "-1", "+1", " 1", "1 ", "0x1", "1e3", "",
              "\x00", "..", "../../etc/passwd", "%00", "\\x00", "NaN", "∞", "\U0001f600",
              "null", "true", "[]", "{}", "0" * 50 + "1"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    collection = v2_collection(tmp_path_factory.mktemp("fuzz"), n=12)
    service = Service.open(ServeOptions(index=collection["idx"], meta=collection["meta"],
                                        collection=collection["root"],
                                        bundle=collection["bundle"], timeout_s=60))
    client = TestClient(create_app(service), raise_server_exceptions=False)
    operations = [(method.upper(), path, op) for path, item in client.get(
        "/openapi.json").json()["paths"].items() for method, op in item.items()]
    image = next(collection["root"].rglob("*.png")).read_bytes()
    yield client, operations, image
    service.close()


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY_TEXT), st.integers(-3, 40).map(str),
                     st.text(max_size=20), st.from_regex(r"[0-9]{1,40}", fullmatch=True))


def json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                        st.text(max_size=10), st.sampled_from(NASTY_TEXT))
    return st.recursive(scalars, lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=5), kids, max_size=4)),
        max_leaves=12)


def mutated(image: bytes) -> st.SearchStrategy[bytes]:
    """The image with a few bytes changed, cut short, or random bytes."""
    def flip(data: bytes, at: list[int], value: int) -> bytes:
        out = bytearray(data)
        for i in at:
            out[i % len(out)] = value
        return bytes(out)
    return st.one_of(
        st.builds(flip, st.just(image), st.lists(st.integers(0, len(image)), max_size=8),
                  st.integers(0, 255)),
        st.integers(0, len(image)).map(lambda n: image[:n]), st.binary(max_size=200),
        st.just(wide_png()))


def wide_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (2000, 3), (10, 20, 30, 40)).save(buffer, "PNG")
    return buffer.getvalue()


@st.composite
def requests(draw, operation: tuple[str, str, dict], image: bytes) -> dict:
    """One request to the API's ``operation``, with values drawn to break it."""
    method, path, op = operation
    params: dict[str, str] = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = draw(text_values())
            path = path.replace("{" + param["name"] + "}", quote(value or "0", safe=""))
            continue
        value = draw(st.one_of(st.none(), text_values(), st.integers().map(str),
                               st.sampled_from(["true", "false", "0", "1"])))
        if value is not None:
            params[param["name"]] = value
    if path.endswith("/works") and draw(st.booleans()):  # facet filters are free-form
        params[draw(st.sampled_from(["style", "genre", "x", "", "__proto__"]))] = \
            draw(text_values())
    request = {"method": method, "url": path, "params": params}
    if method == "POST":
        kind = draw(st.sampled_from(["json", "raw-json", "bytes", "form", "none"]))
        if kind == "json":
            body = draw(st.one_of(json_values(), st.fixed_dictionaries({"id": json_values()})))
            request["content"] = json.dumps(body)
            request["headers"] = {"content-type": "application/json"}
        elif kind == "raw-json":
            request["content"] = draw(st.one_of(
                st.binary(max_size=100), st.integers(1, 20_000).map(lambda n: "[" * n),
                st.integers(1, 6000).map(lambda n: '{"id": ' + "7" * n + "}")))
            request["headers"] = {"content-type": "application/json"}
        elif kind == "bytes":
            request["content"] = draw(mutated(image))
            request["headers"] = {"content-type": draw(st.sampled_from(
                ["image/png", "application/octet-stream", "text/plain"]))}
        elif kind == "form":
            request["files"] = {draw(st.sampled_from(["image", "file"])): (
                draw(st.text(max_size=20)) or "x.png", draw(mutated(image)), "image/png")}
    return request


def test_no_operation_answers_a_5xx_to_anything(api) -> None:
    client, operations, image = api
    assert client.get("/v1/info").json()["works"] == 12
    assert {path for _, path, _ in operations} >= {"/v1/tag", "/v1/similar", "/v1/works",
                                                   "/v1/works/{work_id}/image"}

    def check(request: dict) -> None:
        response = client.request(**request)
        if response.status_code < 400:
            return
        error = response.json()["error"]
        assert set(error) == ERROR_KEYS and error["status"] == response.status_code, error
        assert response.status_code < 500 or (response.status_code, error["kind"]) in \
            DOCUMENTED_5XX, (request, error)

    for operation in operations:  # each operation gets its share of the examples
        fuzz = settings(max_examples=MAX_EXAMPLES // len(operations), deadline=None,
                        database=None, suppress_health_check=list(HealthCheck))(
            given(requests(operation, image))(check))
        fuzz()


def test_the_fuzz_would_see_a_500(api, monkeypatch) -> None:
    """The check above can fail: a planted bug in one route is a 500 it reports."""
    client, _, _ = api
    from artylyze.serve.catalog import Catalog

    monkeypatch.setattr(Catalog, "row", lambda self, work_id: int(str(work_id)))
    response = client.get("/v1/works/%C2%B2")
    assert response.status_code == 500 and response.json()["error"]["kind"] == "internal"
