"""``artylyze report``: one HTML page on how the styles of a collection relate across time,
place and the index's clusters, with the charts beside it and a few case studies.

Sections: the journey of styles through time; style x period and style x nationality
counts; the clusters ordered by hierarchical clustering with their dendrogram, themes and
closest pairs; what each style draws on (mean GMM membership); and the works with the most
mixed membership, each with its influences and its nearest works of other styles or periods.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.errors import ArtyLyzeError
from artylyze.index import collection_plots as charts
from artylyze.index.collection import (
    Collection,
    chronological,
    closest_pairs,
    cluster_tree,
    crosstab,
    entropy,
    from_index,
    from_meta,
    keep_top_columns,
    mean_membership,
    ordered,
)
from artylyze.index.entries import pretty_artist
from artylyze.index.html import esc, page, write_page
from artylyze.index.search import DISPLAY_FIELDS, Gallery
from artylyze.index.store import MANIFEST_FILE
from artylyze.index.themes import pretty
from artylyze.index.thumbs import data_uri, locate, row_thumbnail, thumbnail
from artylyze.model.manifest import ARTWORK

CASES = 6
NEIGHBOURS = 4
SEARCH_POOL = 64  # nearest works searched to find NEIGHBOURS of other styles or periods
PAIRS = 10
TOP_INFLUENCES = 3
MIN_INFLUENCE = 0.05
NATIONALITY_COLUMNS = 16
THUMB = 150


class ReportError(ArtyLyzeError):
    """The collection cannot make a report (no style labels, conflicting options)."""


def open_collection(source: str | Path, index: str | Path | None = None,
                    labels: str | Path | None = None) -> Collection:
    """An index directory's own works, or a meta.parquet's placed in ``index``'s clusters."""
    if (Path(source) / MANIFEST_FILE).is_file():
        if index is not None:
            raise ReportError(f"{source} is an index directory; --index goes with a "
                              "meta.parquet")
        if labels is not None:
            raise ReportError("--labels goes with a meta.parquet; an index keeps the labels "
                              "it was built with (index build --labels)")
        return from_index(source)
    return from_meta(source, index, labels)


def collection_report(source: str | Path, out: str | Path, index: str | Path | None = None,
                      labels: str | Path | None = None, cases: int = CASES) -> dict[str, Any]:
    """Write ``out/index.html`` and its charts; returns what was written."""
    coll = open_collection(source, index, labels)
    fields, sources = coll.labels()
    if "style" not in fields:
        raise ReportError(f"{source}: no style labels (no ground truth and no style task)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counted = _counted(fields, coll.counted)  # each artwork once, its copies folded
    styles = ordered(counted["style"], _model_labels(coll, "style"))
    parts = [_intro(coll, sources)]
    charts_written = [*_over_time(counted, sources, styles, out, parts),
                      *_over_place(counted, sources, styles, out, parts)]
    order = _clusters(coll, out, parts)
    charts_written.append("affinity_tree.png")
    membership, sizes = mean_membership(counted["style"], styles,
                                        coll.posteriors[coll.counted])
    charts.influences_chart(membership, styles, sizes, order, out / "influences.png")
    charts_written.append("influences.png")
    parts.append(_influences(coll, styles, membership, sizes))
    studies = case_studies(coll, fields, cases)
    parts.append(_cases(coll, studies))
    html = write_page(out / "index.html", page(f"Collection report: {coll.name}", "\n".join(parts)))
    return {"html": html, "works": coll.works, "files": coll.count, "folded": coll.folded,
            "charts": charts_written, "cases": len(studies), "sources": sources}


def _counted(fields: dict[str, list[str | None]],
             keep: np.ndarray) -> dict[str, list[str | None]]:
    """The labels of the works the report counts (one file per artwork)."""
    return {f: [v for v, k in zip(values, keep, strict=True) if k]
            for f, values in fields.items()}


def _over_time(fields: dict[str, list[str | None]], sources: dict[str, str], styles: list[str],
               out: Path, parts: list[str]) -> list[str]:
    """The journey of styles and the style x period heat map (when periods are known)."""
    periods = chronological({p for p in fields.get("period", []) if p})
    if not periods:
        return []
    counts = crosstab(fields["style"], fields["period"], styles, periods)
    charts.journey_chart(counts, styles, periods, sources["period"], out / "journey.png")
    charts.count_heatmap(counts, styles, periods, "Styles by period", "period", "style",
                         out / "style_period.png")
    parts.append(_section("journey", "The journey of styles through time", "journey.png",
                          f"Share of each style among the works of each period (style: "
                          f"{sources['style']}, period: {sources['period']}; the "
                          f"{int(counts.sum()):,} works with both); below, how many works "
                          "each period holds."))
    parts.append(_section("style-period", "Styles by period", "style_period.png",
                          "Works per style and period; colour is the share of the style's "
                          "works."))
    return ["journey.png", "style_period.png"]


def _over_place(fields: dict[str, list[str | None]], sources: dict[str, str], styles: list[str],
                out: Path, parts: list[str]) -> list[str]:
    """The style x nationality heat map (when nationalities are known)."""
    nats = ordered(fields.get("nationality", []))
    if not nats:
        return []
    counts, nats = keep_top_columns(
        crosstab(fields["style"], fields["nationality"], styles, nats), nats,
        NATIONALITY_COLUMNS)
    charts.count_heatmap(counts, styles, nats, "Styles by nationality", "nationality", "style",
                         out / "style_nationality.png")
    parts.append(_section("style-nationality", "Styles by nationality", "style_nationality.png",
                          f"Works per style and nationality ({sources['nationality']}); the "
                          f"{NATIONALITY_COLUMNS - 1} most common nationalities, the rest as "
                          "'other'."))
    return ["style_nationality.png"]


def _model_labels(coll: Collection, task: str) -> tuple[str, ...]:
    for t in (coll.entries.bundle or coll.index.manifest.bundle or {}).get("tasks", []):
        if t.get("name") == task:
            return tuple(t.get("labels", ()))
    return ()


def _section(anchor: str, title: str, image: str, caption: str, extra: str = "") -> str:
    return (f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2><figure><a href="{esc(image)}">'
            f'<img src="{esc(image)}" alt="{esc(title)}"></a><figcaption>{esc(caption)}'
            f"</figcaption></figure>{extra}</section>")


def _intro(coll: Collection, sources: dict[str, str]) -> str:
    man = coll.index.manifest
    where = ("the index's own works" if coll.own_rows else
             f"tagged works placed in the clusters of index <code>{esc(coll.index.path)}</code>")
    labels = ", ".join(f"{esc(f)}: {esc(s)}" for f, s in sources.items())
    return (f"<p>{coll.works:,} works: {where}. Model <code>{esc(man.model_id)}</code>; "
            f"{coll.index.clusters.gmm.k} clusters (Gaussian mixture). Labels: {labels}."
            f"{_copies_note(coll)}{_domain_note(coll)}</p>")


def domain_note(domains: list[str | None]) -> str:
    """How many works the model takes for something other than an artwork (their labels
    stay in the counts: a report shows what the collection holds, not what to trust)."""
    other = Counter(d for d in domains if d is not None and d != ARTWORK)
    if not other:
        return ""
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in other.most_common())
    n = sum(other.values())
    return (f"The model takes {n:,} {'work' if n == 1 else 'works'} for something other than "
            f"an artwork ({kinds}); none of their predicted labels is confident.")


def _domain_note(coll: Collection) -> str:
    rows = coll.entries.rows
    if "domain" not in rows.column_names:
        return ""
    domains = [d for d, k in zip(rows.column("domain").to_pylist(), coll.counted, strict=True)
               if k]
    note = domain_note(domains)
    return f' <span class="domains">{esc(note)}</span>' if note else ""


def copies_note(folded: int, files: int, groups: bool) -> str:
    """What the counts leave out: files that are copies of another work's file."""
    if not folded:
        return ""
    what = ("1 file is a copy of another work and is" if folded == 1 else
            f"{folded:,} files are copies of other works and are")
    how = "same bytes or the same duplicate group" if groups else "same bytes"
    return f"{what} counted once ({files:,} files in all; {how})."


def _copies_note(coll: Collection) -> str:
    note = copies_note(coll.folded, coll.count, "dup_group" in coll.entries.rows.column_names)
    return f' <span class="copies">{esc(note)}</span>' if note else ""


def _clusters(coll: Collection, out: Path, parts: list[str]) -> list[int]:
    """The affinity-tree section; returns the clusters in the tree's order."""
    themes = coll.index.themes["themes"]
    names = [t["name"] for t in themes]
    affinity = np.asarray(coll.index.themes["affinity"], np.float64)
    active = [t["id"] for t in themes if t["size"]]
    order, tree = cluster_tree(affinity, active)
    charts.affinity_tree_chart(affinity, order, tree, names, out / "affinity_tree.png")
    here = np.bincount(coll.posteriors[coll.counted].argmax(axis=1), minlength=len(themes)) \
        if coll.works else np.zeros(len(themes), int)
    rows = "".join(f"<tr><td>{c}</td><td>{esc(names[c])}</td><td>{themes[c]['size']:,}</td>"
                   f"<td>{int(here[c]):,}</td></tr>" for c in order)
    pairs = "".join(f"<tr><td>{a}: {esc(names[a])}</td><td>{b}: {esc(names[b])}</td>"
                    f"<td>{d:.3f}</td></tr>" for a, b, d in closest_pairs(affinity, active, PAIRS))
    tables = ("<h3>Clusters and their themes (dendrogram order)</h3><table><tr><th>cluster</th>"
              "<th>theme</th><th>files in the index</th><th>works here (most likely cluster)"
              f"</th></tr>{rows}</table><h3>Closest pairs of themes</h3><table><tr><th>theme"
              "</th><th>theme</th><th>distance (1 - cosine)</th></tr>" + pairs + "</table>")
    parts.append(_section("clusters", "How the clusters relate", "affinity_tree.png",
                          "Clusters joined bottom-up by the distance between their centroids; "
                          "the matrix is ordered like the tree's leaves, so related themes sit "
                          "in blocks.", tables))
    return order


def _influences(coll: Collection, styles: list[str], membership: np.ndarray,
                sizes: np.ndarray) -> str:
    names = [t["name"] for t in coll.index.themes["themes"]]
    rows = []
    for s, m, n in zip(styles, membership, sizes, strict=True):
        top = [j for j in np.argsort(-m)[:TOP_INFLUENCES] if m[j] >= MIN_INFLUENCE]
        rows.append(f"<tr><td>{esc(pretty(s))}</td><td>{n:,}</td><td>" + "<br>".join(
            f"{m[j]:.0%} {j}: {esc(names[j])}" for j in top) + "</td></tr>")
    table = ("<table><tr><th>style</th><th>works</th><th>draws most on</th></tr>"
             + "".join(rows) + "</table>")
    return _section("influences", "What each style draws on", "influences.png",
                    "Mean membership of each style's works in each cluster: the influences "
                    "of a style as a whole.", table)


def case_studies(coll: Collection, fields: dict[str, list[str | None]],
                 count: int = CASES) -> list[dict[str, Any]]:
    """The works with the most mixed membership (highest entropy), one per pair of top
    clusters so the cases differ, each with influences and nearest works of other styles or
    periods."""
    if count <= 0 or coll.count == 0:
        return []
    mixed = entropy(coll.posteriors)
    gallery = Gallery(coll.index)
    names = [t["name"] for t in coll.index.themes["themes"]]
    studies, seen = [], set()
    for work in np.argsort(-mixed, kind="stable"):
        if not coll.counted[work]:
            continue  # a copy: its work is a case already, or could be
        share = coll.posteriors[work]
        top = [int(j) for j in np.argsort(-share)[:4] if share[j] >= MIN_INFLUENCE]
        if tuple(top[:2]) in seen:
            continue
        seen.add(tuple(top[:2]))
        mine = {f: fields[f][work] for f in ("style", "period") if f in fields}
        others = []
        for row, score in coll.neighbours(int(work), SEARCH_POOL):
            entry = gallery.entry(row)
            differs = [f for f, v in mine.items()  # an unknown label differs from nothing
                       if v is not None and entry.get(f) and entry.get(f) != v]
            if differs:
                others.append({"row": row, "score": score, "differs": differs, **entry})
            if len(others) == NEIGHBOURS:
                break
        studies.append({"work": int(work), "entropy": float(mixed[work]),
                        "labels": {f: v[work] for f, v in fields.items()},
                        "influences": [{"cluster": j, "name": names[j],
                                        "share": float(share[j])} for j in top],
                        "neighbours": others})
        if len(studies) == count:
            break
    return studies


def _work_thumb(coll: Collection, work: int) -> str:
    """A work's picture: the index's (packed, or its file) when the works are its rows."""
    if coll.own_rows:
        return _index_thumb(coll, work)
    path = coll.entries.rows.column("path")[work].as_py()
    return data_uri(thumbnail(locate(coll.entries.root, path), THUMB))


def _index_thumb(coll: Collection, row: int) -> str:
    return data_uri(row_thumbnail(coll.index, row, THUMB))


def _cases(coll: Collection, studies: list[dict[str, Any]]) -> str:
    rows = coll.entries.rows
    blocks = []
    for s in studies:
        w = s["work"]
        path = rows.column("path")[w].as_py()
        title = (rows.column("title")[w].as_py() if "title" in rows.column_names else None
                 ) or Path(path).name
        artist = pretty_artist(s["labels"].get("artist"))
        labels = " · ".join(esc(pretty(str(s["labels"][f]))) for f in DISPLAY_FIELDS
                            if s["labels"].get(f))
        infl = "".join(f'<div class="bar"><span style="width:{100 * i["share"]:.0f}%"></span>'
                       f'{i["share"]:.0%} {i["cluster"]}: {esc(i["name"])}</div>'
                       for i in s["influences"])
        near = "".join(
            f'<div class="card"><img src="{_index_thumb(coll, n["row"])}" '
            f'alt="{esc(n["path"])}"><div><b>{esc(n.get("title") or Path(n["path"]).name)}</b><br>'
            f'{esc(n.get("artist") or "")}<br>{esc(pretty(str(n.get("style") or "")))} · '
            f'{esc(n.get("period") or "")}<br><span class="muted">similarity {n["score"]:.2f}'
            f"; other {esc(' and '.join(n['differs']))}</span></div></div>"
            for n in s["neighbours"])
        blocks.append(
            f'<div class="case"><div class="card"><img src="{_work_thumb(coll, w)}" '
            f'alt="{esc(path)}"><div><b>{esc(title)}</b><br>{esc(artist or "")}<br>{labels}<br>'
            f'<span class="muted">{esc(path)}</span></div></div><div class="why"><h3>Draws on'
            f' (membership entropy {s["entropy"]:.2f})</h3>{infl}<h3>Nearest works of other '
            f'styles or periods</h3><div class="results">{near or "none found"}</div></div>'
            "</div>")
    return ('<section id="cases"><h2>Case studies: the most mixed works</h2><p>Works whose '
            "membership is spread over the most clusters (normalized entropy: 0 = one cluster, "
            "1 = all alike), one per pair of leading clusters.</p>" + "".join(blocks)
            + "</section>")
