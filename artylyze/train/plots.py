"""Evaluation plots: training curves, one confusion matrix per task, a grid of test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(out_dir: Path, metrics: dict, history: list[dict], images: np.ndarray,
                codes: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                labels: dict[str, list[str]], grid: int = 16) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if history:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        epochs = [h["epoch"] for h in history]
        ax[0].plot(epochs, [h["train_loss"] for h in history])
        ax[0].set(title="training loss", xlabel="epoch")
        for key in [k for k in history[0] if k.startswith("val_") and k.endswith("_acc")]:
            ax[1].plot(epochs, [h[key] for h in history], label=key[4:-4])
        ax[1].plot(epochs, [h["val_mean_macro_f1"] for h in history], "k--", label="mean macro-F1")
        ax[1].set(title="validation", xlabel="epoch")
        ax[1].legend(fontsize=7)
        written.append(_save(fig, out_dir / "curves.png"))
    for task, m in metrics.items():
        cm = np.array(m["confusion"], dtype=float)
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        n = len(labels[task])
        fig, ax = plt.subplots(figsize=(max(5, n * 0.25 + 3), max(4, n * 0.25 + 2)))
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        if n <= 25:
            ax.set_xticks(range(n), labels[task], rotation=90, fontsize=7)
            ax.set_yticks(range(n), labels[task], fontsize=7)
        ax.set(title=f"{task}: accuracy {m['accuracy']:.3f}", xlabel="predicted", ylabel="true")
        written.append(_save(fig, out_dir / f"confusion_{task}.png"))
    written.append(_reliability(plt, metrics, out_dir / "reliability.png"))
    task = next(iter(labels))
    pick = np.linspace(0, len(images) - 1, min(grid, len(images))).astype(int)
    cols = 4
    fig, axes = plt.subplots((len(pick) + cols - 1) // cols, cols, figsize=(12, 3.3 * len(pick)
                                                                          / cols))
    for ax, i in zip(np.ravel(axes), pick, strict=False):
        ax.imshow(images[i])
        true = labels[task][codes[task][i]] if codes[task][i] >= 0 else "?"
        pred = labels[task][int(probs[task][i].argmax())]
        ax.set_title(f"true {true}\npred {pred}", fontsize=8,
                     color="green" if true == pred else "red")
    for ax in np.ravel(axes):
        ax.axis("off")
    written.append(_save(fig, out_dir / "examples.png"))
    return written


def _reliability(plt, metrics: dict, path: Path) -> Path:
    """One reliability diagram per task: accuracy against mean score per score bin."""
    tasks = [t for t, m in metrics.items() if m.get("reliability")]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(3.2 * max(1, len(tasks)), 3.4),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        bins = [b for b in metrics[task]["reliability"] if b["n"]]
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1)
        ax.bar([b["score"] for b in bins], [b["accuracy"] for b in bins], width=1 / 15,
               alpha=0.75, edgecolor="k", linewidth=0.4)
        ax.set(title=f"{task}: ECE {metrics[task]['ece']:.3f}", xlabel="top-1 score",
               ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
