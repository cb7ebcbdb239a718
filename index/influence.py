"""A painting's influences: its membership in the collection's soft clusters, with their themes.

The GMM posterior says how much of each cluster the image belongs to; the themes of the
clusters it draws on most say which styles, regions and periods those are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from artylyze.index.search import Gallery, Query

TOP_CLUSTERS = 5
MIN_SHOWN = 0.01


def influence(gallery: Gallery, query: Query, top: int = TOP_CLUSTERS) -> dict[str, Any]:
    """Predicted labels, the full posterior over clusters, and the themes of the top ones."""
    gmm = gallery.index.clusters.gmm
    post = gmm.posteriors(query.coords[None])[0]
    themes = gallery.index.themes["themes"]
    order = sorted(range(gmm.k), key=lambda j: -post[j])
    top_themes = []
    for j in order[:top]:
        if post[j] < MIN_SHOWN and top_themes:
            break
        theme = themes[j]
        top_themes.append({
            "cluster": j, "share": round(float(post[j]), 4), "name": theme["name"],
            "size": theme["size"],
            "labels": {f: [{"label": t["label"], "share": t["share"]} for t in v["top"][:3]]
                       for f, v in theme["labels"].items()},
            "closest": theme.get("closest", []),
        })
    return {
        "query": query.name, "source": query.source, "predicted": query.predicted,
        "estimated": query.estimated,
        "posterior": [{"cluster": j, "name": themes[j]["name"], "share": round(float(post[j]), 6)}
                      for j in order],
        "top": top_themes,
    }


def influences(gallery: Gallery, images: Sequence[str], top: int = TOP_CLUSTERS
               ) -> list[dict[str, Any]]:
    """:func:`influence` of each image (a file, or a path already in the index), in order."""
    return [influence(gallery, query, top=top) for query in gallery.queries(list(images))]
