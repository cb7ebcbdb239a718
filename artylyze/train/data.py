"""Training data: decoded images held in memory, labels as integer codes, balance and augmentation.

wikiart11 is small (10k images at 224 px = 1.5 GB as uint8), so images are decoded once with
the same loader that inference uses and cached as ``.npy``; each epoch then only augments.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artylyze.train.manifest import TASKS
from artylyze.train.metrics import UNKNOWN

BALANCE_MODES = ("none", "weighted-loss", "sampler", "undersample")


@dataclass
class Encoded:
    """Integer label codes per task (``UNKNOWN`` where the label is null) and label names."""

    codes: dict[str, np.ndarray]
    labels: dict[str, list[str]]


def encode_labels(df: pd.DataFrame, tasks: tuple[str, ...] = TASKS) -> Encoded:
    """Labels sorted by name, so codes are stable across runs; tasks with no labels are dropped."""
    codes, labels = {}, {}
    for task in tasks:
        if task not in df or df[task].notna().sum() == 0:
            continue
        names = sorted(df[task].dropna().unique().tolist())
        index = {n: i for i, n in enumerate(names)}
        codes[task] = df[task].map(lambda v, ix=index: ix.get(v, UNKNOWN)).fillna(
            UNKNOWN).to_numpy(np.int64)
        labels[task] = names
    return Encoded(codes, labels)


def class_weights(codes: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced weights ``n / (C * count_c)`` over known labels (sklearn's 'balanced');
    a class absent from the data gets weight 0 so it cannot dominate."""
    known = codes[codes != UNKNOWN]
    counts = np.bincount(known, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(known) / (present.sum() * counts[present])
    return weights.astype(np.float32)


def sample_weights(codes: dict[str, np.ndarray]) -> np.ndarray:
    """Per-row weight for a balanced sampler: the mean balanced class weight over the tasks
    the row is labelled for."""
    total = np.zeros(len(next(iter(codes.values()))))
    count = np.zeros_like(total)
    for c in codes.values():
        w = class_weights(c, int(c.max()) + 1 if (c >= 0).any() else 1)
        known = c != UNKNOWN
        total[known] += w[c[known]]
        count[known] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def undersample(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices with every class of ``codes`` cut to the size of the rarest class."""
    known = np.flatnonzero(codes != UNKNOWN)
    per_class = [known[codes[known] == c] for c in np.unique(codes[known])]
    smallest = min(len(ix) for ix in per_class)
    picked = [rng.choice(ix, smallest, replace=False) for ix in per_class]
    return np.sort(np.concatenate(picked))


def epoch_order(balance: str, codes: dict[str, np.ndarray], primary: str,
                rng: np.random.Generator) -> np.ndarray:
    """Row order for one epoch under the balance mode (``sampler`` draws with replacement)."""
    n = len(codes[primary])
    if balance == "sampler":
        w = sample_weights(codes)
        return rng.choice(n, n, replace=True, p=w / w.sum())
    if balance == "undersample":
        return rng.permutation(undersample(codes[primary], rng))
    return rng.permutation(n)


def load_image_array(paths: list[str], root: Path, size: int, resize: str,
                     cache_dir: Path | None = None) -> np.ndarray:
    """Decode every image to uint8 ``[N, size, size, 3]`` with the inference loader; cached."""
    from artylyze.imaging import load_image

    key = hashlib.sha256("\n".join([str(root), str(size), resize, *paths]).encode()).hexdigest()
    cache = cache_dir / f"images-{key[:16]}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        return np.load(cache, mmap_mode="r")
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_image(root / p, size, resize).pixels
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache)
    return out


def augment(batch: np.ndarray, out_size: int, generator: torch.Generator,
            max_rotation: float = 10.0, min_scale: float = 0.35) -> torch.Tensor:
    """Random resized crop, horizontal flip and a small rotation, per image.

    ``batch``: uint8 ``[N, H, W, 3]``. Returns float ``[N, 3, out, out]`` in [0, 255].
    """
    import torchvision.transforms.v2.functional as F

    images = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    h, w = images.shape[-2:]
    out = torch.empty(len(images), 3, out_size, out_size)
    for i, img in enumerate(images):
        r = torch.rand(5, generator=generator).tolist()
        scale = min_scale + (1 - min_scale) * r[0]
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * r[1])
        cw = min(w, round(math.sqrt(scale * h * w * ratio)))
        ch = min(h, round(math.sqrt(scale * h * w / ratio)))
        top, left = int(r[2] * (h - ch)), int(r[3] * (w - cw))
        crop = F.resized_crop(img, top, left, ch, cw, [out_size, out_size], antialias=True)
        if r[4] < 0.5:
            crop = F.horizontal_flip(crop)
        angle = (torch.rand(1, generator=generator).item() * 2 - 1) * max_rotation
        if max_rotation:
            crop = F.rotate(crop, angle, fill=[0.0])
        out[i] = crop.float()
    return out


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, H, W]`` in [0, 255], as the export wrapper does."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
