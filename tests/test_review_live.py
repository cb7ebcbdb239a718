"""``serve --review`` as people use it, in its own processes: the review queue page in
Debian's Chromium (Playwright, no browser download), where a reviewer types a name and the
token, then reviews ten works from the keyboard alone, every key press becoming the event it
should in the review store beside meta.parquet; and eight reviewers posting 1,000 events at
once over real HTTP to a two-worker server, none lost."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest
from serve_support import serve_process, v2_collection
from test_serve_live import browser  # noqa: F401 - the shared Chromium fixture

from artylyze.review import ReviewStore, review_path

TOKEN = "page-test-token-0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("review-page")
    collection = v2_collection(tmp, n=24)
    (tmp / "token").write_text(TOKEN + "\n")
    with serve_process(tmp / "serve.log", "--index", str(collection["idx"]), "--meta",
                       str(collection["meta"]), "--collection", str(collection["root"]),
                       "--review", "--review-token-file", str(tmp / "token")) as url:
        yield url, collection


def progress(page, n: int) -> None:
    page.wait_for_function(
        "n => document.getElementById('progress').textContent.startsWith(n + ' reviewed')",
        arg=n, timeout=15_000)


def test_ten_works_reviewed_by_keyboard(browser, served) -> None:  # noqa: F811
    url, collection = served
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.goto(f"{url}/review")
    page.fill("#reviewer", "Ann Curator")
    page.dispatch_event("#reviewer", "change")
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.wait_for_selector("#work:not([hidden])")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus out of the inputs

    seen: list[str] = []
    keys = ["Enter", "1", "2", "c", "s", "3", "Enter", "u", "1", "2", "Enter", "c", "1"]
    done = 0
    for key in keys:
        seen.append(page.text_content("#caption"))
        page.keyboard.press(key)
        if key == "s":
            page.wait_for_function("c => document.getElementById('caption').textContent !== c",
                                   arg=seen[-1])
            continue
        done += -1 if key == "u" else 1
        progress(page, done)
    assert done == 10
    assert problems == []

    with ReviewStore.open(review_path(collection["meta"]), create=False) as store:
        events = list(store.events())
        current = store.current("style")
    assert [e.action for e in events].count("undo") == 1
    assert len(events) == 12  # eleven answers and one undo
    assert len(current) == 10  # ten works now carry a human style label
    assert {e.reviewer for e in events} == {"Ann Curator"}
    assert all(e.task == "style" for e in events)
    for e in events:
        if e.action == "confirm":
            assert e.label == e.machine_label
        elif e.action == "correct":
            assert e.label != e.machine_label
    # the undone work was shown again and answered again: eleven answers, ten works
    undone = next(e for e in events if e.action == "undo")
    assert sum(x.sha256 == events[undone.undoes - 1].sha256 for x in events) == 3

    # the collection page shows the person's label with the work
    last = current[(events[-1].sha256, "style")]
    with urllib.request.urlopen(f"{url}/v1/works?limit=200") as r:
        works = json.load(r)["works"]
    work = next(w for w in works if w["path"] == last.path)
    assert work["human"]["style"]["label"] == last.label
    page.goto(f"{url}/#/works/{work['id']}")
    said = page.locator("#work-labels .reviewed").first
    said.wait_for()
    assert said.text_content() == f"{last.label.replace('_', ' ')}, says Ann Curator"

    # any work can be reviewed from its page: the link opens it in the review page first
    page.click("text=Review this work")
    page.wait_for_url("**/review")
    page.wait_for_selector("#work:not([hidden])")
    assert page.text_content("#caption").endswith(last.path)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("x")  # reject the machine's label
    progress(page, 1)
    with ReviewStore.open(review_path(collection["meta"]), create=False) as store:
        again = store.current("style")[(last.sha256, "style")]
    assert again.action == "reject" and again.label is None and again.reviewer == "Ann Curator"
    assert problems == []
    context.close()


def test_eight_http_clients_and_two_workers_lose_no_event(served, tmp_path) -> None:
    _, collection = served
    (tmp_path / "token").write_text(TOKEN)
    with serve_process(tmp_path / "serve.log", "--index", str(collection["idx"]), "--meta",
                       str(collection["meta"]), "--workers", "2", "--review",
                       "--review-token-file", str(tmp_path / "token")) as url:
        where = urlsplit(url)
        with ReviewStore.open(review_path(collection["meta"]), create=False) as store:
            before = store.count()
        failures: list[str] = []

        def reviewer(who: int) -> None:
            conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
            for i in range(125):
                body = json.dumps({"task": f"live_{who}", "action": "set", "label": f"v{i}",
                                   "reviewer": f"r{who}"})
                conn.request("POST", f"/v1/works/{(who + i) % 24}/review", body,
                             {"X-Review-Token": TOKEN, "Content-Type": "application/json"})
                response = conn.getresponse()
                answer = response.read()
                if response.status != 201:
                    failures.append(answer.decode())
            conn.close()

        threads = [threading.Thread(target=reviewer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    with ReviewStore.open(review_path(collection["meta"]), create=False) as store:
        events = list(store.events())[before:]
    assert len(events) == 1000
    assert sorted((e.task, e.label) for e in events) == sorted(
        (f"live_{w}", f"v{i}") for w in range(8) for i in range(125))
