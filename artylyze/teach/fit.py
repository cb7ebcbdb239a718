"""Choose and calibrate a taught task by cross-validation on the works people labelled.

Candidates: logistic regression (a few ``C``), k nearest reviewed works (a few ``k``) and
the nearest class mean. Each is scored by stratified k-fold cross-validation on the human
labels only (machine labels, when a built-in task is corrected, only ever train); the best
accuracy wins (ties: lower log loss), its temperature is fitted on the out-of-fold scores,
and ``confident`` is the lowest score at which out-of-fold labels were right
:data:`CONFIDENT_PRECISION` of the time. The winner is then refitted on every label.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from artylyze.teach.model import NEVER, TaughtTask, TeachError, prior_shift, softmax

MIN_PER_CLASS = 5  # fewer labels than this in a class: refused
GOOD_PER_CLASS = 20  # where benchmarks/teach.py reaches >= 0.8 of a fully trained head
CONFIDENT_PRECISION = 0.9  # the shipped bundle's own rule for ``<task>_confident``
FOLDS = 5
LINEAR_C = (1.0, 10.0, 100.0)
CORRECT_C = (1.0, 10.0, 100.0)  # a built-in task corrected: 100 ~ the bundle's head as is
KNN_K = (5, 15)
TEMPERATURES = np.exp(np.linspace(np.log(0.02), np.log(20.0), 61))


@dataclass
class Extra:
    """Machine labels that train but are never scored (a built-in task being corrected)."""

    x: np.ndarray
    y: np.ndarray  # class indices
    weight: float  # of each machine label, against 1.0 for a person's


def check_counts(labels: Sequence[str], known: Sequence[str] = ()) -> None:
    """Refuse too few labels, saying how many more would help. Classes in ``known`` (the
    built-in task's, which machine labels also teach) need no minimum."""
    counts = Counter(labels)
    if not counts:
        raise TeachError("no labelled works: label some (review them, or --labels CSV) first")
    short = {c: n for c, n in counts.items() if n < MIN_PER_CLASS and c not in set(known)}
    if len(counts) + len(set(known) - set(counts)) < 2:
        raise TeachError(f"only one class ({next(iter(counts))!r}): a task needs two or more")
    if short:
        need = ", ".join(f"{c!r} has {n}, {MIN_PER_CLASS - n} more" for c, n in
                         sorted(short.items()))
        raise TeachError(f"too few labels per class to teach (at least {MIN_PER_CLASS} "
                         f"each; {GOOD_PER_CLASS} each teach well): {need}")


def fit_task(task: str, x: np.ndarray, labels: Sequence[str], model_id: str,
             classes: Sequence[str] | None = None, extra: Extra | None = None,
             seed: int = 0, kinds: Sequence[str] = ("linear", "knn", "centroid"),
             linear_c: Sequence[float] = LINEAR_C, unlabelled: np.ndarray | None = None
             ) -> TaughtTask:
    """The best candidate on ``x`` (L2-normalized embeddings of labelled works), calibrated;
    with ``unlabelled`` (embeddings of the collection), its probabilities are shifted to the
    class proportions EM estimates there (:func:`~artylyze.teach.model.prior_shift`).
    BLAS runs on one thread: these are small problems, and on a busy machine more threads
    only wait on each other."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        taught = _fit_task(task, x, labels, model_id, classes, extra, seed, kinds, linear_c)
        if unlabelled is not None and len(unlabelled):
            counts = Counter(labels)
            train_prior = np.array([counts[c] for c in taught.classes], float) / len(labels)
            shift = prior_shift(taught.proba(unlabelled), train_prior)
            taught.arrays["log_prior"] = shift
            taught.report["collection_prior"] = {
                c: round(float(p), 4) for c, p in zip(taught.classes, train_prior * np.exp(shift),
                                                      strict=True)}
        return taught


def _fit_task(task: str, x: np.ndarray, labels: Sequence[str], model_id: str,
              classes: Sequence[str] | None, extra: Extra | None, seed: int,
              kinds: Sequence[str], linear_c: Sequence[float]) -> TaughtTask:
    classes = list(classes) if classes is not None else sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], np.int64)
    x = np.asarray(x, np.float32)
    folds = _folds(y, seed)
    results = []
    for kind, params in _candidates(kinds, y, extra, linear_c):
        oof = np.zeros((len(y), len(classes)), np.float32)
        for train, test in folds:
            m = _fit(kind, params, x[train], y[train], classes, extra)
            oof[test] = m.logits(x[test])
        acc = float((oof.argmax(1) == y).mean())
        t, nll = _temperature(oof, y)
        results.append((acc, -nll, kind, params, t, oof))
    acc, neg_nll, kind, params, t, oof = max(results, key=lambda r: (round(r[0], 4), r[1]))
    final = _fit(kind, params, x, y, classes, extra)
    final.task, final.model_id, final.temperature = task, model_id, t
    final.confident = _threshold(softmax(oof / t), y)
    final.report = {
        "labels": len(y), "folds": len(folds), "cv_accuracy": round(acc, 4),
        "cv_log_loss": round(-neg_nll, 4),
        "candidates": [{"kind": k, **p, "cv_accuracy": round(a, 4)}
                       for a, _, k, p, _, _ in results],
        "machine_labels": 0 if extra is None else len(extra.y),
    }
    return final


def _folds(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    n = int(min(FOLDS, max(2, np.bincount(y).max())))
    with warnings.catch_warnings():  # a class rarer than the folds: sklearn warns, fine
        warnings.simplefilter("ignore")
        return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(y, y))


def _candidates(kinds: Sequence[str], y: np.ndarray, extra: Extra | None,
                linear_c: Sequence[float]) -> list[tuple[str, dict[str, float]]]:
    out: list[tuple[str, dict[str, float]]] = []
    if "linear" in kinds:
        out += [("linear", {"C": c}) for c in linear_c]
    if "knn" in kinds:
        n = len(y) + (0 if extra is None else len(extra.y))
        out += [("knn", {"k": k}) for k in KNN_K if k < n]
    if "centroid" in kinds:
        out.append(("centroid", {"scale": 1.0}))
    return out


def _fit(kind: str, params: dict[str, float], x: np.ndarray, y: np.ndarray,
         classes: list[str], extra: Extra | None) -> TaughtTask:
    w = np.ones(len(y), np.float32)
    if extra is not None:
        x, y = np.concatenate([x, extra.x]), np.concatenate([y, extra.y])
        w = np.concatenate([w, np.full(len(extra.y), extra.weight, np.float32)])
    task = TaughtTask("", kind, classes, "", params=dict(params))
    if kind == "linear":
        task.arrays = _logistic(x, y, w, len(classes), params["C"])
    elif kind == "knn":
        task.arrays = {"X": x.astype(np.float32), "y": y.astype(np.int32)}
    else:
        task.arrays = {"means": _means(x, y, w, len(classes))}
    return task


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, n_classes: int, c: float
              ) -> dict[str, np.ndarray]:
    """Multinomial logistic regression; W and b laid out for every class, seen or not."""
    from sklearn.linear_model import LogisticRegression

    seen = np.unique(y)
    W = np.zeros((x.shape[1], n_classes), np.float32)
    b = np.full(n_classes, -30.0, np.float32)  # a class with no example is never predicted
    if len(seen) == 1:
        b[seen[0]] = 0.0
        return {"W": W, "b": b}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs may stop at max_iter: close enough here
        lr = LogisticRegression(C=c, max_iter=300).fit(x, y, sample_weight=w)
    coef, icpt = lr.coef_, lr.intercept_
    if len(seen) == 2:  # sklearn gives one row for two classes
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    W[:, seen], b[seen] = coef.T, icpt
    return {"W": W, "b": b}


def _means(x: np.ndarray, y: np.ndarray, w: np.ndarray, n_classes: int) -> np.ndarray:
    means = np.zeros((n_classes, x.shape[1]), np.float32)
    for c in range(n_classes):
        m = y == c
        if m.any():
            v = (x[m] * w[m, None]).sum(0)
            means[c] = v / max(float(np.linalg.norm(v)), 1e-12)
        else:
            means[c] = 0.0  # a class with no example: cosine 0 to everything
    return means


def _temperature(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The temperature of least out-of-fold log loss (a 1-D grid: robust and fast)."""
    best = (1.0, np.inf)
    for t in TEMPERATURES:
        p = softmax(logits / t)[np.arange(len(y)), y]
        nll = float(-np.log(np.clip(p, 1e-12, None)).mean())
        if nll < best[1]:
            best = (float(t), nll)
    return best


def _threshold(proba: np.ndarray, y: np.ndarray) -> float:
    """Lowest top score whose labels (that score and above) were right often enough."""
    top, right = proba.max(1), proba.argmax(1) == y
    order = np.argsort(-top)
    prec = np.cumsum(right[order]) / np.arange(1, len(y) + 1)
    ok = np.nonzero(prec >= CONFIDENT_PRECISION)[0]
    if len(ok) == 0 or ok[-1] < 4:  # not even five confident labels: never say confident
        return NEVER
    return float(top[order][ok[-1]])
