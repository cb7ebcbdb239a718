"""Teaching a task from k reviewed works per class, against the simplest alternatives.

Embeddings come from meta.parquet files that ``artylyze tag`` wrote with the shipped bundle
(no image is read here). For each task, k = 5, 10, 20, 50 works per class are drawn from the
fixed train split (the "reviewed" works; 3 draws), and every model is scored on the test
split, which nobody reviewed:

- ``teach``: what ``artylyze teach`` fits (:func:`artylyze.teach.fit.fit_task`: the kind and
  its settings chosen by cross-validation on the k labels, then shifted to the class
  proportions EM estimates on every work of the collection, labelled or not);
- ``teach, no EM``: the same model without that shift;
- ``centroid``: nearest class mean (cosine);
- ``knn``: the majority of the 5 nearest reviewed works (cosine; k=5 draws use all of them
  within a class size, which is the same thing as a vote of 5);
- ``full head``: logistic regression on every labelled work of the train split (C by
  cross-validation), the ceiling the issue compares with.

Tasks (see docs/teach.md for why):

- ``object_type`` (never taught to the shipped bundle): painting (wikiart11 works) vs the
  four notart categories (photograph, document, object, blank);
- ``genre`` (wikiart11's 10 genres): the shipped bundle HAS a genre head, so its embeddings
  know genre; shown as the harder, many-class case, not as a "never taught" one.

    python benchmarks/teach.py --wikiart runs/emb/w11.parquet --notart runs/emb/notart.parquet

Writes benchmarks/results/teach.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from artylyze.teach.columns import read_file
from artylyze.teach.fit import fit_task

DATA = Path("/work/shared/datasets")
RESULTS = Path(__file__).parent / "results" / "teach.json"
KS = (5, 10, 20, 50)
DRAWS = 3


def load(meta: Path, labels_csv: Path, column: str, prefix: str = "") -> dict[str, np.ndarray]:
    """Embeddings of the rows with a label, their labels and splits."""
    truth = {}
    with labels_csv.open(newline="") as f:
        for r in csv.DictReader(f):
            if r[column]:
                truth[prefix + r["path"]] = (r[column], r["split"])
    rows = read_file(meta)
    keep = [i for i, p in enumerate(rows.paths) if p in truth and rows.valid[i]]
    return {"x": rows.x[keep], "y": np.array([truth[rows.paths[i]][0] for i in keep]),
            "split": np.array([truth[rows.paths[i]][1] for i in keep])}


def object_type(wikiart: Path, notart: Path) -> dict[str, np.ndarray]:
    w = load(wikiart, DATA / "wikiart11" / "labels.csv", "style")
    w["y"] = np.full(len(w["y"]), "painting")
    n = load(notart, DATA / "notart" / "labels.csv", "category")
    return {k: np.concatenate([w[k], n[k]]) for k in w}


def nearest_mean(xr: np.ndarray, yr: np.ndarray, xt: np.ndarray) -> np.ndarray:
    classes = np.unique(yr)
    means = np.stack([xr[yr == c].mean(0) for c in classes])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return classes[(xt @ means.T).argmax(1)]


def knn(xr: np.ndarray, yr: np.ndarray, xt: np.ndarray, k: int = 5) -> np.ndarray:
    classes, yi = np.unique(yr, return_inverse=True)
    idx = np.argsort(-(xt @ xr.T), axis=1)[:, :k]
    votes = np.stack([(yi[idx] == c).sum(1) for c in range(len(classes))], axis=1)
    return classes[votes.argmax(1)]


def draw(y: np.ndarray, pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k indices per class from ``pool`` (all of a class that has fewer)."""
    return np.concatenate([rng.permutation(pool[y[pool] == c])[:k] for c in np.unique(y)])


def run_task(name: str, d: dict[str, np.ndarray]) -> dict:
    train = np.nonzero(d["split"] == "train")[0]
    test = np.nonzero(d["split"] == "test")[0]
    x, y = d["x"], d["y"]
    yt = y[test]
    classes = np.unique(y)
    t0 = time.perf_counter()
    head = fit_task(name, x[train], list(y[train]), "m", kinds=("linear",))
    full = float((np.array(head.classes)[head.proba(x[test]).argmax(1)] == yt).mean())
    full_s = time.perf_counter() - t0
    out = {"task": name, "classes": len(classes), "train": len(train), "test": len(test),
           "full_head": round(full, 4), "full_head_fit": head.params, "rows": []}
    for k in KS:
        accs: dict[str, list[float]] = {"teach": [], "no_shift": [], "centroid": [], "knn": []}
        chosen, seconds = [], []
        for seed in range(DRAWS):
            rev = draw(y, train, k, np.random.default_rng(seed))
            t1 = time.perf_counter()
            task = fit_task(name, x[rev], list(y[rev]), "m", seed=seed, unlabelled=x)
            seconds.append(time.perf_counter() - t1)
            pred = np.array(task.classes)[task.proba(x[test]).argmax(1)]
            accs["teach"].append(float((pred == yt).mean()))
            task.arrays.pop("log_prior")
            pred = np.array(task.classes)[task.proba(x[test]).argmax(1)]
            accs["no_shift"].append(float((pred == yt).mean()))
            accs["centroid"].append(float((nearest_mean(x[rev], y[rev], x[test]) == yt).mean()))
            accs["knn"].append(float((knn(x[rev], y[rev], x[test]) == yt).mean()))
            chosen.append(f"{task.kind}:{','.join(f'{v:g}' for v in task.params.values())}")
        row = {"k": k, **{m: round(float(np.mean(v)), 4) for m, v in accs.items()},
               **{f"{m}_sd": round(float(np.std(v)), 4) for m, v in accs.items()},
               "of_full": round(float(np.mean(accs["teach"])) / full, 3),
               "chosen": chosen, "fit_seconds": round(float(np.mean(seconds)), 2)}
        out["rows"].append(row)
    out["full_head_seconds"] = round(full_s, 1)
    return out


def show(r: dict) -> None:
    print(f"\n{r['task']}: {r['classes']} classes, scored on {r['test']} test works nobody "
          f"reviewed; full head (LR on all {r['train']} train works): {r['full_head']:.3f}")
    print(f"{'k/class':>7s} | {'teach':>13s} | {'teach, no EM':>13s} | {'centroid':>13s} | "
          f"{'kNN (5)':>13s} | {'teach/full':>10s} | chosen by CV")
    for row in r["rows"]:
        cells = " | ".join(f"{row[m]:.3f} ± {row[m + '_sd']:.3f}" for m in
                           ("teach", "no_shift", "centroid", "knn"))
        print(f"{row['k']:>7d} | {cells} | {row['of_full']:>10.2f} | {' '.join(row['chosen'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wikiart", type=Path, required=True, help="tag output of wikiart11")
    ap.add_argument("--notart", type=Path, required=True, help="tag output of notart")
    args = ap.parse_args()
    results = []
    for name, data in (("object_type", object_type(args.wikiart, args.notart)),
                       ("genre", load(args.wikiart, DATA / "wikiart11" / "labels.csv",
                                      "genre"))):
        results.append(run_task(name, data))
        show(results[-1])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
