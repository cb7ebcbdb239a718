"""Does the model say "I don't know"? Two bundles side by side (e.g. v4 and v5) on the test
splits of the shared data:

- non-artworks (``notart`` test, plus generated pages from ``artylyze.train.synthetic``, a
  source no bundle trained on when ``--synthetic`` is a fresh seed): share flagged as not an
  artwork (``domain != artwork``), share with at least one confident label;
- paintings (wikiart11 + styles7 test): share flagged, share with a confident style;
- novelty AUROC, paintings vs notart test (higher = non-artworks more novel);
- wikiart11 test works by artists outside the artist classes: share with a confident named
  artist (what ``--suggest-creator`` could write); accuracy on the known artists.

    python benchmarks/dontknow.py artylyze/assets/bundle --previous-bundle v4-bundle \\
        --synthetic runs/synthetic-bench

Runs each bundle through :func:`artylyze.model.predict.predictions`, as tagging does; prints a
table and writes benchmarks/results/dontknow.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from artylyze.imaging import load_image
from artylyze.model.bundle import load_bundle
from artylyze.model.manifest import OTHER_ARTIST
from artylyze.model.predict import predictions

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).parent / "results" / "dontknow.json"


def test_rows(folder: Path, limit: int | None) -> pd.DataFrame:
    df = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    df = df[df["split"] == "test"]
    if limit:
        df = df.sample(min(limit, len(df)), random_state=0)
    return df.assign(file=[str(folder / "images" / p) for p in df["path"]]).reset_index(
        drop=True)


def run(bundle_dir: str, files: list[str], batch: int = 32) -> list:
    b = load_bundle(bundle_dir)
    size, resize = b.manifest.input_size, b.manifest.resize
    out = []
    for i in range(0, len(files), batch):
        px = np.stack([load_image(f, size, resize).pixels for f in files[i:i + batch]])
        out += predictions(b.run(px), b.manifest, 1)
    return out


def figures(bundle_dir: str, sets: dict[str, pd.DataFrame], known: set[str]) -> dict:
    files = [f for df in sets.values() for f in df["file"]]
    t0 = time.time()
    preds = run(bundle_dir, files)
    seconds = time.time() - t0
    at, part = 0, {}
    for name, df in sets.items():
        part[name] = preds[at:at + len(df)]
        at += len(df)

    def share(rows, test) -> float:
        return round(float(np.mean([test(p) for p in rows])), 4) if rows else float("nan")

    flagged = lambda p: not p.artwork  # noqa: E731
    any_sure = lambda p: any(p.confident.values())  # noqa: E731
    res: dict = {"bundle": bundle_dir, "seconds": round(seconds, 1)}
    for name in ("notart", "synthetic"):
        if name in part:
            res[f"{name}_flagged"] = share(part[name], flagged)
            res[f"{name}_any_confident"] = share(part[name], any_sure)
            cats = sets[name]["category"].to_numpy()
            res[f"{name}_flagged_by_kind"] = {
                c: share([p for p, k in zip(part[name], cats, strict=True) if k == c], flagged)
                for c in sorted(set(cats))}
    paint = part["paintings"]
    res["paintings_flagged"] = share(paint, flagged)
    res["paintings_confident_style"] = share(paint, lambda p: p.confident.get("style", False))
    nov = [p.novelty for p in paint + part["notart"]]
    if None not in nov:
        y = np.r_[np.zeros(len(paint)), np.ones(len(part["notart"]))]
        res["novelty_auroc_notart"] = round(float(roc_auc_score(y, nov)), 4)
    art = sets["paintings"]["artist"].to_numpy()
    inside = [p for p, a in zip(paint, art, strict=True) if a in known]
    outside = [p for p, a in zip(paint, art, strict=True) if a and a not in known]
    truth = [a for a in art if a in known]
    res["outside_artists"] = len(outside)
    res["outside_confident_named"] = share(
        outside, lambda p: p.confident.get("artist", False) and p.top["artist"][0][0]
        != OTHER_ARTIST)
    res["outside_named_over_0.8"] = share(
        outside, lambda p: p.top["artist"][0][0] != OTHER_ARTIST and p.top["artist"][0][1] > 0.8)
    res["outside_called_another"] = share(outside,
                                          lambda p: p.top["artist"][0][0] == OTHER_ARTIST)
    res["known_artist_accuracy"] = round(float(np.mean(
        [p.top["artist"][0][0] == a for p, a in zip(inside, truth, strict=True)])), 4)
    res["known_artists_n"] = len(inside)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--previous-bundle", help="the bundle to compare with (e.g. v4)")
    ap.add_argument("--synthetic", type=Path, help="generated non-artworks (labels.csv)")
    ap.add_argument("--limit", type=int, help="at most this many test images per source")
    args = ap.parse_args()
    wiki = test_rows(DATA / "wikiart11", args.limit)
    styles = test_rows(DATA / "styles7", args.limit).assign(artist="")
    sets = {"paintings": pd.concat([wiki, styles], ignore_index=True),
            "notart": test_rows(DATA / "notart", args.limit)}
    if args.synthetic:
        sets["synthetic"] = test_rows(args.synthetic, args.limit)
    counts = pd.read_csv(DATA / "wikiart11" / "labels.csv", dtype=str)["artist"].value_counts()
    known = set(counts[counts >= 30].index)
    bundles = [b for b in (args.previous_bundle, args.bundle) if b]
    results = [figures(b, sets, known) for b in bundles]
    keys = [k for k in results[-1] if k != "bundle"]
    print("| figure | " + " | ".join(Path(b).name or b for b in bundles) + " |")
    print("|---|" + "---|" * len(bundles))
    for k in keys:
        print(f"| {k} | " + " | ".join(str(r.get(k, "—")) for r in results) + " |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"sets": {k: len(v) for k, v in sets.items()},
                                   "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
