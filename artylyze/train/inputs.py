"""What one training step feeds the heads: augmented crops through the whole network
(fine-tuning) or cached backbone features (frozen). The loop in :mod:`artylyze.train.loop`
is the same for both; only these two classes differ.

Frozen features depend on the starting weights, the input size and resize, and the images,
so the cache file name hashes all of them: re-fitting heads from another ``--init`` into the
same run directory never reuses stale features.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from artylyze.atomic import atomic_write
from artylyze.model.bundle import sha256_file
from artylyze.train import data
from artylyze.train.checkpoint import WEIGHTS_FILE
from artylyze.train.models import MultiTaskNet
from artylyze.train.splits import Split

Outputs = dict[str, torch.Tensor]


class Inputs(Protocol):
    def forward(self, model: MultiTaskNet, ix: np.ndarray, gen: torch.Generator) -> Outputs:
        """The network's raw outputs for training rows ``ix``."""

    def val_outputs(self, model: MultiTaskNet, exact: bool = False) -> dict[str, np.ndarray]:
        """Unit embeddings and softmax per task on the validation split (``exact``: in full
        precision, as calibration needs)."""


@torch.no_grad()
def predict(model: MultiTaskNet, images: np.ndarray, batch_size: int = 128,
            bf16: bool = False) -> dict[str, np.ndarray]:
    """Probabilities per task and L2-normalized embeddings for uint8 ``[N, S, S, 3]`` images."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch_size):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(data.to_tensor(images[i:i + batch_size]))
        for k, v in finish(out).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def finish(out: Outputs) -> dict[str, np.ndarray]:
    """Raw outputs -> what a bundle returns: a unit embedding and softmax per task."""
    return {k: (F.normalize(v.float(), dim=1) if k == "embedding" else v.float().softmax(1)
                ).numpy() for k, v in out.items()}


class ImageInputs:
    """Fine-tuning: random crops at ``train_size`` (with degradation) through the network."""

    def __init__(self, train: Split, val: Split, train_size: int, bf16: bool,
                 noise: data.Degrade | None) -> None:
        self.train, self.val = train, val
        self.train_size, self.bf16, self.noise = train_size, bf16, noise

    def forward(self, model: MultiTaskNet, ix: np.ndarray, gen: torch.Generator) -> Outputs:
        x = data.augment(self.train.images[ix], self.train_size, gen, noise=self.noise)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return model(x)

    def val_outputs(self, model: MultiTaskNet, exact: bool = False) -> dict[str, np.ndarray]:
        return predict(model, self.val.images, bf16=self.bf16 and not exact)


class FeatureInputs:
    """Frozen: the backbone runs once per image (cached ``.npy``); steps train the heads."""

    def __init__(self, model: MultiTaskNet, train: Split, val: Split, cache_dir: Path,
                 key: str, log: Callable[[str], None]) -> None:
        self.train_f = backbone_features(model, train, cache_dir, key, "train", log)
        self.val_f = backbone_features(model, val, cache_dir, key, "val", log)

    def forward(self, model: MultiTaskNet, ix: np.ndarray, gen: torch.Generator) -> Outputs:
        return model.from_features(self.train_f[torch.from_numpy(ix)])

    @torch.no_grad()
    def val_outputs(self, model: MultiTaskNet, exact: bool = False) -> dict[str, np.ndarray]:
        model.eval()
        return finish(model.from_features(self.val_f))


def start_key(backbone: str, init: str | None, weights: str | None, pretrained: bool,
              input_size: int, resize: str) -> str:
    """What frozen features depend on besides the images: the starting weights (by content),
    the backbone and the input."""
    if init:
        start = sha256_file(Path(init) / WEIGHTS_FILE)
    elif weights:
        start = sha256_file(weights)
    else:
        start = "pretrained" if pretrained else "random"
    return "\n".join([backbone, start, str(input_size), resize])


def backbone_features(model: MultiTaskNet, split: Split, cache_dir: Path, key: str, name: str,
                      log: Callable[[str], None]) -> torch.Tensor:
    digest = hashlib.sha256("\n".join([key, *split.paths]).encode()).hexdigest()[:16]
    cache = cache_dir / f"features-{name}-{digest}.npy"
    if cache.is_file():
        return torch.from_numpy(np.load(cache))
    model.eval()
    feats, t0 = [], time.time()
    with torch.no_grad():
        for i in range(0, len(split.images), 64):
            x = model.normalize(data.to_tensor(split.images[i:i + 64]))
            feats.append(model.backbone(x))
            log(f"features {name}: {min(i + 64, len(split.images))}/{len(split.images)} "
                f"({time.time() - t0:.0f}s)")
    f = torch.cat(feats)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, lambda file: np.save(file, f.numpy()))
    return f
