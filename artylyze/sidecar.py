"""XMP sidecars from a meta.parquet: ArtyLyze's labels where photo tools and collection
systems read metadata, without ever touching an original.

What one sidecar (``painting.jpg.xmp``, beside the image or under ``sidecar_dir``) gets:

- IPTC Extension "Artwork or Object in the Image" (``Iptc4xmpExt:ArtworkOrObject``, first
  entry): the style in ``AOStylePeriod``; the estimated year in ``AODateCreated`` and its
  interval or period bin in ``AOCircaDateCreated``; the predicted artist in ``AOCreator``
  only as a suggestion (a higher score bar, never over a creator someone else entered);
  the museum's ``record_id`` in ``AOSourceInvNo``. Only labels the model is confident of
  (``<task>_confident`` where the model has it, else ``score >= min_score``).
- Keywords: confident style and genre in ``dc:subject``, every confident label but the
  artist as ``ArtyLyze|<task>|<label>`` in ``lr:hierarchicalSubject``.
- The ArtyLyze namespace (``artylyze:``): every task's label and score, its top-k, the
  model id, ``TaggedAt``, ``MachineGenerated = True`` and the generator, what was written
  into shared fields (``Wrote``), and a digest of all of it.

Safe with sidecars that exist: other tools' properties stay as they are; a shared field
is replaced only while it still holds what ArtyLyze wrote there last time (someone who
edited it owns it now); keywords ArtyLyze added are taken out again when the label changes,
anyone else's stay. Incremental: a sidecar whose digest matches its row is not rewritten.
Atomic per file (temp file + rename); a sidecar that cannot be parsed is left alone and
reported, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from artylyze import __version__
from artylyze.atomic import atomic_write
from artylyze.errors import ArtyLyzeError
from artylyze.metafile import MetaFile, open_meta
from artylyze.options import Write
from artylyze.records import RECORD_ID
from artylyze.store import decode_path
from artylyze.xmp import (
    DC,
    IPTC_EXT,
    LR,
    XMP,
    Packet,
    XmpError,
    add_struct,
    is_empty,
    q,
    remove,
    set_items,
    set_text,
    structs,
    values,
)

NS = "http://ns.artylyze.org/xmp/1.0/"
PREFIX = "artylyze"
SUFFIX = ".xmp"
FORMAT = 1  # part of the digest: a new format rewrites every sidecar once
KEYWORD_TASKS = ("style", "genre")
GENERATOR = f"ArtyLyze {__version__}"
SUBJECT, HIERARCHY = q(DC, "subject"), q(LR, "hierarchicalSubject")
ARTWORK = q(IPTC_EXT, "ArtworkOrObject")
#: The artwork fields ArtyLyze fills: local name -> XMP array kind (None: a simple value).
ARTWORK_FIELDS = {"AOStylePeriod": "Bag", "AOCreator": "Seq", "AODateCreated": None,
                  "AOCircaDateCreated": None, "AOSourceInvNo": None}
EXTRA_COLUMNS = ("year", "year_low", "year_high", "novelty")  # Model v2, when present


class SidecarError(ArtyLyzeError):
    """Sidecars cannot be written at all (no collection root, bad options)."""


@dataclass(frozen=True)
class SidecarOptions:
    """Where sidecars go and which labels count as confident."""

    sidecar_dir: Path | None = None  # None: beside each image, under the collection root
    root: Path | None = None  # the collection root (default: the one meta.parquet records)
    min_score: float = Write.min_score.default  # at or above: into IPTC fields and keywords
    creator_min_score: float = Write.creator_min_score.default  # suggested as AOCreator from here
    creator: bool = Write.creator.default  # False: never suggest an AOCreator
    force: bool = False  # rewrite sidecars whose digest matches

    def check(self) -> None:
        for name in ("min_score", "creator_min_score"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SidecarError(f"{name.replace('_', '-')} must be in [0, 1], got {value}")


@dataclass
class SidecarReport:
    """What a run did, per sidecar."""

    folder: str  # where the sidecars are
    written: int = 0
    unchanged: int = 0  # digest matched: not rewritten
    not_ok: int = 0  # error rows: no labels, no sidecar
    missing: int = 0  # the image is gone (sidecars beside images only): none written
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass(frozen=True)
class Plan:
    """Everything one sidecar says, worked out from its row before any file is read."""

    artwork: dict[str, list[str]]  # artwork field -> values ([] = nothing confident)
    keywords: list[str]
    hierarchy: list[str]
    own: list[tuple[str, str]]  # artylyze simple properties, in order
    tops: dict[str, list[tuple[str, float]]]
    digest: str


# ---------------------------------------------------------------- from a row

def readable(task: str, label: str) -> str:
    """How a label is shown to people: ``Naive_Art_Primitivism`` -> ``Naive Art Primitivism``,
    an artist slug -> ``Claude Monet``."""
    if task == "artist":
        from artylyze.index.entries import pretty_artist

        return pretty_artist(label) or label
    return label.replace("_", " ")


def _confident(row: dict[str, Any], task: str, threshold: float) -> bool:
    """The model's own ``<task>_confident`` where it has one, else ``score >= threshold``."""
    if row.get(task) is None:
        return False
    flag = row.get(f"{task}_confident")
    if flag is not None:
        return bool(flag)
    score = row.get(f"{task}_score")
    return score is not None and score >= threshold


def _year(value: Any) -> str | None:
    if value is None or value != value or not 1 <= round(value) <= 9999:  # None, NaN, range
        return None
    return f"{round(value):04d}"


def _artwork(row: dict[str, Any], tasks: tuple[str, ...],
             options: SidecarOptions) -> dict[str, list[str]]:
    sure = {t: _confident(row, t, options.min_score) for t in tasks}
    art: dict[str, list[str]] = dict.fromkeys(ARTWORK_FIELDS, [])
    if sure.get("style"):
        art["AOStylePeriod"] = [readable("style", row["style"])]
    if (options.creator and sure.get("artist")
            and row["artist_score"] >= options.creator_min_score):
        art["AOCreator"] = [readable("artist", row["artist"])]
    if (year := _year(row.get("year"))) is not None:
        art["AODateCreated"] = [year]
    low, high = _year(row.get("year_low")), _year(row.get("year_high"))
    if low and high:
        art["AOCircaDateCreated"] = [f"{low}-{high}"]
    elif sure.get("period"):
        art["AOCircaDateCreated"] = [row["period"]]
    if row.get(RECORD_ID):
        art["AOSourceInvNo"] = [row[RECORD_ID]]
    return art


def _score(value: float) -> str:
    return f"{value:.4f}"


def plan(row: dict[str, Any], tasks: tuple[str, ...], options: SidecarOptions) -> Plan:
    """What the sidecar of one ok row says; the digest covers all of it and the options."""
    sure = [t for t in tasks if _confident(row, t, options.min_score)]
    keywords = [readable(t, row[t]) for t in sure if t in KEYWORD_TASKS]
    hierarchy = [f"ArtyLyze|{t}|{readable(t, row[t])}" for t in sure if t != "artist"]
    tagged = row.get("tagged_at")
    own = [("MachineGenerated", "True"), ("Generator", GENERATOR),
           ("Model", str(row.get("model") or "")),
           ("TaggedAt", tagged.isoformat(timespec="seconds") if tagged else "")]
    if row.get(RECORD_ID):
        own.append(("RecordId", row[RECORD_ID]))
    tops: dict[str, list[tuple[str, float]]] = {}
    for t in tasks:
        if row.get(t) is None:
            continue
        cap = t[:1].upper() + t[1:]
        own += [(cap, row[t]), (f"{cap}Score", _score(row[f"{t}_score"]))]
        if f"{t}_confident" in row and row[f"{t}_confident"] is not None:
            own.append((f"{cap}Confident", str(bool(row[f"{t}_confident"]))))
        tops[cap] = [(x["label"], x["score"]) for x in row.get(f"{t}_top") or ()]
    for name in EXTRA_COLUMNS:
        if row.get(name) is not None:
            own.append(("".join(w.capitalize() for w in name.split("_")), f"{row[name]:g}"))
    art = _artwork(row, tasks, options)
    content = json.dumps([FORMAT, art, keywords, hierarchy, own, tops,
                          options.min_score, options.creator, options.creator_min_score],
                         ensure_ascii=False, default=str)
    digest = hashlib.sha256(content.encode()).hexdigest()[:32]
    return Plan(art, keywords, hierarchy, own, tops, digest)


# ---------------------------------------------------------------- into a packet

def _written_before(packet: Packet) -> dict[str, list[str]]:
    """What ArtyLyze wrote into shared fields last time: property -> values."""
    before: dict[str, list[str]] = {}
    for item in structs(packet.holder(q(NS, "Wrote")), q(NS, "Wrote")):
        prop, value = values(item, q(NS, "Property")), values(item, q(NS, "Value"))
        if prop and value:
            before.setdefault(prop[0], []).append(value[0])
    return before


def _merge_keywords(packet: Packet, prop: str, new: list[str], mine: list[str]) -> list[str]:
    """Others' keywords stay, ours are replaced; returns the ones ArtyLyze added."""
    holder = packet.holder(prop)
    kept = [v for v in values(holder, prop) if v not in mine]
    added = [v for v in dict.fromkeys(new) if v not in kept]
    if kept or added:
        set_items(holder, prop, kept + added)
    else:
        remove(holder, prop)
    return added


def _merge_artwork(packet: Packet, art: dict[str, list[str]],
                   before: dict[str, list[str]]) -> dict[str, list[str]]:
    """Fill the first artwork entry where it is empty or still ArtyLyze's; returns what was
    written, by field."""
    holder = packet.holder(ARTWORK)
    found = structs(holder, ARTWORK)
    item = found[0] if found else add_struct(holder, ARTWORK)
    wrote: dict[str, list[str]] = {}
    for local, new in art.items():
        prop = q(IPTC_EXT, local)
        current = values(item, prop)
        if current and current != before.get(f"Iptc4xmpExt:{local}"):
            continue  # someone else's value
        kind = ARTWORK_FIELDS[local]
        if not new:
            remove(item, prop)
        elif kind is None:
            set_text(item, prop, new[0])
        else:
            set_items(item, prop, new, kind)
        if new:
            wrote[f"Iptc4xmpExt:{local}"] = new
    if is_empty(item) and len(found) <= 1:
        remove(holder, ARTWORK)
    return wrote


def apply(packet: Packet, p: Plan, now: datetime) -> None:
    """Merge one plan into a packet (new or parsed from an existing sidecar)."""
    before = _written_before(packet)
    packet.remove_namespace(NS)
    wrote = _merge_artwork(packet, p.artwork, before)
    for prop, name, new in ((SUBJECT, "dc:subject", p.keywords),
                            (HIERARCHY, "lr:hierarchicalSubject", p.hierarchy)):
        added = _merge_keywords(packet, prop, new, before.get(name, []))
        if added:
            wrote[name] = added
    packet.remove(q(XMP, "MetadataDate"))
    set_text(packet.description(), q(XMP, "MetadataDate"), now.isoformat(timespec="seconds"))
    own = packet.description()
    for name, value in p.own:
        set_text(own, q(NS, name), value)
    for cap, top in p.tops.items():
        prop = q(NS, f"{cap}Top")
        for label, score in top:
            item = add_struct(own, prop, "Seq")
            set_text(item, q(NS, "Label"), label)
            set_text(item, q(NS, "Score"), _score(score))
    for prop, vals in wrote.items():
        for v in vals:
            item = add_struct(own, q(NS, "Wrote"))
            set_text(item, q(NS, "Property"), prop)
            set_text(item, q(NS, "Value"), v)
    set_text(own, q(NS, "Digest"), p.digest)


def render(existing: bytes | None, p: Plan, now: datetime, force: bool = False) -> bytes | None:
    """The new sidecar bytes, or None when ``existing`` already says all of ``p``."""
    if not force and existing is not None and p.digest.encode() in existing:
        return None  # 128 random bits: found, they are the Digest ArtyLyze wrote
    packet = Packet.parse(existing) if existing is not None else Packet.new()
    packet.prefixes.setdefault(NS, PREFIX)
    apply(packet, p, now)
    return packet.to_bytes(toolkit=GENERATOR)


# ---------------------------------------------------------------- files

def _rows(meta: MetaFile) -> Iterator[dict[str, Any]]:
    wanted = ["path", "status", "model", "tagged_at", RECORD_ID, *EXTRA_COLUMNS]
    for t in meta.tasks:
        wanted += [t, f"{t}_score", f"{t}_top", f"{t}_confident"]
    columns = [c for c in dict.fromkeys(wanted) if c in meta.names]
    for batch in meta.batches(columns):
        yield from batch.to_pylist()


def _safe_relative(path: str) -> str | None:
    rel = decode_path(path)
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        return None
    return rel


def sidecar_path(image_rel: str, folder: Path) -> Path:
    """``a/b.jpg`` -> ``folder/a/b.jpg.xmp`` (the name darktable, digiKam and Immich read)."""
    return folder / (image_rel + SUFFIX)


def write_sidecars(meta_path: str | os.PathLike[str],
                   options: SidecarOptions | None = None) -> SidecarReport:
    """Write or update the sidecar of every ok row of ``meta_path`` (file or part folder)."""
    options = options or SidecarOptions()
    options.check()
    meta = open_meta(meta_path)
    root = options.root or (Path(meta.root) if meta.root else None)
    beside = options.sidecar_dir is None
    if beside and (root is None or not root.is_dir()):
        raise SidecarError(f"the collection root {root or '(not recorded)'} is not a folder; "
                           "pass --root, or --sidecar-dir to write sidecars elsewhere")
    folder = root if beside else Path(options.sidecar_dir)
    report = SidecarReport(folder=str(folder))
    now = datetime.now(timezone.utc)
    for row in _rows(meta):
        if row["status"] != "ok":
            report.not_ok += 1
            continue
        rel = _safe_relative(row["path"])
        if rel is None:
            report.failed.append((row["path"], "not a relative path inside the collection"))
            continue
        if beside and not (root / rel).is_file():
            report.missing += 1
            continue
        _write_one(sidecar_path(rel, folder), row, meta.tasks, options, now, report)
    return report


def _write_one(target: Path, row: dict[str, Any], tasks: tuple[str, ...],
               options: SidecarOptions, now: datetime, report: SidecarReport) -> None:
    p = plan(row, tasks, options)
    try:
        existing = target.read_bytes() if target.exists() else None
        if existing is not None and not existing.strip():
            existing = None  # an empty file holds nothing to keep
        data = render(existing, p, now, options.force)
        if data is None:
            report.unchanged += 1
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda f: f.write(data))
        report.written += 1
    except XmpError as e:
        report.failed.append((row["path"], f"{target.name}: {e}; left as it was"))
    except OSError as e:
        report.failed.append((row["path"], f"{target}: {e.strerror or e}"))

