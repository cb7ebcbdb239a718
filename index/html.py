"""HTML pages: every name and label goes through ``esc`` (file names are untrusted text), and
thumbnails are inline JPEGs so a page stands alone."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artylyze.atomic import atomic_write
from artylyze.index.search import not_artwork
from artylyze.index.thumbs import data_uri, row_thumbnail, thumbnail

if TYPE_CHECKING:
    from artylyze.index.store import IndexDir

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.query{display:flex;gap:1.5em;align-items:flex-start;margin-bottom:2.5em;
 border-bottom:1px solid #ddd;padding-bottom:1.5em}
.card{width:170px;font-size:12px;line-height:1.3;overflow-wrap:anywhere}
.card img{width:160px;height:160px;object-fit:contain;background:#f3f3f3;display:block}
.results{display:flex;flex-wrap:wrap;gap:12px}
.q{flex:0 0 auto;border-right:2px solid #888;padding-right:1.5em}
figure{margin:0 0 1em}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:14px;max-width:70em}
.case{display:flex;gap:1.5em;align-items:flex-start;border-top:1px solid #ddd;padding:1em 0}
.why{flex:1;min-width:0}.why h3{font-size:15px;margin:.2em 0 .5em}
.bar{position:relative;z-index:0;font-size:13px;padding:2px 6px;margin:3px 0;max-width:32em;
 background:#f1f1f1}
.bar span{position:absolute;left:0;top:0;bottom:0;background:#c9d8ec;z-index:-1}
.muted{color:#777}
.notice{display:block;margin:3px 0;color:#8a4b00;background:#fff3d6;padding:2px 6px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
"""


def esc(value: Any) -> str:
    """HTML-escape any value, quotes included (safe in text and in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n")


def write_page(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def _card(img_src: str, lines: list[str], alt: str) -> str:
    text = "<br>".join(lines)
    return f'<div class="card"><img src="{esc(img_src)}" alt="{esc(alt)}"><div>{text}</div></div>'


def _labels(entry: dict[str, Any]) -> list[str]:
    keys = ("style", "genre", "nationality", "period")
    shown = [esc(str(entry[k]).replace("_", " ")) for k in keys if entry.get(k)]
    return [" · ".join(shown)] if shown else []


def similar_page(answers: list[dict[str, Any]], index: IndexDir,
                 title: str = "Similar artworks", thumb: int = 160) -> str:
    """One block per query: its thumbnail and predicted labels beside its results."""
    blocks = []
    for answer in answers:
        qfile = answer.get("file")
        qrow = answer.get("id")
        qimg = thumbnail(qfile, thumb) if qfile or qrow is None else row_thumbnail(index, qrow,
                                                                                   thumb)
        qthumb = data_uri(qimg)
        preds = [f"{esc(t)}: {esc(str(p[0]['label']).replace('_', ' '))}"
                 for t, p in answer.get("predicted", {}).items() if p]
        notice = not_artwork(answer.get("estimated") or {})
        qcard = _card(qthumb, [f"<b>{esc(answer['query'])}</b>",
                               f"<span class=\"muted\">{esc(answer['source'])}</span>",
                               *([f'<span class="notice">{esc(notice)}</span>'] if notice else []),
                               *preds], answer["query"])
        cards = []
        for r in answer["results"]:
            src = data_uri(row_thumbnail(index, r["id"], thumb))
            who = ", ".join(esc(v) for v in (r.get("artist"), r.get("year")) if v)
            copies = r.get("copies_count") or 0
            more = [f"<span class=\"muted\">+{copies} {'copy' if copies == 1 else 'copies'}"
                    "</span>"] if copies else []
            name = r.get("title") or Path(r["path"]).name  # no title: the file's name
            cards.append(_card(src, [f"#{r['rank']} · {r['score']:.3f}",
                                     f"<b>{esc(name)}</b>", *more, who, *_labels(r),
                                     f"<span class=\"muted\">{esc(r['path'])}</span>"], r["path"]))
        blocks.append(f'<div class="query"><div class="q">{qcard}</div>'
                      f'<div class="results">{"".join(cards)}</div></div>')
    return page(title, "\n".join(blocks))
