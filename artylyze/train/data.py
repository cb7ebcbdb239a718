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

from artylyze.atomic import atomic_write
from artylyze.train.manifest import TASKS
from artylyze.train.metrics import UNKNOWN

BALANCE_MODES = ("none", "weighted-loss", "sampler", "undersample")
#: Tasks learnt as an ordered distribution over bins rather than as classes.
YEAR_TASK = "year"
YEAR_STEP = 10  # decades: fine enough for +-25 years, coarse enough to have data in each
YEAR_SIGMA = 15.0  # years: the soft target's spread, roughly a dating expert's uncertainty


@dataclass
class Encoded:
    """Integer label codes per task (``UNKNOWN`` where the label is null) and label names."""

    codes: dict[str, np.ndarray]
    labels: dict[str, list[str]]


def year_bins(years: pd.Series, step: int = YEAR_STEP) -> list[str]:
    """Bin labels (the first year of each bin) from the earliest to the latest known year."""
    known = pd.to_numeric(years, errors="coerce").dropna()
    first, last = int(known.min()) // step * step, int(known.max()) // step * step
    return [str(y) for y in range(first, last + 1, step)]


def encode_years(years: pd.Series, labels: list[str], step: int = YEAR_STEP) -> np.ndarray:
    """Bin codes of recorded years (clipped to the outer bins), ``UNKNOWN`` where undated."""
    y = pd.to_numeric(years, errors="coerce").to_numpy(np.float64)
    first = int(labels[0])
    codes = np.clip((np.floor(y / step) * step - first) // step, 0, len(labels) - 1)
    return np.where(np.isnan(y), UNKNOWN, np.nan_to_num(codes)).astype(np.int64)


def soft_year_targets(codes: torch.Tensor, bins: int, step: int = YEAR_STEP,
                      sigma: float = YEAR_SIGMA) -> torch.Tensor:
    """A Gaussian over neighbouring bins per row: near misses cost less than far ones."""
    centres = torch.arange(bins, dtype=torch.float32)
    d = (centres[None, :] - codes.float()[:, None]) * step / sigma
    w = torch.exp(-0.5 * d * d)
    return w / w.sum(dim=1, keepdim=True)


def encode_labels(df: pd.DataFrame, tasks: tuple[str, ...] = TASKS) -> Encoded:
    """Labels sorted by name, so codes are stable across runs; tasks with no labels are dropped.
    ``year`` is binned by decade from the recorded years."""
    codes, labels = {}, {}
    for task in tasks:
        if task == YEAR_TASK:
            if "year" in df and pd.to_numeric(df["year"], errors="coerce").notna().any():
                labels[task] = year_bins(df["year"])
                codes[task] = encode_years(df["year"], labels[task])
            continue
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
        atomic_write(cache, lambda f: np.save(f, out))
    return out


@dataclass(frozen=True)
class Degrade:
    """Photometric noise that hides where a scan came from. Sources differ in JPEG quality,
    sharpness and colour (styles7's ``eta`` files are small and heavily compressed), and a
    model can learn the source instead of the style; re-compressing at a random quality,
    blurring a little and jittering colour takes that shortcut away."""

    jpeg_p: float = 0.6
    jpeg_quality: tuple[int, int] = (25, 92)
    blur_p: float = 0.25
    blur_radius: tuple[float, float] = (0.3, 1.2)
    jitter: float = 0.15  # brightness, contrast and saturation factors in 1 +- jitter


def degrade(img: torch.Tensor, spec: Degrade, generator: torch.Generator) -> torch.Tensor:
    """Blur and JPEG re-compression of :class:`Degrade` on one uint8 ``[3, H, W]`` image."""
    import io

    from PIL import Image, ImageFilter

    r = torch.rand(4, generator=generator).tolist()
    if r[0] >= spec.jpeg_p and r[1] >= spec.blur_p:
        return img
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    if r[1] < spec.blur_p:
        lo, hi = spec.blur_radius
        pil = pil.filter(ImageFilter.GaussianBlur(lo + (hi - lo) * r[2]))
    if r[0] < spec.jpeg_p:
        lo, hi = spec.jpeg_quality
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=int(lo + (hi - lo) * r[3]))
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)


def jitter_colour(batch: torch.Tensor, amount: float, generator: torch.Generator
                  ) -> torch.Tensor:
    """Brightness, contrast and saturation factors in ``1 +- amount`` per image, on a float
    ``[N, 3, H, W]`` batch in [0, 255] (whole-batch tensor arithmetic: no per-image cost)."""
    n = len(batch)
    f = 1 + amount * (2 * torch.rand(3, n, 1, 1, 1, generator=generator) - 1)
    grey = (batch * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = batch * f[0]
    x = (x - grey.mean((2, 3), keepdim=True) * f[0]) * f[1] + grey.mean((2, 3),
                                                                      keepdim=True) * f[0]
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (grey + (x - grey) * f[2]).clamp_(0, 255)


def augment(batch: np.ndarray, out_size: int, generator: torch.Generator,
            max_rotation: float = 10.0, min_scale: float = 0.35,
            noise: Degrade | None = None) -> torch.Tensor:
    """Random resized crop, horizontal flip and a small rotation per image, then
    :func:`degrade` when ``noise`` is given.

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
        if noise is not None:
            crop = degrade(crop, noise, generator)
        out[i] = crop.float()
    return jitter_colour(out, noise.jitter, generator) if noise is not None and noise.jitter \
        else out


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, H, W]`` in [0, 255], as the export wrapper does."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
