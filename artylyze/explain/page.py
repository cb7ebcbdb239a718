"""What ``explain`` writes: one PNG per image and task (the painting, each saliency map over
it, the top predictions) and one HTML page that shows them all, plus the JSON summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artylyze.explain.core import GRADCAM, Explained
from artylyze.explain.overlay import colours, normalized, overlay, resized_map
from artylyze.index.html import esc, page, write_page
from artylyze.index.plots import pyplot, save_figure
from artylyze.index.themes import pretty

DISPLAY = 360  # long side of the painting in the figures, px
GRID = 8  # the JSON's coarse map: GRID x GRID shares of the saliency
METHOD_TITLES = {
    "rise": "RISE: where keeping detail raises p",
    "occlusion": "occlusion: where hiding detail lowers p",
    GRADCAM: "Grad-CAM: last convolutional block",
}
METHOD_NOTES = {
    "rise": "RISE, random masks: where keeping the painting's detail raises the label's "
            "probability",
    "occlusion": "occlusion, a sliding window: where hiding the painting's detail lowers the "
                 "label's probability",
    GRADCAM: "Grad-CAM: where the last convolutional block's features that raise the label's "
             "score sit",
}


def display_image(explained: Explained, resize: str) -> Image.Image:
    """The painting as the figures show it: the original aspect ratio when the model
    stretched it (the map is stretched back with it), else the model's own square."""
    img = Image.fromarray(explained.pixels)
    if resize != "stretch":
        return img.resize((DISPLAY, DISPLAY), Image.Resampling.BICUBIC)
    scale = DISPLAY / max(explained.width, explained.height)
    size = (max(1, round(explained.width * scale)), max(1, round(explained.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC)


def figure(explained: Explained, target: int, resize: str, path: Path) -> Path:
    """Painting, one overlay per method and the task's top predictions, in one PNG."""
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    t = explained.targets[target]
    shown = display_image(explained, resize)
    methods = list(explained.maps)
    cols = 2 + len(methods)
    fig, axes = plt.subplots(1, cols, figsize=(3.3 * cols + 1.2, 4.0), layout="constrained",
                             gridspec_kw={"width_ratios": [1] * (cols - 1) + [1.2]})
    axes[0].imshow(shown)
    axes[0].set_title("painting", fontsize=10)
    for ax, method in zip(axes[1:], methods, strict=False):
        ax.imshow(overlay(shown, explained.maps[method][target]))
        ax.set_title(METHOD_TITLES.get(method, method), fontsize=10)
    for ax in axes[:-1]:
        ax.axis("off")
    cmap = ListedColormap(colours(np.linspace(0, 1, 256)) / 255.0)
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=list(axes[1:-1]), shrink=0.8,
                       location="bottom", aspect=30)
    bar.set_label(f"saliency for {pretty(t.label)} (1 = the map's peak)", fontsize=9)
    _bars(axes[-1], explained.predicted[t.task], t)
    fig.suptitle(f"{Path(explained.name).name}\n{t.task}: {pretty(t.label)} "
                 f"(p = {t.score:.2f})", fontsize=11)
    return save_figure(fig, path)


def _bars(ax, top: list[dict[str, Any]], target) -> None:
    names = [pretty(p["label"]) for p in top][::-1]
    scores = [p["score"] for p in top][::-1]
    colour = ["#d0631f" if p["label"] == target.label else "#7a93b5" for p in top][::-1]
    ax.barh(range(len(top)), scores, color=colour)
    ax.set_yticks(range(len(top)), names, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=9)
    ax.set_title(f"top {target.task} predictions", fontsize=10)
    for i, s in enumerate(scores):  # beside the bar, or inside it in white when it is long
        inside = s > 0.8
        ax.text(s - 0.02 if inside else s + 0.02, i, f"{s:.2f}", va="center", fontsize=8,
                ha="right" if inside else "left", color="white" if inside else "black")


def file_names(explained: list[Explained]) -> list[list[str]]:
    """``<stem>.<task>.png`` per image and target, made unique (``-2``, ``-3``) and safe."""
    seen: dict[str, int] = {}
    names = []
    for e in explained:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(e.name).stem).strip("._") or "image"
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}-{seen[stem]}"
        names.append([f"{stem}.{t.task}.png" for t in e.targets])
    return names


def coarse(saliency: np.ndarray, cells: int = GRID) -> list[list[float]]:
    """The map as ``cells`` x ``cells`` shares of its total (rows top to bottom)."""
    m = resized_map(saliency, cells, cells) if saliency.shape[0] % cells else \
        saliency.reshape(cells, saliency.shape[0] // cells, cells, -1).sum(axis=(1, 3))
    m = np.maximum(m, 0)
    total = float(m.sum())
    return (np.round(m / total, 4) if total > 0 else np.zeros_like(m)).tolist()


def summary(explained: Explained, pngs: list[str]) -> dict[str, Any]:
    """What ``--json`` prints for one image."""
    targets = []
    for i, t in enumerate(explained.targets):
        peak = {}
        for method, maps in explained.maps.items():
            y, x = np.unravel_index(int(np.argmax(normalized(maps[i]))), maps[i].shape)
            peak[method] = {"x": round((x + 0.5) / maps[i].shape[1], 3),
                            "y": round((y + 0.5) / maps[i].shape[0], 3),
                            "grid": coarse(maps[i])}
        targets.append({"task": t.task, "label": t.label, "score": round(t.score, 4),
                        "png": pngs[i], "maps": peak})
    return {"image": explained.name, "width": explained.width, "height": explained.height,
            "predicted": explained.predicted, "explained": targets,
            "passes": explained.passes, "seconds": round(explained.seconds, 3)}


def explain_html(explained: list[Explained], pngs: list[list[str]], model: str,
                 methods: list[str]) -> str:
    """One section per image: its figures and a table of every task's top predictions."""
    how = "; ".join(esc(METHOD_NOTES.get(m, m)) for m in methods)
    blocks = [f"<p>Model <code>{esc(model)}</code>. Maps: {how}. Brighter = more evidence for "
              "the label named above each figure.</p>"]
    for e, files in zip(explained, pngs, strict=True):
        rows = "".join(
            f"<tr><td>{esc(task)}</td><td>"
            + ", ".join(f"{esc(pretty(p['label']))} ({p['score']:.2f})" for p in top[:3])
            + "</td></tr>" for task, top in e.predicted.items())
        figs = "".join(f'<p><img src="{esc(f)}" alt="{esc(Path(e.name).name)}: {esc(t.task)} '
                       f'saliency" style="max-width:100%"></p>'
                       for f, t in zip(files, e.targets, strict=True))
        blocks.append(f"<section><h2>{esc(Path(e.name).name)}</h2>{figs}<table><tr><th>task"
                      f"</th><th>top predictions</th></tr>{rows}</table></section>")
    return page("What the model looks at", "\n".join(blocks))


def write_explanations(explained: list[Explained], out: str | Path, model: str, resize: str,
                       methods: list[str]) -> tuple[Path, list[dict[str, Any]]]:
    """Every figure, the page (``index.html``) and the JSON-ready summaries."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = file_names(explained)
    for e, files in zip(explained, names, strict=True):
        for i, name in enumerate(files):
            figure(e, i, resize, out / name)
    html = write_page(out / "index.html", explain_html(explained, names, model, methods))
    return html, [summary(e, [str(out / n) for n in files])
                  for e, files in zip(explained, names, strict=True)]
