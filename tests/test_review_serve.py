"""``serve --review``: reviews written through the API become events in the store beside
meta.parquet; writes need the token (in a header), a JSON body, a reviewer's name and the
same origin; bad input gets a 4xx with the reason; concurrent clients lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_support import v2_collection

from artylyze.model.bundle import load_manifest
from artylyze.review import ReviewStore, review_path
from artylyze.serve.app import create_app
from artylyze.serve.options import ServeOptions
from artylyze.serve.review import index_vectors, queue_order
from artylyze.serve.service import Service

TOKEN = "a-test-token-of-some-length"
AUTH = {"X-Review-Token": TOKEN, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return v2_collection(tmp_path_factory.mktemp("review"), n=24)


def open_service(collection: dict[str, Path], **options: object) -> Service:
    return Service.open(ServeOptions(index=collection["idx"], meta=collection["meta"],
                                     collection=collection["root"], **options))


@pytest.fixture(scope="module")
def service(collection) -> Service:
    service = open_service(collection, review=True, review_token=TOKEN)
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    return TestClient(create_app(service))


def post(client: TestClient, work: int | str, body: dict, headers: dict | None = None):
    return client.post(f"/v1/works/{work}/review", json=body,
                       headers=AUTH if headers is None else headers)


def store_events(collection) -> list:
    with ReviewStore.open(review_path(collection["meta"]), create=False) as s:
        return list(s.events())


def test_confirm_correct_and_undo_become_events(client, collection) -> None:
    work = client.get("/v1/works/3/review").json()
    machine = work["predicted"]["style"]["label"]
    classes = load_manifest(collection["bundle"]).labels("style")
    other = next(c for c in classes if c != machine)
    before = len(store_events(collection))
    r = post(client, 3, {"task": "style", "action": "confirm", "reviewer": "Ann"})
    assert r.status_code == 201, r.text
    assert r.json()["event"]["action"] == "confirm" and r.json()["human"]["label"] == machine
    r = post(client, 3, {"task": "style", "action": "confirm", "label": other, "reviewer": "Bo"})
    assert r.json()["event"]["action"] == "correct"  # another label than the machine's
    assert client.get("/v1/works/3").json()["human"]["style"]["label"] == other
    r = post(client, 3, {"task": "style", "action": "undo", "reviewer": "Bo"})
    assert r.json()["human"]["label"] == machine
    r = post(client, 3, {"task": "object_type", "action": "set", "label": "print",
                         "reviewer": "Ann"})
    assert r.status_code == 201 and r.json()["event"]["action"] == "set"
    events = store_events(collection)[before:]
    assert [(e.action, e.reviewer) for e in events] == [
        ("confirm", "Ann"), ("correct", "Bo"), ("undo", "Bo"), ("set", "Ann")]
    assert events[0].machine_label == machine and events[0].model


def test_the_queue_leaves_out_reviewed_works_least_confident_first(client) -> None:
    """One reviewed work: every other work's nearest reviewed one is it, so those the model
    labels otherwise come first (they disagree with a person), each part least confident
    first."""
    label = post(client, 5, {"task": "genre", "action": "confirm",
                             "reviewer": "Ann"}).json()["human"]["label"]
    queue = client.get("/v1/review/queue", params={"task": "genre", "limit": 50}).json()
    ids = [w["id"] for w in queue["works"]]
    assert 5 not in ids and len(ids) == 23
    agrees = [w["predicted"]["genre"]["label"] == label for w in queue["works"]]
    assert agrees == sorted(agrees) and 0 < sum(agrees) < 23
    for part in (False, True):
        scores = [w["predicted"]["genre"]["score"] for w, a in zip(queue["works"], agrees,
                                                                   strict=True) if a == part]
        assert scores == sorted(scores)
    assert all("genre" in w["top"] for w in queue["works"])


def test_queue_order_puts_unscored_last() -> None:
    import numpy as np

    order = queue_order(np.array([0.9, np.nan, 0.2, 0.5]), None,
                        np.array([False, False, False, True]), [None] * 4, [None] * 4)
    assert order.tolist() == [2, 0, 1]


def test_the_queue_ranks_up_works_whose_neighbours_were_corrected(collection, tmp_path,
                                                                 monkeypatch) -> None:
    """With the index's vectors, the model's most confident work comes up the queue once
    its nearest works were corrected to another label than the one it predicts for it."""
    import numpy as np

    service = open_service(collection, review=True, review_token=TOKEN,
                           review_store=tmp_path / "queue.sqlite")
    try:
        desk = service.review
        x = desk.embeddings()
        index = service.gallery.index
        assert x.shape == (index.count, index.index.d) and x.dtype == np.float32
        assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
        assert desk.embeddings() is x  # read once, then kept
        col = service.gallery.column
        scores = np.array(col("style_score"), float)
        target = int(np.argmax(scores))
        machine = col("style")[target]
        other = next(c for c in ("Baroque", "Cubism") if c != machine)
        near = [int(i) for i in np.argsort(-(x @ x[target])) if i != target][:3]
        for row in near:
            desk.record(desk.parse(row, {"task": "style", "action": "correct",
                                         "label": other, "reviewer": "Ann"}))
        with_vectors = desk.queue("style", 50)
        monkeypatch.setattr(desk, "embeddings", lambda: None)
        without = desk.queue("style", 50)
        assert sorted(with_vectors) == sorted(without) and not set(near) & set(without)
        assert without.index(target) == len(without) - 1  # the most confident: last
        assert with_vectors.index(target) < without.index(target)
    finally:
        service.close()


def test_index_vectors_are_left_out_above_the_memory_cap(service) -> None:
    index = service.gallery.index
    assert index_vectors(index, max_bytes=index.count * index.index.d * 4) is None
    assert index_vectors(index).shape == (index.count, index.index.d)


@pytest.mark.parametrize("body, headers, status, kind, says", [
    ({"task": "style", "action": "confirm", "reviewer": "A"}, {"Content-Type": "application/json"},
     401, "unauthorized", "X-Review-Token"),
    ({"task": "style", "action": "confirm", "reviewer": "A"},
     {**AUTH, "X-Review-Token": "wrong-token-wrong-token"}, 401, "unauthorized", "wrong"),
    ({"task": "style", "action": "confirm", "reviewer": "A"},
     {**AUTH, "Origin": "https://evil.example"}, 403, "forbidden", "cross-site"),
    ({"task": "style", "action": "confirm", "reviewer": "A"},
     {**AUTH, "Sec-Fetch-Site": "cross-site"}, 403, "forbidden", "cross-site"),
    ({"task": "style", "action": "confirm", "reviewer": "A"},
     {**AUTH, "Content-Type": "text/plain"}, 415, "not_json", "JSON"),
    ({"task": "style", "action": "confirm", "reviewer": "  "}, None, 400, "bad_request",
     "reviewer's name"),
    ({"task": "style", "action": "confirm"}, None, 400, "bad_request", "reviewer's name"),
    ({"task": "Bad Task!", "action": "set", "label": "x", "reviewer": "A"}, None, 400,
     "bad_request", "unknown task"),
    ({"task": "style", "action": "correct", "label": "Not_A_Style", "reviewer": "A"}, None,
     400, "bad_request", "is not a style label"),
    ({"task": "style", "action": "approve", "reviewer": "A"}, None, 400, "bad_request",
     "action must be"),
    ({"task": "style", "action": "reject", "label": "x", "reviewer": "A"}, None, 400,
     "bad_request", "takes no label"),
    ({"task": "genre", "action": "undo", "reviewer": "A"}, None, 400, "bad_request",
     "nothing to undo"),
    ({"task": "style", "action": "confirm", "reviewer": "A", "extra": 1}, None, 400,
     "bad_request", "unknown fields"),
    ({"task": "style", "action": "confirm", "reviewer": "A" * 5000}, None, 413, "too_large",
     "at most"),
])
def test_bad_writes_are_refused_with_the_reason(client, collection, body, headers, status,
                                                kind, says) -> None:
    before = len(store_events(collection))
    r = post(client, 7, body, headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["kind"] == kind and says in error["message"] and error["status"] == status
    assert len(store_events(collection)) == before


def test_unknown_work_is_404(client) -> None:
    r = post(client, 99999, {"task": "style", "action": "confirm", "reviewer": "A"})
    assert r.status_code == 404 and r.json()["error"]["kind"] == "not_found"


def test_without_review_writes_are_off_but_answers_show(collection) -> None:
    service = open_service(collection)  # the store exists by now: read-only
    try:
        client = TestClient(create_app(service))
        r = post(client, 3, {"task": "style", "action": "confirm", "reviewer": "A"})
        assert r.status_code == 403 and "--review" in r.json()["error"]["message"]
        assert client.get("/v1/review").json()["writable"] is False
        assert "object_type" in client.get("/v1/works/3").json()["human"]
    finally:
        service.close()


def test_the_page_is_served_with_its_policy(client) -> None:
    page = client.get("/review")
    assert page.status_code == 200 and "default-src 'none'" in page.headers[
        "content-security-policy"]
    assert client.get("/review/review.js").status_code == 200
    assert client.get("/review/nope.js").status_code == 404


def test_eight_concurrent_clients_lose_no_event(service, collection) -> None:
    """8 reviewers at once, 1,000 events over real HTTP-level requests (threads)."""
    app = create_app(service)
    before = len(store_events(collection))
    per = 125
    errors: list[str] = []

    def reviewer(who: int) -> None:
        c = TestClient(app)  # not as a context: its shutdown would close the service
        for i in range(per):
            work = (who * per + i) % 24
            r = post(c, work, {"task": f"tag_{who}", "action": "set", "label": f"v{i}",
                               "reviewer": f"r{who}"})
            if r.status_code != 201:
                errors.append(r.text)

    threads = [threading.Thread(target=reviewer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = store_events(collection)[before:]
    assert len(events) == 8 * per
    assert sorted((e.reviewer, e.label) for e in events) == sorted(
        (f"r{w}", f"v{i}") for w in range(8) for i in range(per))

