"""A taught task: what ``teach`` fitted, kept as JSON + npz beside the output (never pickle).

Three kinds, all applied with a few numpy lines to L2-normalized embeddings ``X``:

- ``linear``: logistic regression, ``logits = X @ W + b``;
- ``knn``: cosine similarity to the reviewed works' embeddings, a vote of the ``k`` nearest
  weighted by ``exp(sim / 0.1)``, logits = log of the vote shares;
- ``centroid``: nearest class mean, ``logits = scale * cos(X, mean_c)``.

Probabilities are ``softmax(logits / temperature)``; the temperature and the ``confident``
threshold come from the cross-validation that chose the kind (see :mod:`artylyze.teach.fit`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.atomic import atomic_write, atomic_write_text
from artylyze.errors import ArtyLyzeError

FORMAT_VERSION = 1
KINDS = ("linear", "knn", "centroid")
KNN_SHARPNESS = 0.1  # similarity scale of the kNN vote weights
NEVER = 1.01  # a confident threshold no score reaches


class TeachError(ArtyLyzeError):
    """A task cannot be taught or applied (too few labels, no embeddings, bad kept task)."""


@dataclass
class TaughtTask:
    """A fitted task; ``arrays`` holds its numpy parameters (saved to the npz)."""

    task: str
    kind: str
    classes: list[str]
    model_id: str  # the bundle whose embeddings it was fitted on
    temperature: float = 1.0
    confident: float = NEVER  # score at or above which a label counts as confident
    params: dict[str, float] = field(default_factory=dict)  # k, C, scale...
    report: dict[str, Any] = field(default_factory=dict)  # what the cross-validation measured
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw scores per class (before the temperature) of embeddings ``x`` [n, dim]."""
        x = np.asarray(x, np.float32)
        a = self.arrays
        if self.kind == "linear":
            return x @ a["W"] + a["b"]
        if self.kind == "centroid":
            return float(self.params["scale"]) * (x @ a["means"].T)
        if self.kind == "knn":
            return _knn_logits(x, a["X"], a["y"], len(self.classes), int(self.params["k"]))
        raise TeachError(f"unknown taught-task kind {self.kind!r}")

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities [n, classes], shifted to the collection's class
        proportions when teach estimated them (``log_prior``, see :func:`prior_shift`)."""
        z = self.logits(x) / self.temperature
        if "log_prior" in self.arrays:
            z = z + self.arrays["log_prior"]
        return softmax(z)

    def save(self, folder: Path) -> tuple[Path, Path]:
        """``<task>.json`` (readable settings) and ``<task>.npz`` (arrays), each atomic."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in asdict(self).items() if k != "arrays"}
        meta["format_version"] = FORMAT_VERSION
        npz, js = folder / f"{self.task}.npz", folder / f"{self.task}.json"
        atomic_write(npz, lambda f: np.savez(f, **self.arrays))
        atomic_write_text(js, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return js, npz

    @classmethod
    def load(cls, json_path: Path) -> TaughtTask:
        """Read a kept task; refuses a newer format or a damaged file with a clear error."""
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
            version = meta.pop("format_version", None)
            if version != FORMAT_VERSION:
                raise TeachError(f"{json_path}: taught-task format {version!r}, this "
                                 f"ArtyLyze reads {FORMAT_VERSION}; teach the task again")
            with np.load(json_path.with_suffix(".npz"), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            task = cls(**meta, arrays=arrays)
        except (OSError, ValueError, TypeError) as e:
            raise TeachError(f"cannot read the taught task {json_path} ({e})") from e
        if task.kind not in KINDS:
            raise TeachError(f"{json_path}: unknown kind {task.kind!r}")
        return task


def prior_shift(proba: np.ndarray, train_prior: np.ndarray, steps: int = 50) -> np.ndarray:
    """log(collection prior / training prior) by EM on unlabelled works' probabilities
    (Saerens, Latinne & Decaestecker 2002): people label a few works of every class, so
    the training prior is flat, while a collection may be 90% paintings."""
    train_prior = np.clip(train_prior, 1e-6, None)
    prior = train_prior.copy()
    for _ in range(steps):
        adjusted = proba * (prior / train_prior)
        adjusted /= adjusted.sum(axis=1, keepdims=True)
        new = np.clip(adjusted.mean(axis=0), 1e-6, None)
        if np.abs(new - prior).max() < 1e-5:
            prior = new
            break
        prior = new
    return np.log(prior / train_prior).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _knn_logits(x: np.ndarray, ref: np.ndarray, y: np.ndarray, n_classes: int, k: int,
                chunk: int = 16384) -> np.ndarray:
    """log of the similarity-weighted vote of the ``k`` nearest reference works."""
    k = min(k, len(ref))
    out = np.empty((len(x), n_classes), np.float32)
    for s in range(0, len(x), chunk):
        sim = x[s:s + chunk] @ ref.T
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < len(ref) else \
            np.broadcast_to(np.arange(len(ref)), sim.shape)
        top = np.take_along_axis(sim, idx, axis=1)
        w = np.exp((top - top.max(axis=1, keepdims=True)) / KNN_SHARPNESS)
        labels = y[idx]
        votes = np.stack([(w * (labels == c)).sum(axis=1) for c in range(n_classes)], axis=1)
        out[s:s + chunk] = np.log(votes / votes.sum(axis=1, keepdims=True) + 1e-4)
    return out
