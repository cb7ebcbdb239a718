"""``clusters report``: elbow and metrics, a contact sheet per cluster, the affinity heat map,
and one HTML page that links them, all from what the index directory already holds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from artylyze.atomic import atomic_write
from artylyze.index.html import esc, page, write_page
from artylyze.index.plots import affinity_chart, elbow_chart
from artylyze.index.store import IndexDir, load_index_dir
from artylyze.index.thumbs import fit_tile, grey_tile, row_image

SHEET_COLS = 6
SHEET_ROWS = 2
TILE = 128
HEADER = 28


def typical_members(index: IndexDir, cluster: int, limit: int) -> list[int]:
    """The members the mixture is surest about: what a cluster looks like at its core."""
    assign = np.asarray(index.rows.column("cluster").to_numpy())
    members = np.flatnonzero(assign == cluster)
    if len(members) == 0:
        return []
    post = index.clusters.gmm.posteriors(index.clusters.coords[members].astype(np.float32))
    order = np.argsort(-post[:, cluster], kind="stable")
    return [int(members[i]) for i in order[:limit]]


def contact_sheet(index: IndexDir, cluster: int, name: str, path: Path) -> tuple[Path, int]:
    """A grid of the cluster's most typical images under its theme name; missing images are
    grey tiles. Returns the file and how many images were missing."""
    rows = typical_members(index, cluster, SHEET_COLS * SHEET_ROWS)
    sheet = Image.new("RGB", (SHEET_COLS * TILE, SHEET_ROWS * TILE + HEADER), (255, 255, 255))
    ImageDraw.Draw(sheet).text((6, 8), f"{cluster}: {name}"[:120], fill=(0, 0, 0))
    missing = 0
    for i, row in enumerate(rows):
        img = row_image(index, row, TILE)
        missing += img is None
        tile = fit_tile(img or grey_tile(TILE), TILE)
        sheet.paste(tile, ((i % SHEET_COLS) * TILE, HEADER + (i // SHEET_COLS) * TILE))
    buf = io.BytesIO()
    sheet.save(buf, "JPEG", quality=85)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path, missing


def _metrics_table(themes: dict[str, Any]) -> str:
    km = themes["kmeans"]
    head = "<tr><th>k</th><th>inertia</th><th>silhouette</th><th>Davies-Bouldin</th></tr>"
    body = "".join(
        f"<tr><td>{r['k']}{' ◀' if r['k'] == km['k'] else ''}</td><td>{r['inertia']:.1f}</td>"
        f"<td>{r.get('silhouette', float('nan')):.3f}</td>"
        f"<td>{r.get('davies_bouldin', float('nan')):.3f}</td></tr>" for r in km["sweep"])
    gmm = themes["gmm"]
    bic = "".join(f"<tr><td>{r['k']}{' ◀' if r['k'] == gmm['k'] else ''}</td>"
                  f"<td>{r['bic']:.1f}</td></tr>" for r in gmm["sweep"])
    return (f"<h2>KMeans sweep (k={km['k']}, {esc(km['chosen_by'])})</h2><table>{head}{body}"
            f"</table><h2>Gaussian mixture (k={gmm['k']}, {esc(gmm['chosen_by'])}, "
            f"{esc(gmm['covariance'])} covariance, {gmm['dims']} PCA dims)</h2>"
            f"<table><tr><th>k</th><th>BIC</th></tr>{bic}</table>")


def _theme_rows(themes: list[dict[str, Any]], sheets: dict[int, str]) -> str:
    rows = []
    for t in themes:
        labels = "<br>".join(
            f"<b>{esc(f)}</b> ({esc(v['source'])}): " + ", ".join(
                f"{esc(x['label'])} {x['share']:.0%}" for x in v["top"][:3])
            for f, v in t["labels"].items() if v["top"])
        closest = ", ".join(f"{c['id']}: {esc(c['name'])} ({c['similarity']:.2f})"
                            for c in t.get("closest", []))
        sheet = (f'<a href="{esc(sheets[t["id"]])}"><img src="{esc(sheets[t["id"]])}" '
                 f'width="384" alt="cluster {t["id"]}"></a>' if t["id"] in sheets else "")
        rows.append(f"<tr><td>{t['id']}</td><td><b>{esc(t['name'])}</b><br>{t['size']} "
                    f"members</td><td>{labels}</td><td>{closest}</td><td>{sheet}</td></tr>")
    return ("<h2>Clusters and their themes</h2><table><tr><th>id</th><th>theme</th>"
            "<th>labels</th><th>closest</th><th>typical members</th></tr>"
            + "".join(rows) + "</table>")


def clusters_report(index_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the report into ``out``; returns what was written and how many images were
    missing (drawn as grey tiles)."""
    index = load_index_dir(index_dir)
    out = Path(out)
    (out / "clusters").mkdir(parents=True, exist_ok=True)
    doc = index.themes
    themes = doc["themes"]
    names = [t["name"] for t in themes]
    elbow_chart(doc["kmeans"], doc["gmm"], out / "elbow.png")
    affinity_chart(np.asarray(doc["affinity"], np.float32), names, out / "affinity.png")
    sheets, missing = {}, 0
    for t in themes:
        if t["size"]:
            file, miss = contact_sheet(index, t["id"], t["name"],
                                       out / "clusters" / f"cluster_{t['id']:03d}.jpg")
            sheets[t["id"]] = f"clusters/{file.name}"
            missing += miss
    man = index.manifest
    sources = ", ".join(f"{k}: {v}" for k, v in doc["label_sources"].items())
    intro = (f"<p>{man.count} artworks from <code>{esc(man.source.get('parquet'))}</code>, "
             f"model <code>{esc(man.model_id)}</code>, index {esc(man.index_type)}. "
             f"Labels per field: {esc(sources)}."
             f"</p><p><a href=\"elbow.png\"><img src=\"elbow.png\" width=\"900\" alt=\"elbow\">"
             f"</a></p>")
    body = (intro + _metrics_table(doc)
            + '<h2>Affinity between clusters</h2><p><a href="affinity.png"><img src="affinity.png"'
              ' width="700" alt="affinity heat map"></a></p>' + _theme_rows(themes, sheets))
    html_file = write_page(out / "index.html", page(f"Clusters of {index.path.name}", body))
    return {"html": html_file, "clusters": len(themes), "sheets": len(sheets),
            "missing_images": missing}
