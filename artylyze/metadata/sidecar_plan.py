"""What one XMP sidecar says, worked out from its meta.parquet row alone (no file read).

Which labels may be shared (:mod:`artylyze.metadata.policy`), which IPTC artwork fields
and keywords they fill, the ``artylyze:`` properties, and a digest of all of it that
makes rewrites incremental. The file side is :mod:`artylyze.metadata.sidecar`, the merge
into an existing packet :mod:`artylyze.metadata.sidecar_merge`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artylyze import __version__
from artylyze.errors import ArtyLyzeError
from artylyze.metadata import policy
from artylyze.metadata.records import RECORD_ID
from artylyze.metadata.xmp import DC, IPTC_EXT, LR, q
from artylyze.options import Write

NS = "http://ns.artylyze.org/xmp/1.0/"
PREFIX = "artylyze"
SUFFIX = ".xmp"
FORMAT = 2  # part of the digest: a new format rewrites every sidecar once (2: policy.py)
KEYWORD_TASKS = ("style", "genre")
GENERATOR = f"ArtyLyze {__version__}"
SUBJECT, HIERARCHY = q(DC, "subject"), q(LR, "hierarchicalSubject")
ARTWORK = q(IPTC_EXT, "ArtworkOrObject")
#: The artwork fields ArtyLyze fills: local name -> XMP array kind (None: a simple value).
ARTWORK_FIELDS = {"AOStylePeriod": "Bag", "AOCreator": "Seq", "AODateCreated": None,
                  "AOCircaDateCreated": None, "AOSourceInvNo": None}
EXTRA_COLUMNS = ("year", "year_low", "year_high", "novelty")  # Model v2, when present
NOT_IN_HIERARCHY = ("artist", policy.DOMAIN)  # never shared keywords


class SidecarError(ArtyLyzeError):
    """Sidecars cannot be written at all (no collection root, bad options)."""


@dataclass(frozen=True)
class SidecarOptions:
    """Where sidecars go and which labels count as confident."""

    sidecar_dir: Path | None = None  # None: beside each image, under the collection root
    root: Path | None = None  # the collection root (default: the one meta.parquet records)
    min_score: float = Write.min_score.default  # at or above (and confident): shared fields
    creator_min_score: float = Write.creator_min_score.default  # suggested as AOCreator from here
    creator: bool = Write.suggest_creator.default  # False: never suggest an AOCreator
    date_max_width: float = Write.date_max_width.default  # widest interval for AODateCreated
    force: bool = False  # rewrite sidecars whose digest matches

    def check(self) -> None:
        for name in ("min_score", "creator_min_score"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SidecarError(f"{name.replace('_', '-')} must be in [0, 1], got {value}")
        if not self.date_max_width >= 0:
            raise SidecarError(f"date-max-width must be >= 0, got {self.date_max_width}")


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


def human(row: dict[str, Any], task: str) -> bool:
    """Whether a person gave or confirmed the row's label of ``task`` (a review)."""
    return policy.human(row, task)


def _year(value: Any) -> str | None:
    if value is None or value != value or not 1 <= round(value) <= 9999:  # None, NaN, range
        return None
    return f"{round(value):04d}"


def _artwork(row: dict[str, Any], tasks: tuple[str, ...],
             options: SidecarOptions) -> dict[str, list[str]]:
    """The artwork fields, by :mod:`artylyze.metadata.policy`: only what it lets through."""
    art: dict[str, list[str]] = dict.fromkeys(ARTWORK_FIELDS, [])
    if "style" in tasks and policy.passes(row, "style", options.min_score):
        art["AOStylePeriod"] = [readable("style", row["style"])]
    if "artist" in tasks and policy.creator(row, options.min_score, options.creator_min_score,
                                            options.creator):
        art["AOCreator"] = [readable("artist", row["artist"])]
    dated = policy.date_confident(row, options.min_score, options.date_max_width)
    if dated and (year := _year(row.get("year"))) is not None:
        art["AODateCreated"] = [year]
    low, high = _year(row.get("year_low")), _year(row.get("year_high"))
    if policy.passes(row, "period", options.min_score):
        art["AOCircaDateCreated"] = [f"{low}-{high}" if low and high else row["period"]]
    if row.get(RECORD_ID):
        art["AOSourceInvNo"] = [row[RECORD_ID]]
    return art


def score_text(value: float) -> str:
    return f"{value:.4f}"


def plan(row: dict[str, Any], tasks: tuple[str, ...], options: SidecarOptions) -> Plan:
    """What the sidecar of one ok row says; the digest covers all of it and the options."""
    sure = [t for t in tasks if policy.passes(row, t, options.min_score)]
    keywords = [readable(t, row[t]) for t in sure if t in KEYWORD_TASKS]
    hierarchy = [f"ArtyLyze|{t}|{readable(t, row[t])}" for t in sure
                 if t not in NOT_IN_HIERARCHY]
    tagged = row.get("tagged_at")
    labelled = [t for t in tasks if row.get(t) is not None or human(row, t)]
    machine = not labelled or any(not human(row, t) for t in labelled)
    own = [("MachineGenerated", str(machine)), ("Generator", GENERATOR),
           ("Model", str(row.get("model") or "")),
           ("TaggedAt", tagged.isoformat(timespec="seconds") if tagged else "")]
    if row.get(RECORD_ID):
        own.append(("RecordId", row[RECORD_ID]))
    tops: dict[str, list[tuple[str, float]]] = {}
    for t in tasks:
        cap = t[:1].upper() + t[1:]
        if human(row, t):
            own += [(f"{cap}Source", "human"), (f"{cap}ReviewedBy", row.get(f"{t}_reviewer") or ""),
                    (f"{cap}ReviewedAt", row.get(f"{t}_reviewed_at") or "")]
        elif row.get(t) is not None and f"{t}_source" in row:
            own.append((f"{cap}Source", "model"))
        if row.get(t) is None:
            continue
        own.append((cap, row[t]))
        if row.get(f"{t}_score") is not None:  # a task only people gave has no score
            own.append((f"{cap}Score", score_text(row[f"{t}_score"])))
        if f"{t}_confident" in row and row[f"{t}_confident"] is not None:
            own.append((f"{cap}Confident", str(bool(row[f"{t}_confident"]))))
        tops[cap] = [(x["label"], x["score"]) for x in row.get(f"{t}_top") or ()]
    if policy.DOMAIN in row and policy.DOMAIN not in tasks:
        own.append(("Domain", str(row[policy.DOMAIN] or "")))
    for name in EXTRA_COLUMNS:
        if row.get(name) is not None:
            own.append(("".join(w.capitalize() for w in name.split("_")), f"{row[name]:g}"))
    art = _artwork(row, tasks, options)
    content = json.dumps([FORMAT, art, keywords, hierarchy, own, tops,
                          options.min_score, options.creator, options.creator_min_score,
                          options.date_max_width],
                         ensure_ascii=False, default=str)
    digest = hashlib.sha256(content.encode()).hexdigest()[:32]
    return Plan(art, keywords, hierarchy, own, tops, digest)
