"""``evaluate``'s "what the model looks at" sheets: per task and class, the test images the
model is surest it belongs to, the right ones and the wrong ones, each with its saliency map
for that class. Mistakes made with confidence show what the model takes for the class.

Every image is masked once (:mod:`artylyze.explain.saliency`) and serves every task it appears in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from artylyze.explain.overlay import overlay
from artylyze.explain.saliency import Predictor, SaliencyOptions, perturb
from artylyze.index.plots import pyplot, save_figure
from artylyze.options import Evaluate
from artylyze.train.metrics import UNKNOWN

EXAMPLES: int = Evaluate.saliency.default  # right and wrong examples per class
MAX_CLASSES = 12  # rows per sheet: the classes with the most test images
TILE_INCH = 1.9


def sheet_name(task: str) -> str:
    return f"looks_at_{task}.png"


def chosen(codes: np.ndarray, probs: np.ndarray, cls: int,
           per_class: int) -> tuple[list[int], list[int]]:
    """The images predicted as ``cls`` with the highest probability: (right, wrong)."""
    pred = probs.argmax(axis=1)
    order = np.argsort(-probs[:, cls], kind="stable")
    right = [int(i) for i in order if pred[i] == cls and codes[i] == cls][:per_class]
    wrong = [int(i) for i in order
             if pred[i] == cls and codes[i] != cls and codes[i] != UNKNOWN][:per_class]
    return right, wrong


def sheet_classes(codes: np.ndarray, n_classes: int, limit: int = MAX_CLASSES) -> list[int]:
    """The classes with test images, most frequent first, at most ``limit``, in label order."""
    counts = np.bincount(codes[codes != UNKNOWN], minlength=n_classes)
    top = [int(c) for c in np.argsort(-counts, kind="stable")[:limit] if counts[c]]
    return sorted(top)


def write_sheets(out_dir: str | Path, predictor: Predictor, images: np.ndarray,
                 codes: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                 labels: dict[str, list[str]], per_class: int = EXAMPLES,
                 options: SaliencyOptions = SaliencyOptions()) -> list[Path]:
    """One sheet per task with labelled test images; returns the files written."""
    plan: dict[str, dict[int, tuple[list[int], list[int]]]] = {}
    wanted: dict[int, set[tuple[str, int]]] = {}
    for task, task_codes in codes.items():
        if task not in probs or not (task_codes != UNKNOWN).any():
            continue
        rows = {c: chosen(task_codes, probs[task], c, per_class)
                for c in sheet_classes(task_codes, len(labels[task]))}
        plan[task] = rows
        for c, (right, wrong) in rows.items():
            for i in right + wrong:
                wanted.setdefault(i, set()).add((task, c))
    maps: dict[tuple[int, str, int], np.ndarray] = {}
    for i, targets in sorted(wanted.items()):
        perturbed = perturb(predictor, images[i], options)
        for task, c in targets:
            maps[(i, task, c)] = perturbed.map(task, c)
    return [_sheet(Path(out_dir) / sheet_name(task), task, rows, images, codes[task],
                   probs[task], labels[task], maps, per_class, options.method)
            for task, rows in plan.items()]


def _sheet(path: Path, task: str, rows: dict[int, tuple[list[int], list[int]]],
           images: np.ndarray, codes: np.ndarray, probs: np.ndarray, names: list[str],
           maps: dict[tuple[int, str, int], np.ndarray], per_class: int, method: str) -> Path:
    """Two panels side by side, right and wrong, one row per class."""
    plt = pyplot()
    fig = plt.figure(figsize=(TILE_INCH * 2 * per_class + 2.2, TILE_INCH * 1.2 * len(rows) + 1.2),
                     layout="constrained")
    panels = fig.subfigures(1, 2, wspace=0.04)
    heads = ("most confident correct", "most confident mistakes (predicted as the row's class)")
    for side, (panel, head) in enumerate(zip(panels, heads, strict=True)):
        panel.suptitle(head, fontsize=10, weight="bold")
        axes = panel.subplots(len(rows), per_class, squeeze=False)
        for r, (cls, picked) in enumerate(rows.items()):
            cells = picked[side] + [None] * (per_class - len(picked[side]))
            for ax, i in zip(axes[r], cells, strict=True):
                ax.set_xticks([])
                ax.set_yticks([])
                if i is None:  # a two-line title all the same, so rows stay aligned
                    ax.set_title("\n", fontsize=7)
                    ax.text(0.5, 0.5, "none", ha="center", va="center", color="#999",
                            transform=ax.transAxes)
                    continue
                ax.imshow(overlay(Image.fromarray(images[i]), maps[(i, task, cls)]))
                truth = "correct" if side == 0 else \
                    f"is {names[codes[i]].replace('_', ' ')[:22]}"
                ax.set_title(f"p={probs[i, cls]:.2f}\n{truth}", fontsize=7,
                             color="#b3261e" if side else "#1a7f37")
            if side == 0:
                axes[r][0].set_ylabel(names[cls].replace("_", " ")[:24], fontsize=8)
    fig.suptitle(f"What the model looks at: {task} ({method} saliency for the row's class)",
                 fontsize=11)
    return save_figure(fig, path)
