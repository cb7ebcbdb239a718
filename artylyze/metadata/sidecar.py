"""XMP sidecars from a meta.parquet: ArtyLyze's labels where photo tools and collection
systems read metadata, without ever touching an original.

What one sidecar (``painting.jpg.xmp``, beside the image or under ``sidecar_dir``) gets:

- IPTC Extension "Artwork or Object in the Image" (``Iptc4xmpExt:ArtworkOrObject``, first
  entry): the style in ``AOStylePeriod``; the estimated year in ``AODateCreated`` and its
  interval or period bin in ``AOCircaDateCreated``; the predicted artist in ``AOCreator``
  only as a suggestion (a higher score bar, never over a creator someone else entered);
  the museum's ``record_id`` in ``AOSourceInvNo``. Only what the writing policy lets through
  (:mod:`artylyze.metadata.policy`, docs/writing-policy.md): an artwork, ``score >=
  min_score`` and ``<task>_confident`` where the model has it; the year only when the date
  is confident; the creator only with ``--suggest-creator``. A person's label always.
- Keywords: shareable style and genre in ``dc:subject``, every confident label but the
  artist as ``ArtyLyze|<task>|<label>`` in ``lr:hierarchicalSubject``.
- The ArtyLyze namespace (``artylyze:``): every task's label and score, its top-k, the
  model id, ``TaggedAt``, ``MachineGenerated`` and the generator, what was written
  into shared fields (``Wrote``), and a digest of all of it.

A label a person gave or confirmed (the review store beside meta.parquet, read through
:func:`~artylyze.metadata.metafile.open_meta`) goes into the IPTC fields whatever the
model's score, and the ArtyLyze namespace says so: ``<Task>Source = human``,
``<Task>ReviewedBy``, ``<Task>ReviewedAt``; ``MachineGenerated`` stays ``True`` while any
label in the sidecar is still the machine's (``<Task>Source = model``).

Safe with sidecars that exist: other tools' properties stay as they are; a shared field
is replaced only while it still holds what ArtyLyze wrote there last time (someone who
edited it owns it now); keywords ArtyLyze added are taken out again when the label changes,
anyone else's stay. Incremental: a sidecar whose digest matches its row is not rewritten.
Atomic per file (temp file + rename); a sidecar that cannot be parsed is left alone and
reported, never overwritten.

This module is the file side (which rows, which paths, reading and writing);
:mod:`artylyze.metadata.sidecar_plan` works out what a row says,
:mod:`artylyze.metadata.sidecar_merge` merges that into a packet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from artylyze.atomic import atomic_write
from artylyze.metadata.metafile import AUTO, MetaFile, open_meta
from artylyze.metadata.policy import DOMAIN
from artylyze.metadata.records import RECORD_ID
from artylyze.metadata.sidecar_merge import apply, render
from artylyze.metadata.sidecar_plan import (
    EXTRA_COLUMNS,
    SUFFIX,
    Plan,
    SidecarError,
    SidecarOptions,
    plan,
    readable,
)
from artylyze.metadata.xmp import XmpError
from artylyze.review.overlay import PROVENANCE
from artylyze.store import decode_path
from artylyze.untrusted import UntrustedFileError, read_regular

__all__ = ["Plan", "SidecarError", "SidecarOptions", "SidecarReport", "apply", "plan",
           "readable", "render", "sidecar_path", "write_sidecars"]


#: Largest existing sidecar read: real ones are a few KB (a Lightroom one with a long
#: history ~100 KB); anything bigger is not a sidecar ArtyLyze should merge into.
MAX_SIDECAR_BYTES = 16 * 1024**2


@dataclass
class SidecarReport:
    """What a run did, per sidecar."""

    folder: str  # where the sidecars are
    written: int = 0
    unchanged: int = 0  # digest matched: not rewritten
    not_ok: int = 0  # error rows: no labels, no sidecar
    missing: int = 0  # the image is gone (sidecars beside images only): none written
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _rows(meta: MetaFile) -> Iterator[dict[str, Any]]:
    wanted = ["path", "status", "model", "tagged_at", RECORD_ID, DOMAIN, *EXTRA_COLUMNS]
    for t in meta.all_tasks:
        wanted += [t, f"{t}_score", f"{t}_top", f"{t}_confident", *(f"{t}{s}" for s in PROVENANCE)]
    columns = [c for c in dict.fromkeys(wanted) if c in meta.names]
    for batch in meta.batches(columns):
        yield from batch.to_pylist()


def _safe_relative(path: str) -> str | None:
    """The row's path to write beside, or None when it must not be (absolute, ``..``, a
    broken escape or a NUL: not a name ``tag`` wrote)."""
    if not isinstance(path, str):
        return None
    try:
        rel = decode_path(path)
    except ValueError:  # BadPathError
        return None
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        return None
    return rel


def sidecar_path(image_rel: str, folder: Path) -> Path:
    """``a/b.jpg`` -> ``folder/a/b.jpg.xmp`` (the name darktable, digiKam and Immich read)."""
    return folder / (image_rel + SUFFIX)


def write_sidecars(meta_path: str | os.PathLike[str], options: SidecarOptions | None = None,
                   review: str | os.PathLike[str] | None = AUTO) -> SidecarReport:
    """Write or update the sidecar of every ok row of ``meta_path`` (file or part folder);
    human labels of ``review`` (default: the store beside it) win over the model's."""
    options = options or SidecarOptions()
    options.check()
    meta = open_meta(meta_path, review)
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
            report.failed.append((str(row["path"]), "not a relative path inside the "
                                  "collection (or a broken \\xHH escape); skipped"))
            continue
        if beside and not (root / rel).is_file():
            report.missing += 1
            continue
        _write_one(sidecar_path(rel, folder), row, meta.all_tasks, options, now, report)
    if beside and report.missing and not (report.written or report.unchanged or report.failed):
        raise SidecarError(f"none of the {report.missing:,} tagged images is under {root}: "
                           "is it the collection folder? Pass the folder that was tagged as "
                           "--root (or --sidecar-dir to write sidecars elsewhere)")
    return report


def read_existing(target: Path) -> bytes | None:
    """The sidecar already at ``target``, or None when there is none or it is empty.

    Whatever sits there is judged on the open descriptor before a byte is read (as ``tag``
    judges images): a FIFO is not waited on, a link to ``/dev/zero``, a device or a sparse
    multi-gigabyte file is refused, not read into memory (UntrustedFileError)."""
    if not os.path.exists(target):  # stat only: never blocks; a dangling link is replaced
        return None
    data = read_regular(target, MAX_SIDECAR_BYTES)
    return data if data.strip() else None  # an empty file holds nothing to keep


def _write_one(target: Path, row: dict[str, Any], tasks: tuple[str, ...],
               options: SidecarOptions, now: datetime, report: SidecarReport) -> None:
    p = plan(row, tasks, options)
    try:
        existing = read_existing(target)
        data = render(existing, p, now, options.force)
        if data is None:
            report.unchanged += 1
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda f: f.write(data))
        report.written += 1
    except XmpError as e:
        report.failed.append((row["path"], f"{target.name}: {e}; left as it was"))
    except UntrustedFileError as e:
        report.failed.append((row["path"], f"{target.name}: {e.reason}; left as it was"))
    except OSError as e:
        report.failed.append((row["path"], f"{target}: {e.strerror or e}"))

