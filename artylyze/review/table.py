"""Reviews in and out of spreadsheets, and how far the machine agrees with people.

``import_csv``: rows of ``path`` (or ``record_id``), ``task``, ``label``; each becomes one
event: ``confirm`` when the label is the machine's, ``correct`` when it is another,
``set`` for a task the model does not have; an empty label rejects the machine's label.
Every row is checked before anything is written and the file goes in as one transaction:
a bad row refuses the import, with the row and the reason, and nothing is half-imported.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from artylyze.atomic import atomic_write
from artylyze.review.store import HumanLabel, ReviewError, ReviewStore
from artylyze.review.works import RECORD_ID, Works

SHOWN_PROBLEMS = 10
EXPORT_COLUMNS = ("sha256", "path", "task", "label", "action", "reviewer", "at",
                  "machine_label", "machine_score", "model")


def event_for(works: Works, row: dict[str, object], task: str, label: str | None,
              reviewer: str) -> dict[str, object]:
    """The event a person's answer makes: which action, and what the machine said then."""
    machine = row.get(task) if task in works.tasks else None
    if label is None:
        if machine is None:
            raise ReviewError(f"nothing to reject: the model gave no {task} label")
        action = "reject"
    else:
        works.check_label(task, label)
        action = "set" if task not in works.tasks else (
            "confirm" if label == machine else "correct")
    score = row.get(f"{task}_score") if task in works.tasks else None
    return {"sha256": row["sha256"], "path": row["path"], "task": task, "action": action,
            "label": label, "reviewer": reviewer, "machine_label": machine,
            "machine_score": None if score is None else float(score), "model": row.get("model")}


def import_csv(store: ReviewStore, labels: str | os.PathLike[str], works: Works,
               reviewer: str) -> Counter[str]:
    """Import a labels CSV as events (all or none); returns the count per action."""
    try:
        with open(labels, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = set(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ReviewError(f"{labels}: cannot read the CSV ({e})") from e
    if not {"task", "label"} <= header or not header & {"path", RECORD_ID}:
        raise ReviewError(f"{labels}: needs columns task, label and path or record_id "
                          f"(it has {', '.join(sorted(header)) or 'none'})")
    events, problems = [], []
    for line, r in enumerate(rows, start=2):
        try:
            row = works.find(r.get("path") or None, r.get(RECORD_ID) or None)
            task = (r.get("task") or "").strip()
            if not task:
                raise ReviewError("empty task")
            label = (r.get("label") or "").strip() or None
            events.append(event_for(works, row, task, label, reviewer))
        except ReviewError as e:
            problems.append(f"line {line}: {e}")
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS \
            else ""
        raise ReviewError(f"{labels}: {len(problems)} rows cannot be imported, nothing was: "
                          + "; ".join(problems[:SHOWN_PROBLEMS]) + more)
    return Counter(e.action for e in store.add_many(events))


def export_csv(store: ReviewStore, out: str | os.PathLike[str], history: bool = False) -> int:
    """Write the standing human labels (or, with ``history``, every event) as CSV."""
    if history:
        items: list = list(store.events())
        columns = ("id", *EXPORT_COLUMNS, "undoes")
    else:
        items = list(store.current().values())
        columns = EXPORT_COLUMNS

    def write(f) -> None:
        import io

        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        w = csv.writer(text)
        w.writerow(columns)
        for item in items:
            w.writerow(["" if getattr(item, c) is None else getattr(item, c) for c in columns])
        text.flush()
        text.detach()

    atomic_write(out, write)
    return len(items)


@dataclass(frozen=True)
class TaskStatus:
    """How far a task is reviewed, and how often the machine was right where people looked."""

    task: str
    reviewed: int  # works with a standing human answer
    confirmed: int
    corrected: int  # another label, or the machine's rejected
    set: int  # labels of a task the model does not have
    reviewers: int

    @property
    def agreement(self) -> float | None:
        """Of the reviewed works the machine had labelled, the share people confirmed."""
        judged = self.confirmed + self.corrected
        return self.confirmed / judged if judged else None


def status(store: ReviewStore) -> list[TaskStatus]:
    """One line per task the store has answers for."""
    by_task: dict[str, list[HumanLabel]] = {}
    for h in store.current().values():
        by_task.setdefault(h.task, []).append(h)
    out = []
    for task in sorted(by_task):
        answers = by_task[task]
        actions = Counter(h.action for h in answers)
        out.append(TaskStatus(task, len(answers), actions["confirm"],
                              actions["correct"] + actions["reject"], actions["set"],
                              len({h.reviewer for h in answers})))
    return out


def default_store(meta: Path | None, review: Path | None) -> Path:
    """``--review FILE``, else the store beside ``--meta``; one of them is needed."""
    from artylyze.review.store import review_path

    if review is not None:
        return review
    if meta is None:
        raise ReviewError("say which review store: --meta meta.parquet (the store beside it) "
                          "or --review FILE")
    return review_path(meta)
