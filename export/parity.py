"""Does the ONNX graph compute what the torch model computes? Measured on real images.

The bar for an fp32 export: every probability and embedding component within ``atol`` of
torch, and the same top-1 class for every image and task. A disagreement only counts as a
tie (not a failure) when torch itself scores both classes within ``atol`` of each other:
then the order is decided by float rounding, not by the export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from artylyze.export.errors import ExportError

FP32_ATOL = 1e-4


@dataclass(frozen=True)
class TaskParity:
    max_abs_diff: float
    top1_agreement: float  # fraction of images with the same top-1 class
    ties: int  # disagreements where torch's own scores of both classes are within atol


@dataclass(frozen=True)
class ParityReport:
    images: int
    atol: float
    embedding_max_abs_diff: float
    tasks: dict[str, TaskParity]

    @property
    def max_abs_diff(self) -> float:
        return max([self.embedding_max_abs_diff, *(t.max_abs_diff for t in self.tasks.values())])

    @property
    def passed(self) -> bool:
        close = self.max_abs_diff < self.atol
        same_top1 = all(round((1 - t.top1_agreement) * self.images) == t.ties
                        for t in self.tasks.values())
        return close and same_top1

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images, "atol": self.atol, "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "embedding_max_abs_diff": self.embedding_max_abs_diff,
            "tasks": {name: {"max_abs_diff": t.max_abs_diff, "top1_agreement": t.top1_agreement,
                             "ties": t.ties} for name, t in self.tasks.items()},
        }

    def lines(self) -> list[str]:
        """Human-readable summary, one line per output."""
        out = [f"  embedding  max |diff| {self.embedding_max_abs_diff:.2e}"]
        for name, t in self.tasks.items():
            ties = f" ({t.ties} ties)" if t.ties else ""
            out.append(f"  {name:<10} max |diff| {t.max_abs_diff:.2e}  "
                       f"top-1 agreement {100 * t.top1_agreement:.1f}%{ties}")
        return out


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            tasks: Sequence[str], atol: float = FP32_ATOL) -> ParityReport:
    """Compare two runs over the same images (``embedding`` and one array per task)."""
    ref_emb, cand_emb = reference["embedding"], candidate["embedding"]
    if ref_emb.shape != cand_emb.shape:
        raise ExportError(f"embedding shapes differ: torch {ref_emb.shape}, onnx {cand_emb.shape}")
    per_task = {}
    for name in tasks:
        ref, cand = reference[name], candidate[name]
        if ref.shape != cand.shape:
            raise ExportError(f"{name} shapes differ: torch {ref.shape}, onnx {cand.shape}")
        ref_top, cand_top = ref.argmax(1), cand.argmax(1)
        rows = np.flatnonzero(ref_top != cand_top)
        ties = int(np.sum(ref[rows, cand_top[rows]] >= ref[rows, ref_top[rows]] - atol))
        per_task[name] = TaskParity(_max_diff(ref, cand), float(np.mean(ref_top == cand_top)),
                                    ties)
    return ParityReport(len(ref_emb), atol, _max_diff(ref_emb, cand_emb), per_task)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference; NaN or inf anywhere counts as infinitely far."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(diff.max(initial=0.0)) if np.isfinite(diff).all() else float("inf")


def require(report: ParityReport, what: str = "fp32 export") -> None:
    """Raise :class:`ExportError` with the figures when the report misses the bar."""
    if report.passed:
        return
    raise ExportError(
        f"{what} does not match the torch model on {report.images} check images "
        f"(needs max |diff| < {report.atol:g} and identical top-1):\n" + "\n".join(report.lines())
    )
