"""meta.parquet of a IIIF run -> W3C Web Annotations a IIIF viewer shows (Presentation 3).

Per manifest, in ``OUT_DIR/<key>/`` (``key``: 16 hex digits of the manifest id's sha256):

- ``annotations.json``: an AnnotationPage with one Annotation per canvas and task, motivation
  ``tagging`` (Mirador lists these) or ``classifying``, a ``TextualBody`` holding the label,
  ``creator`` the software, ``generated`` the time, ``created`` when the canvas was tagged,
  ``target`` the canvas; the score, task and model in ArtyLyze's extension terms
  (``artylyze:score``...; their JSON-LD context is ``OUT_DIR/context.json``, listed before
  the Presentation 3 context as the IIIF extension rules ask).
- ``manifest.json``: a copy of the source manifest (Presentation 3 only) whose canvases
  list that page in ``annotations``, with its id under ``--base-url``.

Plus ``collection.json`` listing the copies. Everything is built and then read back with
``iiif-prezi3``, the IIIF community's models. Only labels the model is sure of go out (the
``<task>_confident`` flag where the model has one, else ``min_score``): an annotation is
published data. Human-reviewed labels will take precedence once the review store lands.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from artylyze import __version__
from artylyze.atomic import atomic_write_text
from artylyze.errors import ArtyLyzeError
from artylyze.metadata.metafile import open_meta
from artylyze.options import Write as O
from artylyze.store import IIIF_COLUMNS, META_BUNDLE

MOTIVATIONS = ("tagging", "classifying")
NS = "urn:artylyze:iiif:"  # not dereferenceable: the terms are described in docs/iiif.md
PRESENTATION3 = "http://iiif.io/api/presentation/3/context.json"
CONTEXT_FILE = "context.json"  # the extension's JSON-LD context, written beside the pages
CREATOR = {"id": "https://pypi.org/project/artylyze/", "type": "Software",
           "name": f"ArtyLyze {__version__}"}


class IiifWriteError(ArtyLyzeError):
    """meta.parquet holds no IIIF rows, or the options are wrong."""


@dataclass
class IiifWriteReport:
    manifests: int = 0
    annotations: int = 0
    canvases: int = 0
    skipped: int = 0  # error rows, and labels below the bar
    copies: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (manifest, why no copy)


@dataclass
class _Canvas:
    id: str
    labels: list[tuple[str, str, float]]  # (task, label, score)
    created: datetime | None


def manifest_key(manifest_id: str) -> str:
    return hashlib.sha256(manifest_id.encode()).hexdigest()[:16]


def write_iiif(meta_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               base_url: str | None = None, motivation: str = O.motivation.default,
               min_score: float = O.min_score.default, fetcher: Any = None) -> IiifWriteReport:
    """Write the pages and manifest copies (see the module docstring) under ``out_dir``.
    ``fetcher``: an :class:`artylyze.iiif.fetch.Fetcher` for manifests read over http(s)."""
    if motivation not in MOTIVATIONS:
        raise IiifWriteError(f"motivation must be one of {MOTIVATIONS}, got {motivation!r}")
    meta = open_meta(meta_path)
    missing = [c for c in ("iiif_manifest", "iiif_manifest_source") if c not in meta.names]
    if missing:
        raise IiifWriteError(f"{meta_path} was not made from a IIIF document (no {missing[0]} "
                             "column): tag a IIIF Manifest or Collection first")
    out = Path(out_dir)
    base = (base_url or out.resolve().as_uri()).rstrip("/")
    model = _model_id(meta.schema.metadata or {})
    groups, sources, report = _group(meta, min_score)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for mid, canvases in groups.items():
        key = manifest_key(mid)
        page_url = f"{base}/{key}/annotations.json"
        (out / key).mkdir(parents=True, exist_ok=True)
        page = build_page(page_url, canvases, motivation, model, generated,
                          f"{base}/{CONTEXT_FILE}")
        atomic_write_text(out / key / "annotations.json", json.dumps(page, ensure_ascii=False,
                                                                     indent=1))
        report.manifests += 1
        report.canvases += len(canvases)
        report.annotations += len(page["items"])
        try:
            source = _read_source(sources[mid], fetcher)
            copy = annotated_copy(source, f"{base}/{key}/manifest.json", page_url,
                                  {c.id for c in canvases})
        except (ArtyLyzeError, OSError, ValueError) as e:
            report.failed.append((mid, str(e)))
            continue
        atomic_write_text(out / key / "manifest.json", json.dumps(copy, ensure_ascii=False,
                                                                  indent=1))
        report.copies += 1
    _collection(out, base, groups, report)
    atomic_write_text(out / CONTEXT_FILE, json.dumps({"@context": {"artylyze": NS}}, indent=1))
    return report


def _model_id(meta: dict[bytes, bytes]) -> str | None:
    try:
        return json.loads(meta[META_BUNDLE]).get("model_id")
    except (KeyError, ValueError, AttributeError):
        return None


def _group(meta, min_score: float):
    tasks = meta.tasks
    cols = ["path", "status", "tagged_at", *IIIF_COLUMNS[:1], "iiif_manifest_source",
            *tasks, *(f"{t}_score" for t in tasks),
            *(f"{t}_confident" for t in tasks if f"{t}_confident" in meta.names)]
    groups: dict[str, list[_Canvas]] = defaultdict(list)
    sources: dict[str, str] = {}
    report = IiifWriteReport()
    for table in meta.batches(cols):
        for row in table.to_pylist():
            mid = row["iiif_manifest"]
            if row["status"] != "ok" or not mid:
                report.skipped += 1
                continue
            sources.setdefault(mid, row["iiif_manifest_source"])
            labels = []
            for t in tasks:
                label, score = row[t], row[f"{t}_score"]
                sure = row.get(f"{t}_confident")
                if label is None or not (sure if sure is not None else score >= min_score):
                    report.skipped += 1
                    continue
                labels.append((t, label, float(score)))
            groups[mid].append(_Canvas(row["path"], labels, row["tagged_at"]))
    return groups, sources, report


def build_page(page_url: str, canvases: list[_Canvas], motivation: str, model: str | None,
               generated: str, context_url: str) -> dict[str, Any]:
    """The AnnotationPage, built with iiif-prezi3, then ArtyLyze's extension terms added."""
    from iiif_prezi3 import Annotation, AnnotationPage, TextualBody

    items, ext = [], []
    for i, c in enumerate(canvases):
        for task, label, score in c.labels:
            kwargs = {"created": c.created.isoformat(timespec="seconds")} if c.created else {}
            items.append(Annotation(
                id=f"{page_url.removesuffix('.json')}/{i}/{task}", motivation=motivation,
                body=TextualBody(type="TextualBody", value=label, format="text/plain",
                                 purpose=motivation),
                target=c.id, creator=CREATOR, generated=generated, **kwargs))
            ext.append({"artylyze:task": task, "artylyze:score": round(score, 4),
                        "artylyze:model": model, "artylyze:source": "model"})
    page = json.loads(AnnotationPage(id=page_url, items=items).json())
    for anno, terms in zip(page["items"], ext, strict=True):
        anno.update(terms)
        anno["creator"] = CREATOR  # prezi3 normalises the URL with a trailing slash
    page["@context"] = [context_url, PRESENTATION3]
    AnnotationPage(**page)  # read back: a page prezi3 cannot load is a bug, not output
    return page


def _read_source(source: str, fetcher: Any) -> dict[str, Any]:
    if "://" in source:
        if fetcher is None:
            from artylyze.iiif.fetch import Fetcher

            with Fetcher() as f:
                return json.loads(f.get(source, accept="application/ld+json").content)
        return json.loads(fetcher.get(source, accept="application/ld+json").content)
    return json.loads(Path(source).read_text(encoding="utf-8"))


def annotated_copy(source: dict[str, Any], copy_id: str, page_url: str,
                   canvas_ids: set[str]) -> dict[str, Any]:
    """The manifest with its tagged canvases listing the page; loaded and written by
    iiif-prezi3, so what it cannot read is refused (ValueError) rather than published."""
    from iiif_prezi3 import Manifest

    if "presentation/3" not in json.dumps(source.get("@context", "")):
        raise ValueError("not a Presentation 3 manifest: only the AnnotationPage is written "
                         "(a 2.1 manifest cannot list it)")
    data = json.loads(json.dumps(source))
    data["id"] = copy_id
    ref = {"id": page_url, "type": "AnnotationPage"}
    for canvas in data.get("items", []):
        if canvas.get("id") in canvas_ids:
            canvas["annotations"] = [a for a in canvas.get("annotations", [])
                                     if a.get("id") != page_url] + [ref]
    try:
        return json.loads(Manifest(**data).json())
    except Exception as e:  # pydantic's ValidationError, whatever the source got wrong
        raise ValueError(f"iiif-prezi3 cannot load it: {str(e)[:300]}") from e


def _collection(out: Path, base: str, groups: dict[str, list[_Canvas]],
                report: IiifWriteReport) -> None:
    from iiif_prezi3 import Collection, ManifestRef

    refs = [ManifestRef(id=f"{base}/{manifest_key(mid)}/manifest.json", type="Manifest",
                        label={"none": [mid]})
            for mid in groups if (out / manifest_key(mid) / "manifest.json").is_file()]
    coll = Collection(id=f"{base}/collection.json", label={"en": ["ArtyLyze annotations"]},
                      items=refs)
    atomic_write_text(out / "collection.json", coll.json(indent=1))
