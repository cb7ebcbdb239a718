"""Dates from a distribution over year bins: an estimate, an interval, and the period.

The model's ``year`` head gives probabilities over consecutive bins (decades by default;
bin ``i`` covers ``[start_i, start_i + step)``). Reading the distribution as a piecewise-linear
CDF, the estimate is its median (the value that minimises the expected error in years) and
the interval runs between two quantiles fitted on validation data so that it holds the
stated share of works. Periods are half-century bins (``1850-1899``); a period's score is the
probability mass of its decades.
"""

from __future__ import annotations

import numpy as np

PERIOD_STEP = 50


def period_of(year: float | None, step: int = PERIOD_STEP) -> str | None:
    """``1887 -> "1850-1899"``; None (or NaN) stays None."""
    if year is None or year != year:
        return None
    start = int(year) // step * step
    return f"{start}-{start + step - 1}"


def quantiles(probs: np.ndarray, starts: np.ndarray, step: int,
              levels: np.ndarray | list[float]) -> np.ndarray:
    """Years at which the CDF of each row of ``probs`` [N, B] reaches each level: [N, L]."""
    probs = np.asarray(probs, np.float64)
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    cdf = np.cumsum(probs, axis=1)
    edges = np.concatenate([starts, [starts[-1] + step]]).astype(np.float64)
    out = np.empty((len(probs), len(levels)))
    for j, q in enumerate(levels):
        i = np.minimum((cdf < q).sum(axis=1), probs.shape[1] - 1)  # first bin reaching q
        before = np.where(i > 0, cdf[np.arange(len(probs)), i - 1], 0.0)
        mass = np.maximum(probs[np.arange(len(probs)), i], 1e-12)
        frac = np.clip((q - before) / mass, 0.0, 1.0)
        out[:, j] = edges[i] + frac * step
    return out


def period_mass(probs: np.ndarray, starts: np.ndarray,
                step: int = PERIOD_STEP) -> tuple[list[str], np.ndarray]:
    """Sum bin probabilities into periods: (period labels, mass [N, P])."""
    first = np.asarray(starts) // step * step
    periods = sorted(set(first.tolist()))
    column = {p: k for k, p in enumerate(periods)}
    mass = np.zeros((len(probs), len(periods)), np.float64)
    for b, p in enumerate(first.tolist()):
        mass[:, column[p]] += probs[:, b]
    return [f"{p}-{p + step - 1}" for p in periods], mass
