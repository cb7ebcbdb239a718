"""Model v5 from the v4 bundle: the same network plus what lets it say "I don't know".

- a ``domain`` head (artwork, photograph, document, object, blank): one hidden layer of
  ``DOMAIN_HIDDEN`` units on the backbone features the other heads' embedding is made from,
  so tagging cost stays flat (a linear head on the embedding, v5's first try, passed a third
  of the test photographs as paintings: the embedding keeps what tells styles apart, not
  what tells a camera from a brush). Trained on the paintings of wikiart11 + styles7
  (artwork), the ``notart`` set and generated cases (:mod:`artylyze.train.synthetic`). Its
  calibration
  adds a bias to ``artwork`` so that at most ``MAX_FLAGGED`` of the validation paintings are
  flagged: an image is "not an artwork" exactly when ``domain != artwork``.
- the artist head again, with one more class, ``another artist``, learnt from wikiart11's
  long tail (artists with fewer than ``ARTIST_MIN`` works, who have no class of their own)
  and calibrated with it; a confident artist is a named one.
- novelty as the mean cosine distance to the ``NOVELTY_K`` nearest training paintings (a
  compact reference set of their unit embeddings, shipped as its own file,
  ``reference.npz``, beside the graph) plus the domain head's doubt, ``1 - p(artwork)``:
  the distance ranks paintings of untaught styles, the domain term puts non-artworks above
  every painting (see docs/model-trust.md for the comparison that chose it).

Everything else (backbone, embedding, style, genre, nationality and year heads and their
calibration) is v4's, unchanged: the embedding stays the same function of the image, so an
index built with v4 holds the vectors v5 would compute. Heads are fitted from cached backbone
features (:mod:`artylyze.train.feature_cache`), so the whole build takes about a minute once
the cache exists:

    python -m artylyze.train.dontknow artylyze/assets/bundle runs/feat --out runs/v5
    artylyze export runs/v5 --out runs/v5-bundle
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from artylyze.atomic import atomic_write, atomic_write_text
from artylyze.model.bundle import load_manifest, sha256_file
from artylyze.model.manifest import ARTWORK, DOMAIN_TASK, OTHER_ARTIST
from artylyze.train import feature_cache as fc
from artylyze.train.calibrate import CALIBRATION_FILE, fit_scaling, scale
from artylyze.train.checkpoint import save_checkpoint
from artylyze.train.data import class_weights
from artylyze.train.from_bundle import recover
from artylyze.train.models import FeatureHead

ARTIST_MIN = 30  # works per artist for a class of their own (as ``dataset build``)
DOMAINS = (ARTWORK, "blank", "document", "object", "photograph")
PAINTINGS = ("wikiart11", "styles7")
NOT_ART = ("notart", "synthetic")
MAX_FLAGGED = 0.008  # validation paintings the domain head may flag (the bar: 1% on test)
DOMAIN_HIDDEN = 128
AUGMENTED = ("notart", 6)  # training views per image: feature_cache --augment 6 notart:train
REFERENCE_FILE = "reference.npz"
REFERENCE_SIZE = 4096  # training paintings in the novelty reference set (float16: 2 MB)
NOVELTY_K = 10
NAMED_PRECISION = 0.9  # as calibrate.CONFIDENT_PRECISION
KNOWN_DROP = 0.005  # validation accuracy on known artists that "another artist" may cost
SHIFTS = tuple(-0.25 * i for i in range(33))  # tried on "another artist"'s bias, 0 to -8


def labels_of(name: str, split: str) -> pd.DataFrame:
    df = pd.read_csv(fc.dataset_dir(name) / "labels.csv", dtype=str, keep_default_na=False)
    return df[df["split"] == split].reset_index(drop=True)


def artist_labels(known: Sequence[str]) -> dict[str, str]:
    """wikiart11 artist -> the head's label: the artist, or ``another artist``."""
    df = pd.read_csv(fc.dataset_dir("wikiart11") / "labels.csv", dtype=str,
                     keep_default_na=False)
    names = [a for a in df["artist"].unique() if a]
    return {a: a if a in known else OTHER_ARTIST for a in names}


@torch.no_grad()
def embed(model: nn.Module, feats: np.ndarray) -> torch.Tensor:
    """Raw (un-normalized) embeddings of backbone features, as the heads see them."""
    model.eval()
    return model.embed(torch.from_numpy(feats))


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, init: nn.Linear | None = None,
               steps: int = 400, lr: float = 0.01, weight_decay: float = 1e-4,
               seed: int = 0) -> nn.Linear:
    """A linear head by full-batch Adam on class-balanced cross-entropy (the training
    loop's ``weighted-loss``), from ``init``'s rows where given."""
    torch.manual_seed(seed)
    head = nn.Linear(x.shape[1], classes)
    if init is not None:
        with torch.no_grad():
            n = init.out_features
            head.weight[:n] = init.weight
            head.bias[:n] = init.bias
            head.weight[n:] = 0.0
            head.bias[n:] = init.bias.mean()
    weight = torch.from_numpy(class_weights(y.numpy(), classes))
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y, weight=weight)
        loss.backward()
        opt.step()
    return head.eval()


def fit_feature_head(features: np.ndarray, y: np.ndarray, classes: int,
                     hidden: int = DOMAIN_HIDDEN, steps: int = 600,
                     seed: int = 0) -> FeatureHead:
    """Both branches of a :class:`FeatureHead`, fitted apart by full-batch AdamW on
    class-balanced cross-entropy: the linear one lightly regularized for ``steps * 4 / 3``
    steps, the hidden layer with input dropout and weight decay. They learn on standardized
    features (2,688 of very different scales); the standardization is then folded into their
    first layers, so the head takes the raw features as the graph gives them."""
    mu, sd = features.mean(0), features.std(0) + 1e-6
    x = torch.from_numpy((features - mu) / sd).float()
    yt = torch.from_numpy(y)
    weight = torch.from_numpy(class_weights(y, classes))
    torch.manual_seed(seed)
    head = FeatureHead(features.shape[1], classes, hidden)
    for branch, n, lr, decay, drop in ((head.linear, steps * 4 // 3, 5e-3, 1e-4, 0.0),
                                       (head.hidden, steps, 3e-3, 1e-2, 0.2)):
        opt = torch.optim.AdamW(branch.parameters(), lr=lr, weight_decay=decay)
        dropout = nn.Dropout(drop)
        for _ in range(n):
            opt.zero_grad()
            nn.functional.cross_entropy(branch(dropout(x)), yt, weight=weight).backward()
            opt.step()
    inv = torch.from_numpy(1.0 / sd).float()
    shift = torch.from_numpy(mu).float() * inv
    with torch.no_grad():
        for first in (head.linear, head.hidden[0]):
            first.bias -= first.weight @ shift
            first.weight *= inv
    return head.eval()


@torch.no_grad()
def probs(head: nn.Module, x: torch.Tensor) -> np.ndarray:
    return head(x).softmax(1).numpy().astype(np.float64)


def named_threshold(p: np.ndarray, codes: np.ndarray, other: int,
                    precision: float = NAMED_PRECISION) -> float:
    """Lowest top-1 score at which validation rows the head names (top-1 not ``another
    artist``) are right at least ``precision`` of the time; 1.01 when never."""
    top = p.argmax(1)
    named = top != other
    scores, right = p[named].max(1), (top == codes)[named]
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(hits >= precision)
    return 1.01 if len(ok) == 0 else round(float(scores[order][ok[-1]]), 4)


def other_shift(p_val: np.ndarray, codes: np.ndarray, other: int, floor: float) -> float:
    """The bias on ``another artist`` nearest zero (most works sent there) that keeps
    validation accuracy on the known artists at ``floor`` or above. Fitted on a validation
    split where half the works are by other artists, the calibrated head sends too many
    known artists' works to "another artist" (v4's 0.690 val accuracy fell to 0.516)."""
    known = codes != other
    logp = np.log(np.clip(p_val, 1e-30, None))
    for d in SHIFTS:
        z = logp.copy()
        z[:, other] += d
        if (z.argmax(1) == codes)[known].mean() >= floor:
            return d
    return SHIFTS[-1]


def artwork_shift(p_val: np.ndarray, is_painting: np.ndarray,
                  max_flagged: float = MAX_FLAGGED) -> float:
    """The bias added to ``artwork``'s log-probability that flags (top domain not artwork)
    as many non-artworks as it can while flagging at most ``max_flagged`` of the validation
    paintings; negative when the calibrated head is more cautious than that."""
    logp = np.log(np.clip(p_val[is_painting], 1e-30, None))
    margin = (logp[:, 1:].max(1) - logp[:, 0])  # > 0: flagged
    allowed = int(np.floor(max_flagged * len(margin)))
    need = np.sort(margin)[::-1][allowed] if allowed < len(margin) else float(margin.min())
    return round(float(need) + 1e-3, 4)


class Data:
    """Cached features, embeddings under v4's embedding and labels, per split."""

    def __init__(self, model: nn.Module, cache: Path, synthetic: Path) -> None:
        self.cache, self.synthetic, self.model = cache, synthetic, model

    def name(self, ds: str) -> str:
        return str(self.synthetic) if ds == "synthetic" else ds

    def split(self, ds: str, split: str) -> tuple[pd.DataFrame, torch.Tensor]:
        df, features = self.features(ds, split)
        return df, embed(self.model, features)

    def features(self, ds: str, split: str) -> tuple[pd.DataFrame, np.ndarray]:
        name = self.name(ds)
        return labels_of(name, split), fc.load(self.cache, name, split)

    def domain_set(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backbone features, domain codes and "is a painting" for one split of every
        source; for training, the cached random views of the ``AUGMENTED`` source too."""
        xs, ys = [], []
        for ds in (*PAINTINGS, *NOT_ART):
            df, x = self.features(ds, split)
            cats = df["category"] if ds in NOT_ART else pd.Series([ARTWORK] * len(df))
            xs.append(x)
            ys.append(cats.map(DOMAINS.index).to_numpy())
            if split == "train" and ds == AUGMENTED[0]:
                xs.append(fc.load(self.cache, self.name(ds), split, AUGMENTED[1]))
                ys.append(np.repeat(ys[-1], AUGMENTED[1]))
        y = np.concatenate(ys)
        return np.concatenate(xs), y, y == 0


def build(bundle: str, cache: Path, out: Path, synthetic: Path,
          log=print) -> dict[str, Any]:
    """Fit the v5 heads and calibration; write the checkpoint, calibration and reference."""
    manifest = load_manifest(bundle)
    cal4 = manifest.calibration
    model = recover(bundle)
    data = Data(model, cache, synthetic)
    known = list(manifest.labels("artist"))
    artist_names = [*known, OTHER_ARTIST]
    to_label = artist_labels(known)

    def artist_set(split: str) -> tuple[torch.Tensor, np.ndarray]:
        df, x = data.split("wikiart11", split)
        y = df["artist"].map(lambda a: artist_names.index(to_label[a]) if a else -1)
        keep = (y >= 0).to_numpy()
        return x[torch.from_numpy(keep)], y.to_numpy()[keep]

    xa, ya = artist_set("train")
    artist = fit_linear(xa, torch.from_numpy(ya), len(artist_names), init=model.heads["artist"])
    xv, yv = artist_set("val")
    t_a, b_a = fit_scaling(probs(artist, xv), yv)
    t4, b4 = cal4["temperature"]["artist"], cal4["bias"]["artist"]
    v4_acc = (scale(probs(model.heads["artist"], xv), t4, b4).argmax(1) == yv)[
        yv != len(known)].mean()
    shift_a = other_shift(scale(probs(artist, xv), t_a, b_a), yv, len(known),
                          float(v4_acc) - KNOWN_DROP)
    b_a = [round(b + (shift_a if i == len(known) else 0.0), 4) for i, b in enumerate(b_a)]
    pa = scale(probs(artist, xv), t_a, b_a)
    xs, ys = artist_set("test")
    test_artist = head_metrics(scale(probs(artist, xs), t_a, b_a), ys, len(known))
    named = named_threshold(pa, yv, len(known))
    known_acc = float((pa.argmax(1) == yv)[yv != len(known)].mean())
    log(f"artist: T={t_a}, another-artist shift {shift_a}, named-confident at {named}, "
        f"val accuracy on known artists {known_acc:.3f} (v4 {v4_acc:.3f})")

    xd, yd, _ = data.domain_set("train")
    domain = fit_feature_head(xd, yd, len(DOMAINS))
    xdv, ydv, painting = data.domain_set("val")
    xdv = torch.from_numpy(xdv)
    t_d, b_d = fit_scaling(probs(domain, xdv), ydv)
    shift = artwork_shift(scale(probs(domain, xdv), t_d, b_d), painting)
    b_d = [round(b + (shift if i == 0 else 0.0), 4) for i, b in enumerate(b_d)]
    pd_val = scale(probs(domain, xdv), t_d, b_d)
    flagged = pd_val.argmax(1) != 0
    log(f"domain: T={t_d}, artwork shift {shift}, val paintings flagged "
        f"{flagged[painting].mean():.4f}, not-art flagged {flagged[~painting].mean():.3f}")

    model.heads["artist"] = artist
    tasks = [t.to_dict() for t in manifest.tasks if t.name != DOMAIN_TASK]
    for t in tasks:
        if t["name"] == "artist":
            t["labels"] = artist_names
    model.heads = nn.ModuleDict({t["name"]: model.heads[t["name"]] for t in tasks})
    model.feature_heads = nn.ModuleDict({DOMAIN_TASK: domain})
    tasks.append({"name": DOMAIN_TASK, "labels": list(DOMAINS), "hidden": DOMAIN_HIDDEN})

    save_checkpoint(out, model, config(manifest, tasks, test_artist))  # replaces the whole folder
    reference = reference_set(data, REFERENCE_SIZE)
    atomic_write(out / REFERENCE_FILE,
                 lambda f: np.savez_compressed(f, reference=reference.astype(np.float16)))
    calibration = {
        **cal4,
        "temperature": {**cal4["temperature"], "artist": t_a, DOMAIN_TASK: t_d},
        "bias": {**cal4["bias"], "artist": b_a, DOMAIN_TASK: b_d},
        "confident": {**cal4["confident"], "artist": named},
        "another_artist": {"shift": shift_a, "val_known_accuracy": round(known_acc, 4),
                           "v4_val_known_accuracy": round(float(v4_acc), 4)},
        "domain": {"artwork_shift": shift, "max_val_paintings_flagged": MAX_FLAGGED,
                   "val_paintings_flagged": round(float(flagged[painting].mean()), 4),
                   "val_not_art_flagged": round(float(flagged[~painting].mean()), 4)},
        "novelty": {"method": "knn", "k": NOVELTY_K, "plus_domain": True,
                    "file": REFERENCE_FILE,
                    "sha256": sha256_file(out / REFERENCE_FILE),
                    "reference": f"{len(reference)} training paintings"},
    }
    atomic_write_text(out / CALIBRATION_FILE, json.dumps(calibration) + "\n")
    return calibration


def head_metrics(p: np.ndarray, codes: np.ndarray, other: int) -> dict[str, Any]:
    """Test figures of the artist head on the works of known artists (``another artist``
    counts as wrong), as ``artylyze evaluate`` reports them."""
    from sklearn.metrics import f1_score

    known = codes != other
    p, y = p[known], codes[known]
    top3 = np.argsort(-p, axis=1)[:, :3]
    return {"n": int(known.sum()), "accuracy": float((p.argmax(1) == y).mean()),
            "macro_f1": float(f1_score(y, p.argmax(1), labels=np.unique(y), average="macro")),
            "top3_accuracy": float((top3 == y[:, None]).any(1).mean()),
            "measured_by": "artylyze.train.dontknow on cached features (graph parity 1e-6)"}


def config(manifest, tasks: list[dict], artist: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint config: v4's, with the new task list, where v5 came from, and v4's
    test figures with the artist head's replaced (the other heads are v4's)."""
    metrics = dict(manifest.extra.get("metrics") or {})
    if metrics.get("tasks"):
        metrics["tasks"] = {**metrics["tasks"], "artist": artist}
    return {
        "name": manifest.name.replace("-texture", "-texture-v6"),
        "backbone": manifest.backbone, "tasks": tasks,
        "embedding_dim": manifest.embedding_dim, "input_size": manifest.input_size,
        "resize": manifest.resize,
        "data": {**(manifest.extra.get("training") or {}),
                 "v6": {"from": manifest.model_id, "domain_sources": [*PAINTINGS, *NOT_ART],
                        "artist_min": ARTIST_MIN}},
        "metrics": metrics or None,
    }


def reference_set(data: Data, size: int, seed: int = 0) -> np.ndarray:
    """Unit embeddings of ``size`` training paintings, drawn evenly from both sources."""
    parts = []
    for ds in PAINTINGS:
        _, x = data.split(ds, "train")
        parts.append(nn.functional.normalize(x, dim=1).numpy())
    emb = np.concatenate(parts)
    pick = np.random.default_rng(seed).permutation(len(emb))[:size]
    return emb[np.sort(pick)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m artylyze.train.dontknow",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="the v4 bundle to start from")
    p.add_argument("cache", type=Path, help="feature cache (artylyze.train.feature_cache)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--synthetic", type=Path, default=Path("runs/synthetic"),
                   help="generated non-artworks (artylyze.train.synthetic)")
    a = p.parse_args(argv)
    build(a.bundle, a.cache, a.out, a.synthetic)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
