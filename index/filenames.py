"""Title, artist, year (and accession number) from a file name, only where the name says so.

A made-up title is worse than none: ``eta-1011.jpg`` is not a work called "Eta" from 1011,
and ``inv-2003-117_recto.tif`` is not by "Inv 2003 117". So names are read only when they
match a known shape, and anything else leaves the fields empty (pages show the file name):

- the WikiArt slug ``artist-name_title-words-1890.jpg``: an artist part of lowercase words
  joined by ``-`` (starting with a letter; dots, apostrophes, brackets allowed; digits only when
  the name ends in a plausible year), ``_``, a title part (with a letter in it, unless a
  plausible year follows), and optionally ``-YYYY`` at the end; the year counts only when
  plausible (1000 < year <= this year), otherwise the digits stay part of the title;
- a pattern the user gives (``--filename-pattern``): a regular expression with named groups
  among ``artist``, ``title``, ``year``, ``accession``, matched against the whole file name
  without its extension (``re.fullmatch``); tried first, the WikiArt shape after it.

``PARSER`` is recorded in an index's manifest; an index built by an older parser gets its
rows read again by this one when it is loaded (:func:`reparse`), so no rebuild is needed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa

from artylyze.index.errors import IndexBuildError

PARSER = 2  # 1: any "a_b-1234" name was read as artist a, title b, year 1234
GROUPS = ("artist", "title", "year", "accession")
MANIFEST_KEY = "file_names"
_WIKIART = re.compile(r"(?P<artist>[a-z][a-z0-9.'()]*(?:-[a-z0-9.'()]+)*)_(?P<title>.+?)"
                      r"(?:-(?P<year>\d{4}))?")


@dataclass(frozen=True)
class Parsed:
    artist: str | None = None  # a slug or a name, as the file gives it
    title: str | None = None
    year: int | None = None
    accession: str | None = None


def plausible_year(text: str | None) -> int | None:
    """``"1890"`` -> 1890; None outside 1000 < year <= this year."""
    if not text or not text.isdigit():
        return None
    year = int(text)
    return year if 1000 < year <= dt.date.today().year else None


def _title(text: str | None, digits: bool = False) -> str | None:
    """Words of a slug as a title; None without a letter in it (unless ``digits``: a title
    such as "10" beside a real year)."""
    words = re.sub(r"[-_\s]+", " ", text or "").strip()
    if not words or not (digits or re.search(r"[^\W\d_]", words)):
        return None
    return words[:1].upper() + words[1:]


class FileNames:
    """Reads names with the user's pattern (if any), then the WikiArt shape."""

    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = pattern
        self._user = compile_pattern(pattern) if pattern else None

    def describe(self) -> dict[str, object]:
        """What the index manifest records."""
        return {"parser": PARSER, "pattern": self.pattern}

    def parse(self, path: str) -> Parsed:
        stem = PurePosixPath(path).stem
        if self._user is not None and (m := self._user.fullmatch(stem)):
            found = {k: v for k, v in m.groupdict().items() if k in GROUPS and v}
            return Parsed(found.get("artist"), _title(found.get("title")),
                          plausible_year(found.get("year")), found.get("accession"))
        m = _WIKIART.fullmatch(stem)
        if m is None:
            return Parsed()
        title, year = m["title"], plausible_year(m["year"])
        if year is None and re.search(r"\d", m["artist"]):
            return Parsed()  # "inv-2003-117_recto": digits in the artist need a real year
        if m["year"] and year is None:
            title = f"{title}-{m['year']}"  # not a year: part of the title
        title = _title(title, digits=year is not None)  # "brice-marden_10-2011": "10"
        return Parsed(m["artist"], title, year) if title else Parsed()

    def columns(self, paths: list[str]) -> dict[str, pa.Array]:
        """The index rows' ``title``, ``artist_slug`` and ``year`` columns for ``paths``."""
        parsed = [self.parse(p) for p in paths]
        return {"title": pa.array([p.title for p in parsed], pa.string()),
                "artist_slug": pa.array([p.artist for p in parsed], pa.string()),
                "year": pa.array([p.year for p in parsed], pa.int32())}

    def accessions(self, paths: list[str]) -> pa.Array | None:
        """``accession`` per path when the user's pattern has that group, else None."""
        if self._user is None or "accession" not in self._user.groupindex:
            return None
        return pa.array([self.parse(p).accession for p in paths], pa.string())


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The user's pattern, checked: valid, with at least one of :data:`GROUPS`."""
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise IndexBuildError(f"--filename-pattern {pattern!r} is not a regular expression "
                              f"({e})") from e
    if not set(compiled.groupindex) & set(GROUPS):
        raise IndexBuildError(f"--filename-pattern {pattern!r} has none of the named groups "
                              f"{', '.join(f'(?P<{g}>...)' for g in GROUPS)}")
    return compiled


DEFAULT = FileNames()


def _parse_v1(path: str) -> Parsed:
    """What parser 1 read (kept only to tell its guesses from values a labels CSV gave)."""
    stem = PurePosixPath(path).stem
    artist, sep, rest = stem.partition("_")
    if not sep:
        artist, rest = "", stem
    year = None
    m = re.search(r"-(\d{4})$", rest)
    if m and 1000 <= int(m.group(1)) <= 2100:
        year, rest = int(m.group(1)), rest[: m.start()]
    title = re.sub(r"[-_]+", " ", rest).strip()
    return Parsed(artist or None, title[:1].upper() + title[1:] if title else stem, year)


def reparse(rows: pa.Table, recorded: dict | None, names: FileNames | None) -> pa.Table:
    """``rows`` with title, artist_slug and year read again from ``path`` by ``names`` (by
    default: this parser, when the index was built by an older one; else unchanged). Only
    values the index's own parser put there are replaced: a title or year a labels CSV gave
    (``index build --labels``) stays."""
    recorded = recorded if isinstance(recorded, dict) else {}  # untrusted JSON
    version, pattern = recorded.get("parser"), recorded.get("pattern")
    current = isinstance(version, int) and version >= PARSER
    if not isinstance(pattern, str):
        pattern = None
    if names is None:
        if current:
            return rows
        names = DEFAULT
    elif current and names.pattern == pattern:
        return rows
    if "path" not in rows.column_names:
        return rows
    paths = [str(p) for p in rows.column("path").to_pylist()]
    before = FileNames(pattern) if current and pattern is not None else DEFAULT if current \
        else None
    old = [before.parse(p) if before else _parse_v1(p) for p in paths]
    new = [names.parse(p) for p in paths]
    for column, attr, typ in (("title", "title", pa.string()),
                              ("artist_slug", "artist", pa.string()), ("year", "year", pa.int32())):
        if column not in rows.column_names:
            continue
        stored = rows.column(column).to_pylist()
        values = [getattr(n, attr) if v == getattr(o, attr) else v
                  for v, o, n in zip(stored, old, new, strict=True)]
        rows = rows.set_column(rows.column_names.index(column), column, pa.array(values, typ))
    accessions = names.accessions(paths)
    if accessions is not None:
        rows = with_accessions(rows, accessions)
    return rows


def with_accessions(rows: pa.Table, accessions: pa.Array) -> pa.Table:
    """``record_id`` from the file names where the rows have none (a records table wins)."""
    if "record_id" not in rows.column_names:
        return rows.append_column("record_id", accessions)
    import pyarrow.compute as pc

    merged = pc.coalesce(rows.column("record_id").combine_chunks().cast(pa.string()), accessions)
    return rows.set_column(rows.column_names.index("record_id"), "record_id", merged)
