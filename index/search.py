"""Query an index: turn images (or paths already in it) into vectors and find their neighbours.

An image already in the index is answered from its stored vector (matched by path, by
location under the collection root, or by sha256), so no bundle is needed for it. Any
other image is embedded with the index's own bundle; a bundle of another model is refused,
because its vectors would live in a different space.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from artylyze.index.entries import TRUE_PREFIX, pretty_artist
from artylyze.index.errors import IndexStoreError, ModelMismatchError
from artylyze.index.faiss_index import reconstruct, search
from artylyze.index.filenames import FileNames
from artylyze.index.store import DEFAULT_GALLERY_DIR, IndexDir, load_index_dir
from artylyze.model.bundle import DEFAULT_BUNDLE_DIR, Bundle, BundleError, load_bundle, sha256_file
from artylyze.model.manifest import ARTWORK
from artylyze.store import YEAR_COLUMNS, build_row

if TYPE_CHECKING:
    from artylyze.model.predict import Prediction

EMBED_BATCH = 16
TOP_PREDICTIONS = 3
DISPLAY_FIELDS = ("style", "genre", "nationality", "period")
_NO_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)  # a query row is never stored


@dataclass
class Query:
    """One query image: where it came from and its vectors."""

    name: str  # as the user gave it
    file: Path | None  # the file on disk, if there is one
    row: int | None  # its row in the index, if it is in there
    vector: np.ndarray  # index-space unit vector [d]
    coords: np.ndarray  # clustering-space point [c]
    predicted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    estimated: dict[str, Any] = field(default_factory=dict)  # year + interval, novelty, confident

    @property
    def source(self) -> str:
        return "index" if self.row is not None else "embedded"



#: Index columns -> the ``estimated`` keys queries and pages report them under.
ESTIMATES = {"year_estimate": "year", "year_low": "year_low", "year_high": "year_high",
             "novelty": "novelty", "domain": "domain", "domain_score": "domain_score"}


def not_artwork(estimated: dict[str, Any]) -> str | None:
    """The sentence pages and tables show when the model says an image is not an artwork
    (``domain`` other than ``artwork``); None otherwise or when the bundle has no domain."""
    domain = estimated.get("domain")
    if domain is None or domain == ARTWORK:
        return None
    score = estimated.get("domain_score")
    sure = f" ({score:.0%})" if isinstance(score, float) else ""
    return f"Not an artwork: looks like a {domain}{sure}. No label is confident."


def describe(p: Prediction) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """A prediction as queries report it: the top labels per task, and the estimates
    (year with its interval, novelty, confident flags) where the bundle gives them. Read
    from the meta.parquet row the store builds of it, so a query shows what ``tag`` writes."""
    row = build_row("", None, None, sha256=None, model="", tagged_at=_NO_TIME, prediction=p)
    preds = {t: [{"label": top["label"], "score": round(top["score"], 4)}
                 for top in row[f"{t}_top"]] for t in p.top}
    estimated: dict[str, Any] = {k: row[k] for k in YEAR_COLUMNS if row.get(k) is not None}
    if row["novelty"] is not None:
        estimated["novelty"] = round(row["novelty"], 4)
    if row.get("domain") is not None:
        estimated["domain"] = row["domain"]
        estimated["domain_score"] = round(row["domain_score"], 4)
    confident = {t: row[f"{t}_confident"] for t in p.top if f"{t}_confident" in row}
    if confident:
        estimated["confident"] = confident
    return preds, estimated


def check_model(index_model: str, query_model: str,
                subject: str = "the query was embedded by") -> None:
    """Refuse vectors of another model: they would be compared in a different space."""
    if index_model != query_model:
        raise ModelMismatchError(f"{subject} model {query_model!r}, but the index was built "
                                 f"with model {index_model!r}; use the bundle that tagged the "
                                 "collection (--bundle), or rebuild the index")


class Gallery:
    """An opened index plus (lazily) the bundle that embeds new queries for it."""

    def __init__(self, index: IndexDir, bundle_dir: str | Path | None = None,
                 device: str = "cpu", threads: int | None = None, spin: bool = True) -> None:
        self.index = index
        self._bundle_dir = bundle_dir
        self._session = {"device": device, "threads": threads, "spin": spin}
        self._bundle: Bundle | None = None
        self._by_path: dict[str, int] | None = None
        self._by_sha: dict[str, int] | None = None
        self._columns: dict[str, list[Any]] = {}

    @classmethod
    def open(cls, path: str | Path | None = None, bundle_dir: str | Path | None = None,
             device: str = "cpu", verify: bool = True, threads: int | None = None,
             spin: bool = True, names: FileNames | None = None) -> Gallery:
        """Open an index directory (the shipped gallery when ``path`` is None); ``device``,
        ``threads`` and ``spin`` are the bundle session's, fixed before it is made; ``names``
        reads titles from file names again (``--filename-pattern``)."""
        if path is None and not DEFAULT_GALLERY_DIR.is_dir():
            raise IndexStoreError(f"no --index given and the reference gallery is not installed "
                                  f"({DEFAULT_GALLERY_DIR})")
        index = load_index_dir(path or DEFAULT_GALLERY_DIR, verify=verify, names=names)
        return cls(index, bundle_dir, device, threads, spin)

    # -- the bundle ---------------------------------------------------------------------
    def _bundle_candidates(self) -> list[Path]:
        if self._bundle_dir is not None:
            return [Path(self._bundle_dir)]
        found = []
        ref = self.index.manifest.bundle_dir
        if ref:
            found.append((self.index.path / ref).resolve())
        found.append(DEFAULT_BUNDLE_DIR)
        return [p for p in found if p.is_dir()]

    @property
    def bundle(self) -> Bundle:
        """The bundle that embeds new images: ``--bundle``, else the one recorded at build
        time, else the default one; always checked against the index's model id."""
        if self._bundle is None:
            candidates = self._bundle_candidates()
            if not candidates:
                raise BundleError(f"this index was built with model {self.index.model_id!r} and "
                                  "its bundle was not found; pass --bundle DIR")
            bundle = load_bundle(candidates[0], **self._session)
            check_model(self.index.model_id, bundle.model_id, f"bundle {candidates[0]} is")
            self._bundle = bundle
        return self._bundle

    # -- rows -----------------------------------------------------------------------------
    def column(self, name: str) -> list[Any]:
        if name not in self._columns:
            rows = self.index.rows
            self._columns[name] = (rows.column(name).to_pylist() if name in rows.column_names
                                   else [None] * rows.num_rows)
        return self._columns[name]

    def find_row(self, name: str) -> int | None:
        """The index row of ``name``: same relative path, same file under the root, or
        same content (sha256)."""
        if self._by_path is None:
            self._by_path = {p: i for i, p in enumerate(self.column("path"))}
        key = PurePosixPath(name.replace(os.sep, "/")).as_posix()
        if key in self._by_path:
            return self._by_path[key]
        file = Path(name)
        if not file.is_file():
            return None
        root = self.index.root
        if root:
            try:
                rel = file.resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                rel = None
            if rel in self._by_path:
                return self._by_path[rel]
        if self._by_sha is None:
            self._by_sha = {}
            for i, s in enumerate(self.column("sha256")):
                if s:
                    self._by_sha.setdefault(s, i)
        return self._by_sha.get(sha256_file(file)) if self._by_sha else None

    def entry(self, row: int) -> dict[str, Any]:
        """What a result shows about one indexed artwork: ground truth first, else predicted."""
        artist = self.column(TRUE_PREFIX + "artist")[row] or self.column("artist_slug")[row]
        out: dict[str, Any] = {
            "id": row, "path": self.column("path")[row], "title": self.column("title")[row],
            "artist": pretty_artist(artist), "year": self.column("year")[row],
        }
        for name in DISPLAY_FIELDS:
            value = self.column(TRUE_PREFIX + name)[row] or self.column(name)[row]
            if value is not None:
                out[name] = value
        if self.column("record_id")[row] is not None:
            out["record_id"] = self.column("record_id")[row]
        cluster = self.column("cluster")[row]
        if cluster is not None:
            out["cluster"] = int(cluster)
            out["theme"] = self.index.themes["themes"][int(cluster)]["name"]
        return out

    def record_id(self, query: Query) -> str | None:
        """The museum's id of a query that is in the index (``tag --records``), else None."""
        return None if query.row is None else self.column("record_id")[query.row]

    def _stored_predictions(self, row: int) -> dict[str, list[dict[str, Any]]]:
        preds = {}
        for task in self.index.manifest.tasks:
            label = self.column(task)[row]
            if label is not None:
                score = self.column(f"{task}_score")[row]
                preds[task] = [{"label": label,
                                "score": None if score is None else round(float(score), 4)}]
        return preds

    def _stored_estimates(self, row: int) -> dict[str, Any]:
        out = {key: self.column(col)[row] for col, key in ESTIMATES.items()
               if self.column(col)[row] is not None}
        flags = {t: self.column(f"{t}_confident")[row]
                 for t in self.index.manifest.tasks
                 if self.column(f"{t}_confident")[row] is not None}
        return {**out, "confident": flags} if flags else out

    # -- queries --------------------------------------------------------------------------
    def queries(self, names: list[str]) -> list[Query]:
        """Resolve every name: stored vectors for indexed images, the bundle for the rest."""
        rows = {name: self.find_row(name) for name in names}
        new = [n for n in names if rows[n] is None]
        for n in new:
            if not Path(n).is_file():
                raise IndexStoreError(f"{n}: no such image file, and no such path in the index")
        embedded = self._embed(new) if new else {}
        stored = [rows[n] for n in names if rows[n] is not None]
        vectors = dict(zip(stored, reconstruct(self.index.index, stored), strict=True)) \
            if stored else {}
        out = []
        for name in names:
            row = rows[name]
            if row is not None:
                out.append(self.stored_query(row, name, vectors[row]))
            else:
                raw, preds, estimated = embedded[name]
                out.append(self.embedded_query(name, raw, preds, estimated, Path(name)))
        return out

    def stored_query(self, row: int, name: str | None = None,
                     vector: np.ndarray | None = None) -> Query:
        """A query for an indexed work, answered from its stored vector and labels."""
        name = self.column("path")[row] if name is None else name
        if vector is None:
            vector = reconstruct(self.index.index, [row])[0]
        return Query(name, Path(name) if Path(name).is_file() else None, row, vector,
                     self.index.clusters.coords[row].astype(np.float32),
                     self._stored_predictions(row), self._stored_estimates(row))

    def embedded_query(self, name: str, raw: np.ndarray, predicted: dict[str, Any],
                       estimated: dict[str, Any], file: Path | None = None) -> Query:
        """A query for a new image from its bundle embedding (see :func:`describe`)."""
        return Query(name, file, None, self.index.to_index_space(raw[None])[0],
                     self.index.clusters.space(raw[None])[0], predicted, estimated)

    def _embed(self, names: list[str]) -> dict[str, tuple[np.ndarray, dict[str, Any],
                                                          dict[str, Any]]]:
        from artylyze.imaging import load_image
        from artylyze.model.predict import predictions

        bundle = self.bundle
        man = bundle.manifest
        out = {}
        for start in range(0, len(names), EMBED_BATCH):
            batch = names[start:start + EMBED_BATCH]
            pixels = np.stack([load_image(n, man.input_size, man.resize).pixels for n in batch])
            for name, p in zip(batch, predictions(bundle.run(pixels), man, TOP_PREDICTIONS),
                               strict=True):
                out[name] = (p.embedding.astype(np.float32), *describe(p))
        return out

    def similar(self, query: Query, k: int = 10,
                collapse_copies: bool = True) -> list[dict[str, Any]]:
        """The k nearest indexed artworks (the query's own row left out), best first; copies
        of one work are shown once, with ``copies`` (their paths) and ``copies_count``
        (see :mod:`artylyze.index.copies`)."""
        from artylyze.index.copies import collapse, fetch_size

        fetch = fetch_size(k) if collapse_copies else k + 1
        scores, ids = search(self.index.index, query.vector[None], min(fetch, self.index.count))
        hits = [(float(s), int(r)) for s, r in zip(scores[0], ids[0], strict=True)
                if r >= 0 and r != query.row]
        score_of = dict((r, s) for s, r in hits)
        rows = [r for _, r in hits]
        if collapse_copies and rows:
            sha = self.column("sha256")
            group = self.column("dup_group") if "dup_group" in self.index.rows.column_names \
                else None
            qsha = sha[query.row] if query.row is not None else None
            shown = collapse(rows, reconstruct(self.index.index, rows), [sha[r] for r in rows],
                             None if group is None else [group[r] for r in rows], qsha,
                             query.vector if query.row is not None else None)
        else:
            shown = [(r, []) for r in rows]
        results = []
        for row, copies in shown[:k]:
            entry = {"rank": len(results) + 1, "score": round(score_of[row], 4),
                     **self.entry(row)}
            if collapse_copies:
                entry["copies"] = [self.column("path")[c] for c in copies]
                entry["copies_count"] = len(copies)
            results.append(entry)
        return results

    def search_embeddings(self, raw: np.ndarray, model_id: str,
                          k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Search with bundle embeddings computed elsewhere; refuses another model's."""
        check_model(self.index.model_id, model_id)
        return search(self.index.index, self.index.to_index_space(raw), k)

    def close(self) -> None:
        if self._bundle is not None:
            self._bundle.close()
