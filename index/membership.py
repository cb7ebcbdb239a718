"""Memberships that mean what they say: a temperature for the mixture's posteriors.

In 32 dims a Gaussian mixture's log-densities differ by tens of nats between components,
so its posteriors are almost always 0.99+ for one cluster, while the cluster's dominant
style is the painting's own far less often (the shipped gallery: median top membership
0.994, agreement 70%). Dividing the log-joint by a temperature ``T > 1`` before the softmax
keeps every ranking (the top cluster is the same) and spreads the membership so the top
share matches how often the top cluster's style is right: temperature scaling, as for the
model's heads, fitted on labelled works the mixture's sharpness was not tuned on.
"""

from __future__ import annotations

import numpy as np

BINS = 10
T_RANGE = (1.0, 1e4)


def softmax_t(log_joint: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Posteriors [n, k] of a log-joint [n, k] at ``temperature``; each row sums to 1."""
    z = np.asarray(log_joint, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def agreement(dominant: list[str | None], labels: np.ndarray) -> np.ndarray:
    """[n, k] booleans: cluster j's dominant label is work i's label (None agrees with none)."""
    dom = np.array([d if d else "\0" for d in dominant], object)
    return np.asarray(labels, object)[:, None] == dom[None, :]


def top_agrees(log_joint: np.ndarray, agree: np.ndarray) -> np.ndarray:
    """Whether each work's top cluster agrees; the same at every temperature."""
    return agree[np.arange(len(agree)), np.asarray(log_joint).argmax(axis=1)]


def calibration_error(top: np.ndarray, right: np.ndarray, bins: int = BINS) -> float:
    """ECE: the top membership against how often the top cluster agrees, in equal-width
    bins, weighted by their share of works."""
    top, right = np.asarray(top, np.float64), np.asarray(right, np.float64)
    if not len(top):
        return 0.0
    which = np.minimum((top * bins).astype(int), bins - 1)
    err = 0.0
    for b in np.unique(which):
        m = which == b
        err += m.mean() * abs(top[m].mean() - right[m].mean())
    return float(err)


def _loss(log_joint: np.ndarray, right: np.ndarray, temperature: float) -> float:
    top = np.clip(softmax_t(log_joint, temperature).max(axis=1), 1e-9, 1 - 1e-9)
    return float(-np.mean(right * np.log(top) + (1 - right) * np.log(1 - top)))


def fit_temperature(log_joint: np.ndarray, agree: np.ndarray) -> float:
    """The temperature whose top membership best predicts whether the top cluster agrees
    (log-loss, searched on a log scale in ``T_RANGE``); 1.0 without rows to fit on or when
    they all agree or none does."""
    log_joint = np.asarray(log_joint, np.float64)
    if not len(log_joint) or log_joint.shape[1] < 2:
        return 1.0
    right = top_agrees(log_joint, agree).astype(np.float64)
    if right.min() == right.max():
        return 1.0
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    grid = np.linspace(lo, hi, 41)
    best = grid[int(np.argmin([_loss(log_joint, right, np.exp(g)) for g in grid]))]
    step = grid[1] - grid[0]
    fine = np.linspace(max(lo, best - step), min(hi, best + step), 41)
    return float(np.exp(fine[int(np.argmin([_loss(log_joint, right, np.exp(g))
                                            for g in fine]))]))
