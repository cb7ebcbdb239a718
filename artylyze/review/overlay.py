"""People over the machine: a meta.parquet batch with the review store's labels laid over it.

For each task a person answered, in every row whose ``sha256`` they reviewed: ``<task>`` is
the human label (null after a plain reject), ``<task>_confident`` is true (false after a
reject), ``<task>_score`` and ``<task>_top`` stay the machine's, and three columns say where
the label came from: ``<task>_source`` (``human`` or ``model``), ``<task>_reviewer`` and
``<task>_reviewed_at``. A task only the review store knows (``set`` for a custom task) gets
its ``<task>`` column this way too. Nothing is written back into meta.parquet: a re-run of
``tag`` replaces that file, the store beside it stays, so a human label can never be lost
to the machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from artylyze.review.store import HumanLabel

HUMAN, MODEL = "human", "model"
PROVENANCE = ("_source", "_reviewer", "_reviewed_at")  # suffixes of the columns added


def overlay_fields(tasks: Sequence[str], human_tasks: Sequence[str],
                   schema: pa.Schema) -> list[pa.Field]:
    """The columns the overlay adds to ``schema``: provenance for every task, a label column
    for tasks only people gave, and ``<task>_confident`` where the model has none."""
    out: list[pa.Field] = []
    have = set(schema.names)
    for t in (*tasks, *human_tasks):
        for name, typ in ((t, pa.string()), (f"{t}_confident", pa.bool_()),
                          *((f"{t}{s}", pa.string()) for s in PROVENANCE)):
            if name not in have:
                out.append(pa.field(name, typ))
                have.add(name)
    return out


def overlay(table: pa.Table, humans: Mapping[tuple[str, str], HumanLabel],
            tasks: Sequence[str]) -> pa.Table:
    """``table`` (with a ``sha256`` column) with the human labels of ``tasks`` laid over the
    model's; only columns ``table`` has are changed (add them first as nulls to get them)."""
    shas = table.column("sha256").to_pylist()
    for t in tasks:
        found = [humans.get((s, t)) if s else None for s in shas]
        if not any(found):
            if f"{t}_source" in table.column_names:
                table = _put(table, f"{t}_source", _sources(table, t, found))
            continue
        table = _replace(table, t, found, lambda h: h.label)
        table = _replace(table, f"{t}_confident", found, lambda h: h.label is not None)
        table = _put(table, f"{t}_source", _sources(table, t, found))
        table = _replace(table, f"{t}_reviewer", found, lambda h: h.reviewer)
        table = _replace(table, f"{t}_reviewed_at", found, lambda h: h.at)
    return table


def _sources(table: pa.Table, task: str, found: list[HumanLabel | None]) -> list[str | None]:
    labels = table.column(task).to_pylist() if task in table.column_names else [None] * len(found)
    return [HUMAN if h is not None else (MODEL if v is not None else None)
            for h, v in zip(found, labels, strict=True)]


def _replace(table: pa.Table, name: str, found: list[HumanLabel | None], value) -> pa.Table:
    if name not in table.column_names:
        return table
    old = table.column(name).to_pylist()
    new = [value(h) if h is not None else v for h, v in zip(found, old, strict=True)]
    return _put(table, name, new)


def _put(table: pa.Table, name: str, values: list) -> pa.Table:
    if name not in table.column_names:
        return table
    i = table.column_names.index(name)
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values, field.type))
