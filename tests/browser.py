"""Render a page in headless Chromium and report what a reader would see broken: images that
did not load and anything written to the console (our pages have no scripts, so any console
line is an error: a failed load, a parse error).

The page is opened inside an iframe of a small wrapper page; Chromium's
``--allow-file-access-from-files`` lets the wrapper read the iframe's images after load, and
``--dump-dom`` prints the wrapper with the result. Console lines come from Chromium's log.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                        "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000"]
WRAPPER = """<!DOCTYPE html><html><body><iframe id="f" src="{src}" width="1400" height="900">
</iframe><script>
window.addEventListener("load", () => {{
  let r;
  try {{
    const imgs = [...document.getElementById("f").contentDocument.images];
    r = {{images: imgs.length, broken: imgs.filter(i => !i.complete || i.naturalWidth === 0)
                                      .map(i => i.getAttribute("src").slice(0, 80))}};
  }} catch (e) {{ r = {{error: String(e)}}; }}
  const p = document.createElement("pre"); p.id = "result"; p.textContent = JSON.stringify(r);
  document.body.appendChild(p);
}});
</script></body></html>
"""
RESULT = re.compile(r'<pre id="result">(.*?)</pre>', re.S)
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


def render(page: Path, timeout: float = 180) -> dict:
    """``{"images": n, "broken": [src...], "console": [line...]}`` for ``page``."""
    if CHROMIUM is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "wrapper.html"
        wrapper.write_text(WRAPPER.format(src=Path(page).resolve().as_uri()))
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp}/profile",
                               "--dump-dom", wrapper.as_uri()],
                              capture_output=True, text=True, timeout=timeout)
    found = RESULT.search(done.stdout)
    if found is None:
        raise RuntimeError(f"chromium gave no result (exit {done.returncode}): "
                           f"{done.stderr[-2000:]}")
    result = json.loads(html.unescape(found.group(1)))
    result["console"] = CONSOLE.findall(done.stderr)
    return result
