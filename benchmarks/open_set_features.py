"""Open-set novelty on the backbone's own features: can any score on them tell paintings of
styles the model never saw from the test paintings of the styles it knows (AUROC)?

Works on a feature cache (``python -m artylyze.train.feature_cache``, wikiart11 and styles7,
train and test), so no network runs. The held-out styles are left out of every reference and
every fitted projection; the test rows of all 18 styles are scored. Scores ("higher = more
novel"): kNN on the unit features, kNN after PCA whitening, class-conditional and relative
Mahalanobis (Ren et al. 2021) in PCA space, and kNN on a 128-d projection trained on the
taught styles (the four tasks' losses, the style loss only, or supervised contrastive on
style); with ``--bundle``, the shipped novelty (kNN on the four-task projection plus
``1 - p(artwork)`` of the bundle's domain head, which reads these features).

    python benchmarks/open_set_features.py runs/feat --bundle artylyze/assets/bundle

Prints a table and writes benchmarks/results/open_set_features.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from torch import nn

from artylyze.model.bundle import knn_novelty
from artylyze.train import feature_cache as fc
from artylyze.train.dontknow import PAINTINGS, labels_of

RESULTS = Path(__file__).parent / "results" / "open_set_features.json"
HELD = ("Romanticism", "Symbolism", "Expressionism")
TASKS = ("style", "genre", "artist", "nationality")


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def mahalanobis(train: np.ndarray, codes: np.ndarray, test: np.ndarray) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """Class-conditional (shared covariance) and relative (minus one background Gaussian)
    Mahalanobis distances of ``test`` rows to the nearest class."""
    def inv_cov(x: np.ndarray) -> np.ndarray:
        return np.linalg.inv(np.cov(x.T) + 1e-3 * np.eye(x.shape[1]))

    classes = np.unique(codes)
    means = np.stack([train[codes == c].mean(0) for c in classes])
    within = inv_cov(train - means[np.searchsorted(classes, codes)])
    d = np.stack([np.einsum("ij,jk,ik->i", test - m, within, test - m) for m in means], 1)
    g, whole = train.mean(0), inv_cov(train)
    d0 = np.einsum("ij,jk,ik->i", test - g, whole, test - g)
    return d.min(1), (d - d0[:, None]).min(1)


def supcon(z: torch.Tensor, y: torch.Tensor, t: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) of one batch."""
    z = nn.functional.normalize(z, dim=1)
    eye = torch.eye(len(y), dtype=torch.bool)
    logp = (z @ z.T / t).masked_fill(eye, -1e9).log_softmax(1)
    pos = (y[:, None] == y[None, :]) & ~eye
    n = pos.sum(1)
    return -(logp * pos).sum(1)[n > 0].div(n[n > 0]).mean()


def projection(x: torch.Tensor, rows: np.ndarray, codes: dict[str, np.ndarray], kind: str,
               epochs: int = 30, seed: int = 0) -> np.ndarray:
    """A dropout + linear 128-d projection of all rows, trained on ``rows`` only."""
    torch.manual_seed(seed)
    proj = nn.Sequential(nn.Dropout(0.2), nn.Linear(x.shape[1], 128))
    heads = nn.ModuleDict({t: nn.Linear(128, int(c.max()) + 1) for t, c in codes.items()})
    opt = torch.optim.AdamW([*proj.parameters(), *heads.parameters()], lr=1e-3,
                            weight_decay=0.02)
    y = {t: torch.from_numpy(c) for t, c in codes.items()}
    tasks = TASKS if kind == "tasks" else ("style",)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        proj.train()
        order = rows[torch.randperm(len(rows), generator=g).numpy()]
        for i in range(0, len(order), 256):
            ix = torch.from_numpy(order[i:i + 256])
            e = proj(x[ix])
            if kind == "supcon":
                loss = supcon(e, y["style"][ix])
            else:
                loss = sum(nn.functional.cross_entropy(heads[t](e[y[t][ix] >= 0]),
                                                       y[t][ix][y[t][ix] >= 0])
                           for t in tasks if (y[t][ix] >= 0).any())
            opt.zero_grad()
            loss.backward()
            opt.step()
    proj.eval()
    with torch.no_grad():
        return proj(x).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache", type=Path, help="feature cache with wikiart11 and styles7")
    ap.add_argument("--bundle", help="score its shipped novelty too (domain head on features)")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    rows, feats = [], []
    for split in ("train", "test"):
        for ds in PAINTINGS:
            rows.append(labels_of(ds, split).assign(split=split))
            feats.append(fc.load(args.cache, ds, split))
    df = pd.concat(rows, ignore_index=True)
    x = np.concatenate(feats).astype(np.float32)
    held = df["style"].isin(HELD).to_numpy()
    tr = np.flatnonzero((df["split"] == "train").to_numpy() & ~held & (df["style"] != ""))
    te = np.flatnonzero((df["split"] == "test").to_numpy() & (df["style"] != ""))
    novel = held[te]
    rng = np.random.default_rng(0)
    ref = rng.permutation(tr)[:4096]
    auroc: dict[str, float] = {}

    def score(name: str, s: np.ndarray) -> None:
        auroc[name] = round(float(roc_auc_score(novel, s)), 4)

    u = unit(x)
    for k in (1, 10, 50):
        score(f"kNN on unit features, k={k}", knn_novelty(u[te], u[tr], k))
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    z = (x - mu) / sd
    style = df["style"].to_numpy()
    for d in (64, 256, 512):
        pca = PCA(d, whiten=True, random_state=0).fit(z[tr])
        p = pca.transform(z)
        score(f"kNN after PCA whitening to {d}, k=10", knn_novelty(unit(p)[te], unit(p)[ref], 10))
        md, rmd = mahalanobis(p[tr], style[tr], p[te])
        score(f"Mahalanobis, class-conditional, PCA {d}", md)
        score(f"relative Mahalanobis, PCA {d}", rmd)
    codes = {}
    for t in TASKS:
        v = df[t].fillna("").to_numpy() if t in df else np.array([""] * len(df))
        keep = pd.Series(v[tr][v[tr] != ""]).value_counts()
        labels = sorted(keep[keep >= 30].index)
        c = np.array([labels.index(a) if a in labels else -1 for a in v])
        c[np.setdiff1d(np.arange(len(df)), tr)] = -1
        codes[t] = c
    xt = torch.from_numpy(z)
    projected = {}
    for kind, name in (("tasks", "the four tasks' losses"), ("style", "the style loss"),
                       ("supcon", "supervised contrastive on style")):
        projected[kind] = unit(projection(xt, tr, codes, kind))
        score(f"kNN on a 128-d projection trained with {name}, k=10",
              knn_novelty(projected[kind][te], projected[kind][ref], 10))
    if args.bundle:
        from artylyze.model.bundle import load_manifest
        from artylyze.train.from_bundle import recover

        cal = load_manifest(args.bundle).calibration
        head = recover(args.bundle).feature_heads["domain"]
        with torch.no_grad():
            logits = head(torch.from_numpy(x[te])) / cal["temperature"]["domain"]
            p_art = (logits + torch.tensor(cal["bias"]["domain"])).softmax(1)[:, 0].numpy()
        score("1 - p(artwork), the bundle's domain head", 1 - p_art)
        near = knn_novelty(projected["tasks"][te], projected["tasks"][ref], 10)
        score("shipped: kNN (four-task projection) + (1 - p(artwork))", near + 1 - p_art)
    result = {"cache": str(args.cache), "held_out": list(HELD), "test_novel": int(novel.sum()),
              "test_known": int((~novel).sum()), "auroc": auroc,
              "seconds": round(time.time() - t0, 1)}
    print(f"held out: {', '.join(HELD)}; test: {result['test_novel']} novel vs "
          f"{result['test_known']} known")
    print(f"| {'novelty score (backbone features)':<72} | AUROC |\n|{'-' * 74}|-------|")
    for k, v in auroc.items():
        print(f"| {k:<72} | {v:.3f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
