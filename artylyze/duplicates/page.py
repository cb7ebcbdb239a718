"""The registrar's page: one contact sheet per group, keeper first, each file with its size,
sharpness and similarity, so a person decides what to keep (nothing is deleted by ArtyLyze).
Names are untrusted text and go through ``esc``; thumbnails are inline, so the page stands
alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from PIL import Image

from artylyze.duplicates.groups import KEEPER_RULE
from artylyze.index.html import esc, page, write_page
from artylyze.index.thumbs import data_uri, grey_tile

GROUP_STYLE = """
.groups{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.group{border:1px solid #ddd;border-radius:4px;padding:.5em .7em}
.group h3{font-size:14px;margin:.1em 0 .5em}
.sheet{display:flex;flex-wrap:wrap;gap:12px}.keep img{outline:3px solid #2a7d2a}
.tag{font-size:11px;padding:1px 5px;border-radius:3px;background:#eee}
.tag.exact{background:#f6d7a7}.tag.near{background:#c9d8ec}.tag.keeper{background:#bfe3bf}
"""


def group_rows(table: pa.Table) -> list[list[dict]]:
    """The table's rows, grouped, keeper first (as written)."""
    out: dict[int, list[dict]] = {}
    for row in table.to_pylist():
        out.setdefault(row["group"], []).append(row)
    return list(out.values())


def _card(row: dict, thumb: Image.Image) -> str:
    size = f"{row['width']} x {row['height']} px" if row.get("width") else "size unknown"
    sim = "" if row["keeper"] else f" · similarity {row['similarity']:.3f}"
    chk = "" if row["keeper"] or row.get("check") in (None, 0) else \
        f" · check {row['check']:.2f}"
    sharp = f" · sharpness {row['sharpness']:.0f}" if row.get("sharpness") is not None else ""
    kind = row["member_kind"]
    return (f'<div class="card{" keep" if row["keeper"] else ""}">'
            f'<img src="{esc(data_uri(thumb))}" alt="{esc(row["path"])}">'
            f'<div><span class="tag {esc(kind)}">{esc(kind)}</span>{esc(sim)}{esc(chk)}<br>'
            f'{esc(size)}{esc(sharp)}<br><span class="muted">{esc(row["path"])}</span>'
            f'</div></div>')


def groups_html(table: pa.Table, thumb: Callable[[str], Image.Image | None],
                title: str = "Duplicate groups", limit: int = 500) -> str:
    """The page: a summary line, then one sheet per group (the first ``limit`` groups)."""
    groups = group_rows(table)
    files = sum(len(g) for g in groups)
    head = (f"<p>{len(groups)} groups, {files} files, {files - len(groups)} of them copies of "
            f"a kept file. Suggested keeper (green): {esc(KEEPER_RULE)}. "
            "<span class=\"tag exact\">exact</span> same bytes, "
            "<span class=\"tag near\">near</span> same work, another file.</p>")
    blocks = []
    for g in groups[:limit]:
        cards = "".join(_card(r, thumb(r["path"]) or grey_tile(160)) for r in g)
        blocks.append(f'<div class="group"><h3>group {g[0]["group"]} · {esc(g[0]["kind"])} · '
                      f'{len(g)} files</h3><div class="sheet">{cards}</div></div>')
    if len(groups) > limit:
        blocks.append(f"<p class=\"muted\">{len(groups) - limit} more groups in the table.</p>")
    body = head + '<div class="groups">' + "\n".join(blocks) + "</div>"
    return page(title, body).replace("</style>", GROUP_STYLE + "</style>", 1)


def write_groups_html(path: str | Path, table: pa.Table,
                      thumb: Callable[[str], Image.Image | None]) -> Path:
    return write_page(path, groups_html(table, thumb))
