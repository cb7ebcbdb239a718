"""How fast the review page lets a cataloguer go: ``artylyze serve --review`` in its own
process, the queue page in Debian's Chromium (Playwright), N reviews by keyboard (Enter to
confirm, every third one picks the second label); the time from the first key press until
the picture of the work after the last is shown. The reviewer's own thinking is not in it:
this is what the software adds to each review.

    python benchmarks/review_pace.py --index idx/ --meta meta.parquet --collection photos/ -n 40

Its events go into a temporary review store (``--review-store``, deleted at the end), so the
collection's own store is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TOKEN = "review-pace-benchmark-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--collection")
    ap.add_argument("-n", type=int, default=40, help="reviews to time")
    args = ap.parse_args()
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "token").write_text(TOKEN)
        port = free_port()
        cmd = [sys.executable, "-c", "from artylyze.cli.main import main; main()", "serve",
               "--port", str(port), "--index", args.index, "--meta", args.meta, "--review",
               "--review-store", f"{tmp}/review.sqlite", "--review-token-file", f"{tmp}/token",
               *(["--collection", args.collection] if args.collection else [])]
        with open(f"{tmp}/serve.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"{url}/healthz", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                            args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/review")
                page.fill("#reviewer", "benchmark")
                page.fill("#token", TOKEN)
                page.wait_for_selector("#work:not([hidden])")
                page.locator("body").click(position={"x": 5, "y": 5})
                start = time.perf_counter()
                for i in range(args.n):
                    page.keyboard.press("2" if i % 3 == 0 else "Enter")
                    page.wait_for_function("n => document.getElementById('progress')"
                                           ".textContent.startsWith(n + ' reviewed')", arg=i + 1)
                    page.wait_for_function("() => { const i = document.getElementById("
                                           "'picture'); return i.complete && i.naturalWidth "
                                           "> 0; }")
                took = time.perf_counter() - start
                browser.close()
        finally:
            proc.terminate()
            proc.wait()
    print(f"{args.n} reviews in {took:.2f} s: {1000 * took / args.n:.0f} ms a review "
          f"(key press to the next work's picture), {3600 * args.n / took:,.0f} an hour at most")


if __name__ == "__main__":
    main()
