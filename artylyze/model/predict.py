"""Bundle outputs -> what a row says about one image: labels with scores, whether each is
confident, a date with its interval, and how unlike the training paintings the image is.

The graph already applies the fitted temperatures, so scores are calibrated probabilities.
The bundle's ``calibration`` (fitted on validation data, see ``artylyze.train.calibrate``)
adds the rest: per-task score thresholds for ``<task>_confident``, the quantile levels of the
year interval, and the novelty reference. Older bundles without it give labels and scores
only. The tagging engines, the Ray engine and the query side all call :func:`predictions`.

Saying "I don't know" (Model v5) happens here, once, so every output inherits it: when the
``domain`` head says an image is not an artwork (a photograph, document, object or blank
page), no task is confident; and the artist head's ``another artist`` is never a confident
artist, since it names no one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from artylyze.model.bundle import Manifest
from artylyze.model.dating import PERIOD_STEP, period_mass, quantiles
from artylyze.model.manifest import ARTWORK, OTHER_ARTIST

DEFAULT_INTERVAL = (0.1, 0.9)  # until fitted: the central 80% of the distribution


@dataclass(frozen=True)
class YearEstimate:
    year: int
    low: int
    high: int


@dataclass(frozen=True)
class Prediction:
    """Top-k labels per task (best first), the embedding, and what calibration adds."""

    top: dict[str, list[tuple[str, float]]]
    embedding: np.ndarray
    confident: dict[str, bool] = field(default_factory=dict)
    year: YearEstimate | None = None
    novelty: float | None = None
    domain: tuple[str, float] | None = None  # what the image is, and the head's score

    @property
    def artwork(self) -> bool:
        """False when the domain head says the image is not an artwork (True without one)."""
        return self.domain is None or self.domain[0] == ARTWORK


def top_k(probs: np.ndarray, labels: tuple[str, ...] | list[str],
          k: int) -> list[list[tuple[str, float]]]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :min(k, len(labels))]
    return [[(labels[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]


def novelty_scores(embedding: np.ndarray, reference: dict) -> np.ndarray:
    """1 - cosine similarity to the nearest style centre of the validation embeddings: high
    for paintings unlike every style the model was taught (see ``calibrate.class_centres``)."""
    centres = np.asarray(reference["centres"], np.float32)
    return 1.0 - (np.asarray(embedding, np.float32) @ centres.T).max(axis=1)


def confident_flags(top: dict[str, list[tuple[str, float]]], thresholds: dict[str, float],
                    artwork: bool = True) -> dict[str, bool]:
    """``<task>_confident`` per task with a threshold: the top score reaches it, the image is
    an artwork, and the label names something (``another artist`` does not)."""
    return {t: bool(artwork and top[t][0][0] != OTHER_ARTIST and top[t][0][1] >= thresholds[t])
            for t in top if t in thresholds}


def dates(probs: np.ndarray, labels: tuple[str, ...] | list[str], step: int,
          levels: tuple[float, float] | list[float], k: int
          ) -> tuple[list[YearEstimate], list[list[tuple[str, float]]]]:
    """Per row of year-head probabilities: the median year and the ``levels`` interval, and
    the period top-k by mass, most probable first (``period`` is that one, as the page and
    ``period_top`` show it; the median year may fall in the next period when the mass is
    split)."""
    probs = np.asarray(probs, np.float64)
    starts = np.array([int(x) for x in labels])
    q = quantiles(probs, starts, step, [0.5, *levels])
    years = [YearEstimate(*(int(round(v)) for v in row)) for row in q]
    periods, mass = period_mass(probs, starts, PERIOD_STEP)
    return years, top_k(mass, periods, k)


def predictions(outputs: dict[str, np.ndarray], manifest: Manifest,
                k: int) -> list[Prediction]:
    """Turn a batch of bundle outputs into one :class:`Prediction` per image."""
    emb = outputs["embedding"]
    n = len(emb)
    cal = manifest.calibration
    per_task = {t.name: top_k(outputs[t.name], t.labels, k) for t in manifest.tasks
                if t.kind == "class"}
    years: list[YearEstimate | None] = [None] * n
    year = manifest.year_task
    if year is not None:
        levels = cal.get("year_interval", {}).get("levels", DEFAULT_INTERVAL)
        years, per_task["period"] = dates(outputs[year.name], year.labels, year.step or 1,
                                          levels, k)
    thresholds = cal.get("confident", {})
    novelty = _novelty(outputs, emb, cal)
    domain = manifest.domain_task
    domains = top_k(outputs[domain.name], domain.labels, 1) if domain is not None else None
    out = []
    for i in range(n):
        top = {t: per_task[t][i] for t in manifest.label_tasks}
        dom = domains[i][0] if domains is not None else None
        confident = confident_flags(top, thresholds, dom is None or dom[0] == ARTWORK)
        out.append(Prediction(top, emb[i], confident, years[i],
                              None if novelty is None else float(novelty[i]), dom))
    return out


def _novelty(outputs: dict[str, np.ndarray], emb: np.ndarray, cal: dict) -> np.ndarray | None:
    """The bundle's own novelty output (computed from its reference set by
    :class:`~artylyze.model.bundle.Bundle`), else the older centre distance, else none."""
    if "novelty" in outputs:
        return np.asarray(outputs["novelty"], np.float32).reshape(len(emb))  # [N] or [N, 1]
    if "centres" in cal.get("novelty", {}):
        return novelty_scores(emb, cal["novelty"])
    return None
