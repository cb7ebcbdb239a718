"""Open-set novelty: how well each score tells paintings of styles the model never saw from
the test paintings of the styles it knows (AUROC, higher is better; 0.5 is chance).

The model is trained with some styles held out entirely (not in train or val; their test rows
unlabelled), e.g. with the frozen-feature recipe of the default model:

    artylyze train manifest_open15.parquet --mode frozen --weights v1-backbone.safetensors \\
        --out runs/open15 --epochs 30 --batch-size 64
    python benchmarks/open_set.py runs/open15/best runs/manifest_v2.parquet \\
        --held Romanticism,Symbolism,Expressionism

Scores compared, each "higher = more novel": 1 - max calibrated style probability (MSP),
the negative energy -T*logsumexp(logits/T), the cosine distance to the nearest style centre of
the validation embeddings (what the bundle ships), and the mean cosine distance to the 10
nearest training embeddings, or validation embeddings (kNN; the validation ones are what a
bundle could carry). Prints a table and writes benchmarks/results/open_set.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from artylyze.imaging import load_image
from artylyze.model.predict import novelty_scores
from artylyze.train.calibrate import class_centres, read_calibration
from artylyze.train.checkpoint import load_checkpoint
from artylyze.train.data import to_tensor
from artylyze.train.manifest import read_manifest

RESULTS = Path(__file__).parent / "results" / "open_set.json"


@torch.no_grad()
def outputs(model, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Style logits and unit embeddings."""
    logits, emb = [], []
    for i in range(0, len(images), batch):
        out = model(to_tensor(images[i:i + batch]))
        logits.append(out["style"].float().numpy())
        emb.append(torch.nn.functional.normalize(out["embedding"].float(), dim=1).numpy())
    return np.concatenate(logits), np.concatenate(emb)


def knn_distance(emb: np.ndarray, reference: np.ndarray, k: int = 10) -> np.ndarray:
    """Mean cosine distance of each unit embedding to its ``k`` nearest in ``reference``."""
    return np.sort(1 - emb @ reference.T, axis=1)[:, :k].mean(1)


def images_of(df, root: Path, size: int, resize: str) -> np.ndarray:
    return np.stack([load_image(root / p, size, resize).pixels for p in df["path"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="trained with the --held styles left out")
    ap.add_argument("manifest", help="the full manifest (held-out styles labelled)")
    ap.add_argument("--held", required=True, help="comma-separated held-out styles")
    ap.add_argument("--train-sample", type=int, default=3000,
                    help="training images embedded for the kNN score")
    args = ap.parse_args()
    held = [s.strip() for s in args.held.split(",")]
    model, config = load_checkpoint(args.checkpoint)
    model.eval()
    temps = (read_calibration(args.checkpoint) or {}).get("temperature", {})
    t = float(temps.get("style", 1.0))
    labels = next(x["labels"] for x in config["tasks"] if x["name"] == "style")
    assert not set(held) & set(labels), "the checkpoint was trained on a held-out style"
    df, root = read_manifest(args.manifest)
    size, resize = config["input_size"], config["resize"]
    t0 = time.time()
    test = df[df["split"] == "test"].reset_index(drop=True)
    val = df[(df["split"] == "val") & df["style"].isin(labels)].reset_index(drop=True)
    train = df[(df["split"] == "train") & df["style"].isin(labels)].sample(
        min(args.train_sample, len(df)), random_state=0)
    logits, emb = outputs(model, images_of(test, root, size, resize))
    _, val_emb = outputs(model, images_of(val, root, size, resize))
    _, train_emb = outputs(model, images_of(train, root, size, resize))
    novel = test["style"].isin(held).to_numpy()
    z = logits / t
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    codes = np.array([labels.index(s) for s in val["style"]])
    centres = class_centres(val_emb, codes, len(labels))
    lse = z.max(1) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1))
    scores = {"1 - max calibrated probability (MSP)": 1 - p.max(1),
              "energy (-T logsumexp(logits/T))": -t * lse,
              "distance to nearest style centre (shipped)": novelty_scores(emb, {
                  "centres": centres}),
              "kNN distance to training embeddings (k=10)": knn_distance(emb, train_emb),
              "kNN distance to validation embeddings (k=10)": knn_distance(emb, val_emb)}
    result = {"checkpoint": args.checkpoint, "held_out": held, "known_styles": len(labels),
              "test_novel": int(novel.sum()), "test_known": int((~novel).sum()),
              "auroc": {k: round(float(roc_auc_score(novel, v)), 4) for k, v in scores.items()},
              "seconds": round(time.time() - t0, 1)}
    print(f"held out: {', '.join(held)}; test: {result['test_novel']} novel vs "
          f"{result['test_known']} known ({len(labels)} styles)")
    print(f"| {'novelty score':<45} | AUROC |\n|{'-' * 47}|-------|")
    for k, v in result["auroc"].items():
        print(f"| {k:<45} | {v:.3f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
