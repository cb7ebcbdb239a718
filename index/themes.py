"""Name each cluster by what dominates it: label shares per task, a short name, its neighbours.

A theme is built from the cluster's members (hard assignment) and one label column per
field (ground truth when the collection has it, else the model's predictions), so the
name says e.g. ``Impressionism · landscape · French · 1850-1899``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

NAME_FIELDS = ("style", "genre", "nationality", "period")
NAME_MIN_SHARE = 0.4
TOP_LABELS = 5
CLOSEST = 3


def pretty(label: str) -> str:
    """``Abstract_Expressionism`` -> ``Abstract Expressionism`` (names only; data keeps labels)."""
    return label.replace("_", " ")


def distribution(values: list[str | None]) -> dict[str, Any]:
    """Shares of each known label among ``values`` (unknowns are left out of the shares)."""
    known = [v for v in values if v is not None]
    counts = Counter(known).most_common()
    total = len(known)
    return {"known": total,
            "top": [{"label": lab, "share": round(c / total, 4), "count": c}
                    for lab, c in counts[:TOP_LABELS]] if total else []}


def theme_name(fields: dict[str, dict[str, Any]]) -> str:
    """Top label of each naming field whose share is at least ``NAME_MIN_SHARE``."""
    parts = []
    for name in NAME_FIELDS:
        top = fields.get(name, {}).get("top", [])
        if top and top[0]["share"] >= NAME_MIN_SHARE:
            parts.append(pretty(top[0]["label"]))
    if parts:
        return " · ".join(parts)
    for name in NAME_FIELDS:
        top = fields.get(name, {}).get("top", [])
        if top:
            return f"mixed, mostly {pretty(top[0]['label'])}"
    return "mixed"


def centroid_affinity(vectors: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity between the mean unit vector of each cluster's members: [k, k]."""
    cents = np.zeros((k, vectors.shape[1]), np.float64)
    np.add.at(cents, assign, vectors.astype(np.float64))
    norms = np.linalg.norm(cents, axis=1, keepdims=True)
    cents = np.divide(cents, norms, out=np.zeros_like(cents), where=norms > 0)
    return (cents @ cents.T).astype(np.float32)


def make_themes(assign: np.ndarray, k: int, labels: dict[str, list[str | None]],
                sources: dict[str, str], affinity: np.ndarray,
                weights: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One theme per cluster id 0..k-1: size, label shares per field, name, closest clusters."""
    members = [np.flatnonzero(assign == j) for j in range(k)]
    themes: list[dict[str, Any]] = []
    for j in range(k):
        fields = {name: {"source": sources[name],
                         **distribution([values[i] for i in members[j]])}
                  for name, values in labels.items()}
        themes.append({"id": j, "size": int(len(members[j])),
                       "weight": float(weights[j]) if weights is not None else None,
                       "name": theme_name(fields) if len(members[j]) else "empty",
                       "labels": fields})
    _unique_names(themes)
    for j, theme in enumerate(themes):
        order = [int(i) for i in np.argsort(-affinity[j]) if i != j and len(members[i])]
        theme["closest"] = [{"id": i, "name": themes[i]["name"],
                             "similarity": round(float(affinity[j, i]), 4)}
                            for i in order[:CLOSEST]]
    return themes


def _unique_names(themes: list[dict[str, Any]]) -> None:
    """Two clusters with the same dominant labels get ``(2)``, ``(3)``... by size."""
    seen: Counter[str] = Counter()
    for theme in sorted(themes, key=lambda t: -t["size"]):
        seen[theme["name"]] += 1
        if seen[theme["name"]] > 1:
            theme["name"] = f"{theme['name']} ({seen[theme['name']]})"
