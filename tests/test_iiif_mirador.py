"""A real IIIF viewer shows the tags: Mirador (npm package ``mirador``, its browser build
fetched by scripts/get_mirador.sh, which scripts/test.sh runs) loads the annotated manifest
copy from a loopback server in headless Chromium; the annotation panel of a canvas lists
exactly that canvas's published labels."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
from browser import CHROMIUM
from iiif_support import BUNDLE, small_site
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.metadata.iiif_annotations import manifest_key

MIRADOR = Path(__file__).resolve().parents[1] / ".mirador" / "mirador.min.js"
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>ArtyLyze in Mirador</title>
<style>html,body{{margin:0;height:100%}} #m{{position:absolute;inset:0}}</style></head>
<body><div id="m"></div><script src="mirador.min.js"></script><script>
Mirador.viewer({{id: "m", windows: [{{manifestId: "{manifest}", canvasId: "{canvas}"}}],
  window: {{sideBarOpen: true, defaultSideBarPanel: "annotations", allowClose: false}},
  workspaceControlPanel: {{enabled: false}}}});
</script></body></html>
"""
RENOIR = "pierre-auguste-renoir_bather-1905"


def test_mirador_shows_the_tags_of_the_canvas(tmp_path: Path) -> None:
    assert MIRADOR.is_file(), "Mirador is missing: run scripts/get_mirador.sh (needs npm)"
    assert CHROMIUM, "no chromium on PATH (apt-get install chromium)"
    server, _ = small_site(tmp_path)
    try:
        u = server.url
        meta = tmp_path / "meta.parquet"
        runner = CliRunner()
        r = runner.invoke(app, ["tag", f"{u}/m3.json", "--out", str(meta), "--model",
                                str(BUNDLE), "-q"])
        assert r.exit_code == 0, r.output
        www = tmp_path / "www"
        r = runner.invoke(app, ["write", str(meta), "--iiif", str(www / "anno"), "--base-url",
                                f"{u}/anno"])
        assert r.exit_code == 0, r.output
        shutil.copyfile(MIRADOR, www / "mirador.min.js")
        key = manifest_key(f"{u}/m3.json")
        canvas = f"{u}/c3/{RENOIR}"
        (www / "index.html").write_text(PAGE.format(
            manifest=f"{u}/anno/{key}/manifest.json", canvas=canvas))
        page = json.loads((www / "anno" / key / "annotations.json").read_text())
        mine = [a["body"]["value"] for a in page["items"] if a["target"] == canvas]
        others = {a["body"]["value"] for a in page["items"] if a["target"] != canvas}
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={tmp_path}/profile",
             "--virtual-time-budget=20000", "--window-size=1280,900", "--dump-dom",
             f"{u}/index.html"], capture_output=True, text=True, timeout=180)
    finally:
        server.close()
    text = html.unescape(re.sub(r"<[^>]+>", "\n", done.stdout))
    shown = {line.strip() for line in text.splitlines() if line.strip()}
    assert len(mine) >= 2, page  # the shipped model is sure of the Renoir's style and artist
    assert f"Showing {len(mine)} annotations" in shown, done.stdout[-3000:]
    assert set(mine) <= shown
    assert not (others - set(mine)) & shown  # no other canvas's tags
    row = next(r for r in pq.read_table(meta).to_pylist() if r["path"] == canvas)
    assert row["style"] in mine  # what meta.parquet says is what the viewer shows
