"""The writing policy: which of a row's labels may enter shared XMP/IPTC fields.

Other systems read a shared field (``Iptc4xmpExt:AOStylePeriod``, ``dc:subject``...) as fact,
so an empty field is better than a wrong one. One rule for every model, calibrated or not:

- A label a person gave or confirmed (``<task>_source == "human"``, from a review) always
  enters, creator included: the rules below are for the model's labels.
- Nothing of the model's for an image that is not an artwork (a ``domain`` column whose value is
  not ``artwork``; a row without that column is taken for an artwork, as older bundles
  only ever saw paintings).
- A label enters only if its score is at least ``min_score`` *and*, where the model gives
  ``<task>_confident``, that flag is true.
- The creator only when asked for (``--suggest-creator``), then only a named artist (never
  an "another artist" / unknown class) that passes the rule above and ``creator_min_score``.
- The year (``AODateCreated``) only when the date is confident: the period passes the rule
  and the year interval is at most ``date_max_width`` years wide. The circa date only when
  the period passes the rule.

docs/writing-policy.md has the same as one table; the ``artylyze:`` namespace still carries
every label with its score.
"""

from __future__ import annotations

import re
from typing import Any

ARTWORK_DOMAIN = "artwork"
DOMAIN = "domain"
#: Artist labels that name no one: an "another artist" / "other" / unknown class.
_UNKNOWN = re.compile(r"(another|other|others|unknown|anonymous|unidentified)"
                      r"( artists?)?", re.IGNORECASE)


def human(row: dict[str, Any], task: str) -> bool:
    """Whether a person gave or confirmed the row's label of ``task`` (a review)."""
    return row.get(f"{task}_source") == "human"


def is_artwork(row: dict[str, Any]) -> bool:
    """False when the row has a ``domain`` column whose value is anything but ``artwork``."""
    if DOMAIN not in row:
        return True
    return row[DOMAIN] == ARTWORK_DOMAIN


def unknown_artist(label: str | None) -> bool:
    """``Another_artist``, ``another-artist``, ``Other``, ``unknown``... name no one."""
    if not label:
        return True
    return _UNKNOWN.fullmatch(re.sub(r"[\s_\-]+", " ", label).strip()) is not None


def passes(row: dict[str, Any], task: str, min_score: float) -> bool:
    """A label the shared fields may carry: a person's; or on an artwork, score >=
    ``min_score`` and the model's ``<task>_confident`` where the row has it."""
    if row.get(task) is None:
        return False
    if human(row, task):
        return True
    if not is_artwork(row):
        return False
    score = row.get(f"{task}_score")
    if score is None or score != score or score < min_score:
        return False
    return f"{task}_confident" not in row or bool(row[f"{task}_confident"])


def creator(row: dict[str, Any], min_score: float, creator_min_score: float,
            suggest: bool) -> bool:
    """The artist may go into ``AOCreator``: a person's (never a suggestion), or the model's
    only when ``suggest``-ed and it passes at ``creator_min_score``; never a label that
    names no one."""
    if unknown_artist(row.get("artist")):
        return False
    if human(row, "artist"):
        return True
    return suggest and passes(row, "artist", max(min_score, creator_min_score))


def date_confident(row: dict[str, Any], min_score: float, max_width: float) -> bool:
    """The estimated year may be written as ``AODateCreated``: its period passes the rule and
    the interval ``year_low``..``year_high`` is at most ``max_width`` years wide."""
    low, high = row.get("year_low"), row.get("year_high")
    if low is None or high is None or low != low or high != high:
        return False
    return passes(row, "period", min_score) and high - low <= max_width
