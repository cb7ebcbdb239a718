"""``teach``: fit a task on the embeddings an output already holds, write its columns, keep it.

And the other half: :func:`apply_kept`, which ``tag`` calls after its merge, so works tagged
later get every kept task's columns too. Kept tasks live beside the output, in
``<out>.taught/<task>.json`` + ``.npz`` (see :mod:`artylyze.teach.model`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artylyze.model.bundle import Manifest
from artylyze.progress import Progress
from artylyze.store import META_BUNDLE, OutputLock, OutputTarget
from artylyze.teach.columns import describe, read_file, rewrite, task_arrays, taught_note
from artylyze.teach.fit import CORRECT_C, Extra, check_counts, fit_task
from artylyze.teach.labels import Works, labels_for
from artylyze.teach.model import TaughtTask, TeachError

MACHINE_MAX = 4000  # machine labels (a uniform sample) that train a corrected built-in task
MACHINE_WEIGHT = 1 / 3  # of each, against 1.0 for a person's label
PRIOR_SAMPLE = 20_000  # works whose predictions estimate a new task's class proportions


@dataclass
class TeachReport:
    """What one ``teach`` did."""

    task: TaughtTask
    labelled: int
    rows: int
    files: int
    kept: tuple[Path, Path]
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


def kept_dir(out: str | os.PathLike[str]) -> Path:
    """Where the taught tasks of the output ``out`` are kept (beside it, never inside a part
    folder, which ``tag`` replaces as a whole)."""
    path = Path(os.path.abspath(os.fspath(out)))
    return path.parent / (path.name + ".taught")


def kept_tasks(out: str | os.PathLike[str]) -> list[TaughtTask]:
    folder = kept_dir(out)
    return [TaughtTask.load(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def teach(out: str | os.PathLike[str], task: str, labels_csv: str | os.PathLike[str] | None,
          review: str | os.PathLike[str] | None = None, progress: Progress | None = None,
          seed: int = 0) -> TeachReport:
    """Teach ``task`` from human labels on the output ``out`` (meta.parquet or a part folder)."""
    progress = progress or Progress()
    t0 = time.perf_counter()
    target = OutputTarget.resolve(out)
    with OutputLock(target):
        files = target.files()
        if not files:
            raise TeachError(f"{target.path}: no meta.parquet to teach from (run tag first)")
        progress.start(len(files) * 2)
        rows = []
        for f in files:
            rows.append(read_file(f))
            progress.advance(1, 0)
        stages = {"read": time.perf_counter() - t0}
        taught = _fit(target.path, task, rows, labels_csv, review, seed)
        stages["fit"] = time.perf_counter() - t0 - stages["read"]
        note = {**taught_note(files[0]), **describe([taught])}
        for r in rows:
            rewrite(r.file, task_arrays(taught, r.x, r.valid, r.top_k), note)
            progress.advance(1, 0)
        kept = taught.save(kept_dir(target.path))
        progress.finish()
    stages["write"] = time.perf_counter() - t0 - stages["read"] - stages["fit"]
    return TeachReport(taught, taught.report["labels"], sum(len(r.paths) for r in rows),
                       len(files), kept, time.perf_counter() - t0, stages)


def _fit(out: Path, task: str, rows: list, labels_csv, review, seed: int) -> TaughtTask:
    models = {r.model_id for r in rows}
    if len(models) != 1 or None in models:
        raise TeachError(f"{out}: its files come from {len(models)} models; tag it again")
    model_id = models.pop()
    x = np.concatenate([r.x for r in rows])
    valid = np.concatenate([r.valid for r in rows])
    works = Works([p for r in rows for p in r.paths], [s for r in rows for s in r.sha256],
                  None if any(r.record_ids is None for r in rows)
                  else [i for r in rows for i in r.record_ids], rows[0].root)
    found = {i: lab for i, lab in labels_for(task, works, labels_csv, review, out).items()
             if valid[i]}
    builtin = _builtin_classes(rows[0].file, task)
    check_counts(list(found.values()), builtin)
    # rows in content order, not file order: tag writes them as decoding finishes, and the
    # folds, samples and so the fit must not depend on that
    key = [(s or "", p) for s, p in zip(works.sha256, works.paths, strict=True)]
    idx = np.array(sorted(found, key=key.__getitem__), np.int64)
    labels = [found[i] for i in idx]
    classes = list(builtin) + sorted(set(labels) - set(builtin)) if builtin else None
    if not builtin:
        pool = np.nonzero(valid)[0]
        pool = np.array(sorted(pool, key=key.__getitem__), np.int64)
        sample = np.random.default_rng(seed).permutation(pool)[:PRIOR_SAMPLE]
        return fit_task(task, x[idx], labels, model_id, None, None, seed,
                        unlabelled=x[np.sort(sample)])
    extra = _machine_labels(rows, task, classes, seed, key)
    return fit_task(task, x[idx], labels, model_id, classes, extra, seed, kinds=("linear",),
                    linear_c=CORRECT_C)


def _builtin_classes(file: Path, task: str) -> tuple[str, ...]:
    """The classes of ``task`` if the bundle that wrote ``file`` has it as a head, else ()."""
    import pyarrow.parquet as pq

    try:
        manifest = Manifest.from_dict(json.loads(pq.read_schema(file).metadata[META_BUNDLE]))
    except (KeyError, ValueError, TypeError):
        return ()
    return next((t.labels for t in manifest.tasks if t.name == task), ())


def _machine_labels(rows: list, task: str, classes: list[str], seed: int,
                    key: list[tuple[str, str]]) -> Extra | None:
    """The bundle's own labels of a uniform sample of the works, reviewed ones included (a
    person's label there outweighs the machine's three to one): a regularized linear model
    on them reproduces the bundle's (linear) head where people said nothing, and people's
    labels move its boundaries (benchmarks/correction_loop.py measures both apart)."""
    import pyarrow.parquet as pq

    labels: list[str | None] = []
    for r in rows:
        labels += pq.read_table(r.file, columns=[task]).column(task).to_pylist()
    valid = np.concatenate([r.valid for r in rows])
    index = {c: i for i, c in enumerate(classes)}
    ok = np.nonzero(valid & np.array([lab in index for lab in labels], bool))[0]
    if len(ok) == 0:
        return None
    ok = np.array(sorted(ok, key=key.__getitem__), np.int64)  # content order (see _fit)
    pick = np.random.default_rng(seed).permutation(ok)[:MACHINE_MAX]
    pick = np.array(sorted(pick, key=key.__getitem__), np.int64)
    x = np.concatenate([r.x for r in rows])
    return Extra(x[pick], np.array([index[labels[i]] for i in pick]), MACHINE_WEIGHT)


def apply_kept(target: OutputTarget) -> list[str]:
    """Give every row of the output the columns of each kept task (``tag`` calls it after
    its merge, holding the lock). Returns warnings (a task fitted on another model's
    embeddings is skipped, not applied to embeddings it does not understand)."""
    tasks = kept_tasks(target.path)
    if not tasks:
        return []
    warnings: list[str] = []
    for f in target.files():
        rows = read_file(f)
        fit = [t for t in tasks if t.model_id == rows.model_id]
        for t in tasks:
            if t.model_id != rows.model_id and not warnings:
                warnings.append(f"taught task {t.task!r} was fitted on {t.model_id}'s "
                                f"embeddings, this output has {rows.model_id}'s: not applied; "
                                "teach it again")
        if not fit:
            continue
        columns = {}
        for t in fit:
            columns.update(task_arrays(t, rows.x, rows.valid, rows.top_k))
        rewrite(f, columns, {**taught_note(f), **describe(fit)})
    return warnings
