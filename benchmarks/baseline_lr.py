"""The baseline every model figure sits beside: logistic regression on frozen ImageNet
EfficientNet-Lite0 features (1280-d pooled, no fine-tuning), fitted on train+val, measured
on the test split of the same manifest, per task (accuracy and macro-F1); the year is
regressed the same simple way (ridge on the features), and its period is the period of the
estimate.

    python benchmarks/baseline_lr.py runs/manifest_v2.parquet

Features are cached next to the manifest (``.baseline-features-*.npy``). Prints a table and
writes benchmarks/results/baseline_lr.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from artylyze.model.dating import period_of
from artylyze.train.data import load_image_array, to_tensor
from artylyze.train.manifest import read_manifest
from artylyze.train.models import build_model

RESULTS = Path(__file__).parent / "results" / "baseline_lr.json"
TASKS = ("style", "genre", "artist", "nationality")


@torch.no_grad()
def imagenet_features(images: np.ndarray) -> np.ndarray:
    model = build_model("efficientnet_lite0", {"style": 2}).eval()
    out = []
    for i in range(0, len(images), 64):
        out.append(model.backbone(model.normalize(to_tensor(images[i:i + 64]))).numpy())
        print(f"features {min(i + 64, len(images))}/{len(images)}", flush=True)
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest")
    args = ap.parse_args()
    t0 = time.time()
    df, root = read_manifest(args.manifest)
    paths = df["path"].tolist()
    key = hashlib.sha256("\n".join([str(root), *paths]).encode()).hexdigest()[:16]
    cache = Path(args.manifest).parent / f".baseline-features-{key}.npy"
    if cache.is_file():
        feats = np.load(cache)
    else:
        images = load_image_array(paths, root, 224, "stretch", Path(args.manifest).parent
                                  / ".cache")
        feats = imagenet_features(images)
        np.save(cache, feats)
    fit = df["split"].isin(["train", "val"]).to_numpy()
    test = (df["split"] == "test").to_numpy()
    scaler = StandardScaler().fit(feats[fit])
    x = scaler.transform(feats).astype(np.float32)
    result: dict = {"manifest": args.manifest, "features": "ImageNet EfficientNet-Lite0, 1280-d",
                    "fit_on": "train+val", "tasks": {}}
    for task in TASKS:
        known = df[task].notna().to_numpy()
        clf = LogisticRegression(max_iter=300, C=0.05)
        clf.fit(x[fit & known], df.loc[fit & known, task])
        pred = clf.predict(x[test & known])
        true = df.loc[test & known, task].to_numpy()
        result["tasks"][task] = {"n": int((test & known).sum()),
                                 "accuracy": round(float((pred == true).mean()), 4),
                                 "macro_f1": round(float(f1_score(true, pred, average="macro")),
                                                   4)}
        if task == "style" and "source" in df:
            src = df.loc[test & known, "source"].to_numpy()
            result["style_by_source"] = {
                str(s): round(float((pred[src == s] == true[src == s]).mean()), 4)
                for s in sorted(set(src))}
        print(task, result["tasks"][task], flush=True)
    dated = df["year"].notna().to_numpy()
    reg = Ridge(alpha=100.0).fit(x[fit & dated], df.loc[fit & dated, "year"])
    est = reg.predict(x[test & dated])
    years = df.loc[test & dated, "year"].to_numpy()
    err = np.abs(est - years)
    periods = np.array([period_of(y) for y in years])
    result["date"] = {"n": int((test & dated).sum()), "mae_years": round(float(err.mean()), 2),
                      "within_25": round(float((err <= 25).mean()), 4),
                      "within_50": round(float((err <= 50).mean()), 4),
                      "period_accuracy": round(float(np.mean(
                          [period_of(e) == p for e, p in zip(est, periods, strict=True)])), 4)}
    result["seconds"] = round(time.time() - t0, 1)
    print("| task | n | accuracy | macro-F1 |\n|---|---|---|---|")
    for task, m in result["tasks"].items():
        print(f"| {task} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |")
    d = result["date"]
    print(f"date: MAE {d['mae_years']:.1f} years, within 25 {d['within_25']:.3f}, within 50 "
          f"{d['within_50']:.3f}, period accuracy {d['period_accuracy']:.3f} (n {d['n']})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
