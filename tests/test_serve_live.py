"""``artylyze serve`` as a user runs it: the command in its own process on loopback, raw
requests that no client library would tidy up, and the page in a real headless Chromium
(Debian's, driven by Playwright; no browser is downloaded)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import DATA
from serve_support import EXAMPLE, real_collection, serve_process

from artylyze.serve.errors import ServeConfigError
from artylyze.serve.options import ENV_VAR, ServeOptions
from artylyze.serve.server import is_loopback, uvicorn_settings

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
NOT_ART = DATA / "notart" / "images" / "document" / "sroie-0001.jpg"  # a typed receipt
LOADED = """() => { const imgs = [...document.querySelectorAll('#similar .card img')];
  return imgs.length === 10 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, wikiart: Path) -> tuple[str, Path]:
    collection = real_collection(tmp_path_factory, wikiart)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_process(log, "--index", str(collection["idx"]), "--meta",
                       str(collection["meta"])) as url:
        yield url, log


@pytest.fixture(scope="module")
def browser():
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("no chromium on PATH: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []  # console errors, uncaught exceptions, failed loads
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("requestfailed", lambda r: page.problems.append(f"failed: {r.url}"))
    yield page
    context.close()


def raw_get(url: str, path: str) -> tuple[int, dict]:
    """GET ``path`` exactly as written (no dot-segment or escape clean-up on the way)."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_serve_binds_loopback_by_default() -> None:
    settings = uvicorn_settings(ServeOptions())
    assert settings["host"] == "127.0.0.1" and is_loopback(settings["host"])
    assert settings["access_log"] is False and settings["server_header"] is False


def test_other_commands_never_import_the_web_stack() -> None:
    code = ("import sys, artylyze.cli.main; "
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('fastapi', 'starlette', 'uvicorn', 'multipart', 'httpx')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_options_travel_to_worker_processes_and_bad_ones_are_refused(monkeypatch) -> None:
    options = ServeOptions(index=Path("idx"), cors_origins=("http://a.example",), workers=3,
                           root_path="/artylyze")
    monkeypatch.setenv(ENV_VAR, options.to_env())
    assert ServeOptions.from_env() == options
    for bad, message in ((ServeOptions(max_batch=0), "max-batch must be at least 1"),
                         (ServeOptions(timeout_s=0), "timeouts must be positive"),
                         (ServeOptions(root_path="artylyze/"), "must start with /")):
        with pytest.raises(ServeConfigError, match=message):
            bad.check()


@pytest.mark.parametrize("path", [
    "/v1/works/../../../../etc/passwd", "/v1/works/1/../../../etc/passwd/image",
    "/static/../../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/etc/passwd", "/v1/works/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
    "/v1/works/..%5c..%5cetc%5cpasswd/image", "/..%2f..%2f..%2fetc/passwd",
    "/v1/works/0%00/image"])
def test_raw_traversal_attempts_are_404(server, path) -> None:
    status, body = raw_get(server[0], path)
    assert status == 404 and body["error"]["kind"] == "not_found"


def test_the_command_logs_json_access_lines(server) -> None:
    url, log = server
    raw_get(url, "/v1/works?q=private")
    for _ in range(300):  # the line is written just after the answer is sent
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        if any(x["path"] == "/v1/works" for x in lines):
            break
        time.sleep(0.05)
    assert any(x["path"] == "/v1/works" and x["status"] == 200 for x in lines)
    assert "private" not in log.read_text()


def test_the_connection_survives_hostile_ids_and_bad_http_is_json(server) -> None:
    where = urlsplit(server[0])
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        for path in ("/v1/works/%C2%B2", "/v1/works/" + "9" * 5000 + "/image",
                     "/v1/works/%D9%A3/similar", "/v1/works/0"):
            conn.request("GET", path)  # one keep-alive connection for all of them
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == (200 if path.endswith("/0") else 404), body
        conn.request("POST", "/v1/similar", body="[" * 10_000 + "]" * 10_000,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 400 and json.loads(response.read())["error"]["kind"] == \
            "bad_request"
    finally:
        conn.close()
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert json.loads(body)["error"]["kind"] == "bad_request"


def test_nothing_of_a_result_shows_before_an_upload(page, server) -> None:
    page.goto(server[0] + "/")
    page.wait_for_function("() => document.querySelector('#limits').textContent !== ''")
    for selector in ("#result", "#preview", "#labels", "#influences", "#similar-title",
                     "text=Predicted labels", "text=Influences"):
        assert not page.locator(selector).is_visible(), selector
    assert page.problems == []


def test_a_work_without_its_file_shows_its_thumbnail_at_its_own_size(page, server) -> None:
    def no_file(route) -> None:  # as served without the collection folder
        work = route.fetch().json()
        route.fulfill(json={**work, "image": None})

    page.route("**/v1/works/3", no_file)
    page.goto(server[0] + "/#/works/3")
    page.wait_for_function("() => { const i = document.querySelector('#work-image'); "
                           "return i.complete && i.naturalWidth > 0; }")
    shown = page.evaluate("() => { const i = document.querySelector('#work-image'); "
                          "return [i.naturalWidth, i.clientWidth, i.src]; }")
    assert shown[2].endswith("/v1/works/3/thumbnail") and shown[1] == shown[0] <= 200, shown
    assert page.locator("#work-note").is_visible()
    page.unroute("**/v1/works/3")
    page.goto(server[0] + "/#/works/4")
    page.wait_for_function("() => document.querySelector('#work-image').src.endsWith('/image')"
                           " && document.querySelector('#work-image').naturalWidth > 0")
    assert not page.locator("#work-note").is_visible()
    assert page.problems == []


def test_upload_a_painting_and_see_its_labels_and_ten_similar_works(page, server) -> None:
    page.goto(server[0] + "/")
    page.set_input_files("#file", str(EXAMPLE))
    page.wait_for_function(LOADED, timeout=120_000)
    for selector in ("#result", "#preview", "#labels", "#influences"):
        assert page.locator(selector).is_visible(), selector
    tasks = page.locator("#labels .task").count()
    info = json.loads(page.evaluate("() => fetch('v1/info').then(r => r.text())"))
    assert tasks == len(info["tasks"])
    assert page.locator("#influences .bar-row").count() >= 1
    titles = page.locator("#similar .card .title").all_text_contents()
    assert len(titles) == 10 and all(titles)
    assert page.locator("#labels .notice").count() == 0  # a painting is an artwork
    assert page.problems == []


def test_upload_a_document_and_read_that_it_is_not_an_artwork(page, server) -> None:
    page.goto(server[0] + "/")
    page.set_input_files("#file", str(NOT_ART))
    page.wait_for_function(LOADED, timeout=120_000)
    notice = page.locator("#labels .notice")
    assert notice.is_visible()
    assert notice.text_content().startswith("Not an artwork: looks like a document")
    assert page.locator("#labels .badge.ok").count() == 0  # and nothing claims confidence
    assert page.problems == []


def test_filter_the_collection_and_open_a_work(page, server) -> None:
    page.goto(server[0] + "/#/works")
    page.wait_for_selector("#works .card")
    everything = page.locator("#works").get_attribute("data-total")
    style = page.locator("select[name=style] option").nth(1).get_attribute("value")
    page.select_option("select[name=style]", style)
    page.wait_for_function("all => document.querySelector('#works').dataset.total !== all",
                           arg=everything)
    total = int(page.locator("#works").get_attribute("data-total"))
    api = json.loads(page.evaluate("s => fetch('v1/works?limit=1&style=' + "
                                   "encodeURIComponent(s)).then(r => r.text())", style))
    assert total == api["total"] and 0 < total < int(everything)
    tags = page.locator("#works .card .tags").all_text_contents()
    assert tags and all(t.startswith(style.replace("_", " ")) for t in tags)
    page.select_option("select[name=sort]", "confidence")
    page.wait_for_function("() => location.hash.includes('sort=confidence')")
    page.locator("#works .card").first.click()
    page.wait_for_selector("#work-similar .card")
    assert page.locator("#work-title").text_content()
    assert page.problems == []


def test_a_refused_upload_shows_the_servers_reason(page, server, tmp_path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a painting")
    page.goto(server[0] + "/")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.locator("#error").text_content()
