"""Charts (matplotlib, headless): influence bars, KMeans elbow, BIC curve, cluster affinity.

matplotlib is imported only here and only when a chart is asked for; without it these
functions raise a clear error instead of failing on import.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.atomic import atomic_write
from artylyze.index.errors import IndexStoreError


def pyplot():
    """matplotlib's pyplot on the headless Agg backend, or a clear error without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise IndexStoreError("charts need matplotlib: pip install matplotlib") from e
    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure as PNG atomically (tight bounding box, so no label is cut) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def influence_chart(result: dict[str, Any], path: str | Path, top: int = 8) -> Path:
    """Horizontal bars: the image's share of each of its top clusters, named by theme."""
    plt = pyplot()
    post = result["posterior"][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(post) + 1.2))
    ax.barh([f"{p['cluster']}: {p['name']}" for p in post], [p["share"] for p in post],
            color="#4a7fb5")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of membership (GMM posterior)")
    ax.set_title(f"Influences of {Path(result['query']).name}")
    for i, p in enumerate(post):
        ax.text(min(p["share"] + 0.01, 0.9), i, f"{p['share']:.2f}", va="center", fontsize=8)
    return save_figure(fig, path)


def elbow_chart(kmeans: dict[str, Any], gmm: dict[str, Any], path: str | Path) -> Path:
    """KMeans inertia (elbow), silhouette and Davies-Bouldin per k; GMM BIC per k."""
    plt = pyplot()
    sweep = kmeans["sweep"]
    ks = [r["k"] for r in sweep]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    fig.subplots_adjust(wspace=0.6)
    axes[0].plot(ks, [r["inertia"] for r in sweep], "o-")
    axes[0].axvline(kmeans["k"], color="grey", ls="--")
    axes[0].set(title="KMeans elbow", xlabel="k", ylabel="inertia")
    scored = [r for r in sweep if "silhouette" in r]
    ks_scored = [r["k"] for r in scored]
    axes[1].plot(ks_scored, [r["silhouette"] for r in scored], "o-", color="#4a7fb5")
    axes[1].set_ylabel("silhouette (higher is better)", color="#4a7fb5")
    twin = axes[1].twinx()  # the two scores live on different scales
    twin.plot(ks_scored, [r["davies_bouldin"] for r in scored], "s-", color="#d08a2e")
    twin.set_ylabel("Davies-Bouldin (lower is better)", color="#d08a2e")
    axes[1].axvline(kmeans["k"], color="grey", ls="--")
    axes[1].set(title="KMeans cluster quality", xlabel="k")
    bics = gmm["sweep"]
    axes[2].plot([r["k"] for r in bics], [r["bic"] for r in bics], "o-", color="#b5574a")
    axes[2].axvline(gmm["k"], color="grey", ls="--")
    axes[2].set(title=f"Gaussian mixture ({gmm['covariance']})", xlabel="k", ylabel="BIC")
    return save_figure(fig, path)


def affinity_chart(affinity: np.ndarray, names: list[str], path: str | Path) -> Path:
    """Heat map of inter-cluster affinity with theme names on both axes."""
    plt = pyplot()
    k = len(names)
    size = max(5.0, 0.42 * k + 3)
    fig, ax = plt.subplots(figsize=(size + 2, size))
    im = ax.imshow(affinity, cmap="viridis", vmin=min(0.0, float(np.min(affinity))), vmax=1.0)
    labels = [f"{i}: {n}" for i, n in enumerate(names)]
    ax.set_xticks(range(k), labels, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_title("Inter-cluster affinity (cosine of cluster centroids)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return save_figure(fig, path)
