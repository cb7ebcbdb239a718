"""Classification metrics per task, computed on the rows whose label is known."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

UNKNOWN = -1


def task_metrics(codes: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, top-3 accuracy, macro and weighted P/R/F1 and the confusion matrix.

    Rows with an unknown label (``-1``) are skipped, as in training.
    """
    known = codes != UNKNOWN
    y, p = codes[known], probs[known]
    n_classes = len(labels)
    if len(y) == 0:
        return {"n": 0, "accuracy": float("nan"), "top3_accuracy": float("nan"),
                "macro_f1": 0.0}
    pred = p.argmax(1)
    top3 = np.argsort(-p, axis=1)[:, :3]
    classes = np.arange(n_classes)
    out: dict = {"n": int(len(y)), "accuracy": float((pred == y).mean()),
                 "top3_accuracy": float((top3 == y[:, None]).any(1).mean())}
    for avg in ("macro", "weighted"):
        # only classes present in y or pred count, as sklearn does by default
        present = np.union1d(np.unique(y), np.unique(pred))
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, pred, labels=present, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(prec), f"{avg}_recall": float(rec),
                    f"{avg}_f1": float(f1)})
    out["labels"] = list(labels)
    out["confusion"] = confusion_matrix(y, pred, labels=classes).tolist()
    return out


def split_metrics(probs: dict[str, np.ndarray], codes: dict[str, np.ndarray],
                  labels: dict[str, list[str]]) -> dict[str, dict]:
    """``task_metrics`` for every task of a split."""
    return {t: task_metrics(codes[t], probs[t], labels[t]) for t in labels}


def mean_macro_f1(metrics: dict[str, dict]) -> float:
    return float(np.mean([m["macro_f1"] for m in metrics.values()]))
