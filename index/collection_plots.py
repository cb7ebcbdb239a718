"""The collection report's charts (matplotlib, Agg): the journey of styles through time,
label heat maps with counts, the ordered affinity matrix with its dendrogram, and the
clusters each style draws on. Every chart has a title, axis labels and a legend or colour
bar; long label lists get taller figures instead of smaller text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from artylyze.index.plots import pyplot, save_figure
from artylyze.index.themes import pretty

ROW_INCH = 0.32  # height per heat-map row
COL_INCH = 0.5  # width per heat-map column
MIN_SHOWN = 0.05  # influence shares below this are not written in their cell


def _palette(n: int) -> list:
    """``n`` distinct colours: tab10's, then (past ten) tab20's light tints after its dark ones,
    so that neighbours in a stack never get two shades of one hue."""
    plt = pyplot()
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    tab20 = plt.get_cmap("tab20")
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return [tab20(order[i % 20]) for i in range(n)]


def journey_chart(counts: np.ndarray, styles: list[str], periods: list[str], source: str,
                  path: str | Path) -> Path:
    """Stacked areas: each style's share of the works of every period, and below, how many
    works each period has (a share of three works is not a trend)."""
    plt = pyplot()
    dated = counts.sum(axis=1) > 0  # a style without any dated work has no area to draw
    counts, styles = counts[dated], [s for s, d in zip(styles, dated, strict=True) if d]
    totals = counts.sum(axis=0)
    shares = counts / np.maximum(totals, 1)[None]
    x = np.arange(len(periods))
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(11, 6.8), sharex=True, layout="constrained",
                                   gridspec_kw={"height_ratios": [3, 1]})
    labels, colours = [pretty(s) for s in styles], _palette(len(styles))
    if len(x) > 1:
        ax.stackplot(x, shares, labels=labels, colors=colours, alpha=0.9)
    else:  # one period: an area over a single point has no width, so stack a bar instead
        bottom = 0.0
        for share, label, colour in zip(shares[:, 0], labels, colours, strict=True):
            ax.bar(x, [share], bottom=bottom, width=0.6, label=label, color=colour, alpha=0.9)
            bottom += float(share)
    ax.set(ylim=(0, 1), xlim=(x[0] - 0.3, x[-1] + 0.3) if len(x) > 1 else (-1.5, 1.5),
           ylabel="share of the period's works",
           title=f"The journey of styles through time ({source} labels)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, title="style",
              reverse=True)
    bars.bar(x, totals, color="#7a7a7a")
    for xi, n in zip(x, totals, strict=True):
        bars.text(xi, n, f"{n:,}", ha="center", va="bottom", fontsize=8)
    bars.set(ylabel="works", xlabel="period", ylim=(0, max(1, int(totals.max())) * 1.25))
    bars.set_xticks(x, periods, rotation=30, ha="right")
    return save_figure(fig, path)


def count_heatmap(counts: np.ndarray, rows: list[str], cols: list[str], title: str,
                  xlabel: str, ylabel: str, path: str | Path) -> Path:
    """Counts in every cell; colour = the cell's share of its row, so small rows show too."""
    plt = pyplot()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, COL_INCH * len(cols) + 3.5),
                                    max(3.5, ROW_INCH * len(rows) + 2.2)), layout="constrained")
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, f"{n}", ha="center", va="center", fontsize=7,
                    color="white" if shares[i, j] > 0.55 else "#222")
    ax.set_xticks(range(len(cols)), [pretty(c) for c in cols], rotation=45, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(rows)), [pretty(r) for r in rows], fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the row's works (numbers: counts)")
    return save_figure(fig, path)


def affinity_tree_chart(affinity: np.ndarray, order: list[int], tree: np.ndarray,
                        names: list[str], path: str | Path) -> Path:
    """The dendrogram of the clusters above their affinity matrix in the tree's order."""
    from scipy.cluster.hierarchy import dendrogram

    plt = pyplot()
    k = len(order)
    side = max(5.0, 0.34 * k + 2.0)
    fig, (top, ax) = plt.subplots(2, 1, figsize=(side + 4.2, side + 2.2), layout="constrained",
                                  gridspec_kw={"height_ratios": [1, 3.2]})
    if len(tree):
        dendrogram(tree, ax=top, no_labels=True, color_threshold=0, above_threshold_color="#555")
        top.set(ylabel="distance\n(1 - cosine)", title="Clusters grouped by similarity "
                "(average linkage on centroid distance)", xlim=(0, 10 * k))  # leaves at 5, 15..
        top.set_xticks([])
        for side_ in ("top", "right", "bottom"):
            top.spines[side_].set_visible(False)
    else:
        top.axis("off")
    sub = np.asarray(affinity)[np.ix_(order, order)]
    im = ax.imshow(sub, cmap="viridis", vmin=min(0.0, float(sub.min())), vmax=1.0,
                   aspect="auto", extent=(0, 10 * k, 10 * k, 0))  # columns under the leaves
    ticks = [10 * i + 5 for i in range(k)]
    ax.set_xticks(ticks, [str(c) for c in order], fontsize=7)
    ax.set_yticks(ticks, [f"{c}: {names[c]}" for c in order], fontsize=7)
    ax.yaxis.tick_right()
    ax.set(xlabel="cluster", title="Affinity between clusters, in the dendrogram's order")
    fig.colorbar(im, ax=[top, ax], location="bottom", shrink=0.5, aspect=40,
                 label="cosine of cluster centroids")
    return save_figure(fig, path)


def influences_chart(membership: np.ndarray, styles: list[str], sizes: np.ndarray,
                     clusters: list[int], path: str | Path) -> Path:
    """Per style (row), its works' mean membership in each cluster (column, tree order)."""
    plt = pyplot()
    sub = membership[:, clusters]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.42 * len(clusters) + 4.5),
                                    max(3.5, 0.42 * len(styles) + 2.4)), layout="constrained")
    im = ax.imshow(sub, cmap="magma_r", vmin=0, vmax=max(0.05, float(sub.max())), aspect="auto")
    for (i, j), v in np.ndenumerate(sub):
        if v >= MIN_SHOWN:
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.45 * sub.max() else "#222")
    ax.set_xticks(range(len(clusters)), [str(c) for c in clusters], fontsize=8)
    ax.set_yticks(range(len(styles)), [f"{pretty(s)} ({n:,})" for s, n in
                                       zip(styles, sizes, strict=True)], fontsize=8)
    ax.set(xlabel="cluster (themes in the table below; same order as the dendrogram)",
           ylabel="style (works)",
           title="What each style draws on: mean GMM membership of its works")
    fig.colorbar(im, ax=ax, shrink=0.8, label="mean membership")
    return save_figure(fig, path)
