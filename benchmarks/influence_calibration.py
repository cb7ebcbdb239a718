"""Do a painting's influences (its GMM memberships) mean what they say? Before and after the
membership temperature, side by side, on the shipped gallery.

    python benchmarks/influence_calibration.py [--index DIR] [--fit-split val] [--split test]

Queries are the gallery's own rows of the test split (wikiart11 + styles7 test works: the
gallery holds them, tagged by the shipped bundle, so their cluster coordinates are the
ones a fresh `tag` + `influence` gives). A work's top cluster "agrees" when that cluster's
dominant style (themes.json, ground truth) is the work's recorded style. Calibration error:
ECE of the top membership against agreement (10 equal-width bins; `gap` is the plain
|mean top membership - agreement rate|). The temperature is fitted on the --fit-split rows
(validation) and measured on --split rows, never the same works.

``--write`` stores the fitted temperature into the index (clusters.npz's
``gmm_temperature``, themes.json and the manifest re-sealed): how the shipped gallery got
its temperature without a rebuild.

``--small N`` also clusters N random test works as `index build` would (a PCA of their
stored cluster-space coordinates, index/clusters.py's fit_gmm, index/fit.py's calibrate)
and prints the number of components and the same measures on the other test works: before
(32 dims, T = 1) and after (index/clusters.py's cluster_dims, fitted T).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from artylyze.atomic import atomic_write
from artylyze.index.clusters import cluster_dims, fit_gmm
from artylyze.index.manifest import CLUSTERS_FILE, THEMES_FILE, seal, write_json
from artylyze.index.membership import agreement, calibration_error, fit_temperature, softmax_t
from artylyze.index.store import DEFAULT_GALLERY_DIR, load_index_dir


def describe(top: np.ndarray, right: np.ndarray) -> dict[str, float]:
    return {"median top": float(np.median(top)), "top >= 0.96": float((top >= 0.96).mean()),
            "mean top": float(top.mean()), "agreement": float(right.mean()),
            "gap": float(abs(top.mean() - right.mean())), "ECE": calibration_error(top, right)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default=str(DEFAULT_GALLERY_DIR))
    ap.add_argument("--fit-split", default="val")
    ap.add_argument("--split", default="test")
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--write", action="store_true", help="store the fitted temperature")
    args = ap.parse_args()
    index = load_index_dir(args.index)
    gmm = index.clusters.gmm
    rows = index.rows
    styles = np.array([s or "" for s in rows.column("true_style").to_pylist()], object)
    split = np.array(rows.column("split").to_pylist(), object)
    dominant = [t["labels"]["style"]["top"][0]["label"] for t in index.themes["themes"]]
    coords = index.clusters.coords.astype(np.float32)
    lj = gmm.log_joint(coords)
    agree = agreement(dominant, styles)
    fit_rows = (split == args.fit_split) & (styles != "")
    test_rows = (split == args.split) & (styles != "")
    stored = float(getattr(gmm, "temperature", 1.0))
    temperature = fit_temperature(lj[fit_rows], agree[fit_rows])
    print(f"{index.path}: {gmm.k} clusters in {gmm.dim} dims; temperature stored "
          f"{stored:g}, fitted on {fit_rows.sum()} {args.fit_split} works: {temperature:.3g}")
    print(f"measured on {test_rows.sum()} {args.split} works")
    cols = {}
    for name, t in (("T = 1 (before)", 1.0), (f"T = {temperature:.3g} (after)", temperature)):
        post = softmax_t(lj[test_rows], t)
        top = post.max(1)
        right = agree[test_rows][np.arange(len(top)), post.argmax(1)]
        cols[name] = describe(top, right)
    names = list(cols)
    print(f"{'':16}" + "".join(f"{n:>22}" for n in names))
    for metric in cols[names[0]]:
        print(f"{metric:16}" + "".join(f"{cols[n][metric]:>22.3f}" for n in names))
    if args.write:
        store(index, temperature, int(fit_rows.sum()))
    if args.small:
        small(coords, styles, split, args)


def store(index, temperature: float, rows: int) -> None:
    """Write the temperature into the index folder and re-seal its manifest."""
    path = Path(index.path)
    clusters = replace(index.clusters, gmm=replace(index.clusters.gmm, temperature=temperature))
    atomic_write(path / CLUSTERS_FILE, lambda f: np.savez(f, **clusters.to_arrays()))
    themes = json.loads((path / THEMES_FILE).read_text())
    themes["gmm"].update(temperature=round(temperature, 4), temperature_rows=rows)
    write_json(path / THEMES_FILE, themes)
    man = index.manifest
    seal(path, replace(man, clusters={**man.clusters, "temperature": round(temperature, 4)}),
         list(man.files))
    print(f"stored temperature {temperature:.4g} in {path}")


def small(coords: np.ndarray, styles: np.ndarray, split: np.ndarray, args) -> None:
    from artylyze.index.fit import calibrate
    from artylyze.index.reduce import fit_pca
    from artylyze.index.themes import make_themes

    rng = np.random.default_rng(0)
    pool = np.flatnonzero((split == args.split) & (styles != ""))
    pick = np.sort(rng.choice(pool, min(args.small, len(pool)), replace=False))
    rest = np.setdiff1d(pool, pick)
    print(f"\n{len(pick)} test works clustered alone as `index build` would (PCA of their "
          f"coordinates); measured on the other {len(rest)}")
    cols = {}
    for when, dims in (("before", coords.shape[1]),
                       ("after", cluster_dims(len(pick), coords.shape[1]))):
        space = fit_pca(coords[pick], n_components=dims)
        x = space.project(coords[pick]).astype(np.float64)
        gmm, _ = fit_gmm(x)
        assign = gmm.posteriors(x).argmax(1)
        labels = {"style": [str(v) for v in styles[pick]]}
        themes = make_themes(assign, gmm.k, labels, {"style": "ground truth"},
                             np.eye(gmm.k), gmm.weights)
        if when == "after":
            gmm, _ = calibrate(gmm, x.astype(np.float32), themes, labels)
        dominant = [t["labels"]["style"]["top"][0]["label"] if t["labels"]["style"]["top"]
                    else None for t in themes]
        post = gmm.posteriors(space.project(coords[rest]).astype(np.float32))
        right = agreement(dominant, styles[rest])[np.arange(len(rest)), post.argmax(1)]
        name = f"{dims} dims, k = {gmm.k}, T = {gmm.temperature:.3g} ({when})"
        cols[name] = describe(post.max(1), right)
    names = list(cols)
    print(f"{'':16}" + "".join(f"{n:>34}" for n in names))
    for metric in cols[names[0]]:
        print(f"{metric:16}" + "".join(f"{cols[n][metric]:>34.3f}" for n in names))


if __name__ == "__main__":
    main()
