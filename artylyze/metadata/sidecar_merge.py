"""Merging a sidecar's :class:`~artylyze.metadata.sidecar_plan.Plan` into an XMP packet, new or
parsed from a sidecar that exists, so that other tools' properties stay as they are.

A shared field is replaced only while it still holds what ArtyLyze wrote there last time
(the ``artylyze:Wrote`` list says what that was); keywords ArtyLyze added are taken out again
when the label changes, anyone else's stay.
"""

from __future__ import annotations

from datetime import datetime

from artylyze.metadata.sidecar_plan import (
    ARTWORK,
    ARTWORK_FIELDS,
    GENERATOR,
    HIERARCHY,
    NS,
    PREFIX,
    SUBJECT,
    Plan,
    score_text,
)
from artylyze.metadata.xmp import (
    IPTC_EXT,
    XMP,
    Packet,
    add_struct,
    is_empty,
    q,
    remove,
    set_items,
    set_text,
    structs,
    values,
)


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
            set_text(item, q(NS, "Score"), score_text(score))
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
