"""meta.parquet of a IIIF run -> W3C Web Annotations a IIIF viewer shows (Presentation 3).

Per manifest, in ``OUT_DIR/<key>/`` (``key``: 16 hex digits of the manifest id's sha256):

- ``annotations.json``: an AnnotationPage with one Annotation per canvas and task, motivation
  ``tagging`` (Mirador lists these) or ``classifying``, a ``TextualBody`` holding the label,
  ``creator`` the software, ``generated`` the time, ``created`` when the canvas was tagged,
  ``target`` the canvas; the score, task and model in ArtyLyze's extension terms
  (``artylyze:score``...; their JSON-LD context is ``OUT_DIR/context.json``, listed before
  the Presentation 3 context as the IIIF extension rules ask).
- ``canvas/<n>.json``: the same annotations, one page per canvas (n: its place in the
  manifest's rows): a viewer lists every annotation of a page it is given on the canvas
  that references it, whatever their targets (Mirador 4 does), so each canvas gets its own;
- ``manifest.json``: a copy of the source manifest (Presentation 3 only) whose canvases
  list their page in ``annotations``, with its id under ``--base-url``.

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


class NotPresentation3(ValueError):
    """A 2.1 manifest: its canvases cannot list a Presentation 3 AnnotationPage."""


@dataclass
class IiifWriteReport:
    manifests: int = 0
    annotations: int = 0
    canvases: int = 0
    skipped: int = 0  # error rows, and labels below the bar
    copies: int = 0
    v2: int = 0  # Presentation 2.1 manifests: page only, no copy (2.1 cannot list it)
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
        (out / key / "canvas").mkdir(parents=True, exist_ok=True)
        context = f"{base}/{CONTEXT_FILE}"
        numbered = list(enumerate(canvases))
        page = build_page(page_url, numbered, motivation, model, generated, context,
                          f"{base}/{key}/annotations")
        _write_json(out / key / "annotations.json", page)
        pages: dict[str, str] = {}
        for i, c in numbered:
            pages[c.id] = f"{base}/{key}/canvas/{i}.json"
            _write_json(out / key / "canvas" / f"{i}.json",
                        build_page(pages[c.id], [(i, c)], motivation, model, generated, context,
                                   f"{base}/{key}/annotations"))
        report.manifests += 1
        report.canvases += len(canvases)
        report.annotations += len(page["items"])
        try:
            source = _read_source(sources[mid], fetcher)
            copy = annotated_copy(source, f"{base}/{key}/manifest.json", pages)
        except NotPresentation3:
            report.v2 += 1
            continue
        except (ArtyLyzeError, OSError, ValueError) as e:
            report.failed.append((mid, str(e)))
            continue
        _write_json(out / key / "manifest.json", copy)
        report.copies += 1
    _collection(out, base, groups, report)
    atomic_write_text(out / CONTEXT_FILE, json.dumps({"@context": {"artylyze": NS}}, indent=1))
    return report


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1))


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


def build_page(page_url: str, canvases: list[tuple[int, _Canvas]], motivation: str,
               model: str | None, generated: str, context_url: str,
               anno_base: str) -> dict[str, Any]:
    """The AnnotationPage, built with iiif-prezi3, then ArtyLyze's extension terms added."""
    from iiif_prezi3 import Annotation, AnnotationPage, TextualBody

    items, ext = [], []
    for i, c in canvases:
        for task, label, score in c.labels:
            kwargs = {"created": c.created.isoformat(timespec="seconds")} if c.created else {}
            items.append(Annotation(
                id=f"{anno_base}/{i}/{task}", motivation=motivation,
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


def annotated_copy(source: dict[str, Any], copy_id: str,
                   pages: dict[str, str]) -> dict[str, Any]:
    """The manifest with each tagged canvas listing its page (``pages``: canvas id -> page
    URL); loaded and written by iiif-prezi3, so what it cannot read is refused (ValueError)
    rather than published."""
    from iiif_prezi3 import Manifest

    if "presentation/3" not in json.dumps(source.get("@context", "")):
        raise NotPresentation3("only the AnnotationPage is written for a 2.1 manifest")
    data = json.loads(json.dumps(source))
    data["id"] = copy_id
    ours = set(pages.values())
    for canvas in data.get("items", []):
        if canvas.get("id") in pages:
            canvas["annotations"] = [a for a in canvas.get("annotations", [])
                                     if a.get("id") not in ours] + [
                {"id": pages[canvas["id"]], "type": "AnnotationPage"}]
    try:
        copy = json.loads(Manifest(**data).json())
    except Exception as e:  # pydantic's ValidationError, whatever the source got wrong
        raise ValueError(f"iiif-prezi3 cannot load it: {str(e)[:300]}") from e
    for canvas in copy.get("items", []):  # prezi3 writes the reference with "items": [],
        for a in canvas.get("annotations", []):  # which a viewer reads as an empty page
            if a.get("id") in ours and not a.get("items"):
                a.pop("items", None)
    return copy


def _collection(out: Path, base: str, groups: dict[str, list[_Canvas]],
                report: IiifWriteReport) -> None:
    from iiif_prezi3 import Collection, ManifestRef

    refs = [ManifestRef(id=f"{base}/{manifest_key(mid)}/manifest.json", type="Manifest",
                        label={"none": [mid]})
            for mid in groups if (out / manifest_key(mid) / "manifest.json").is_file()]
    coll = Collection(id=f"{base}/collection.json", label={"en": ["ArtyLyze annotations"]},
                      items=refs)
    atomic_write_text(out / "collection.json", coll.json(indent=1))
