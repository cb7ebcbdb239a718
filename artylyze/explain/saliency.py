"""Perturbation saliency for any model that maps uint8 images to probabilities (no torch).

Both methods hide parts of the image and watch the scores move, a few dozen forward passes
per image, batched:

- ``occlusion``: a window of a quarter of the side slides in steps of an eighth (7 x 7 = 49
  windows); a window's effect is the score it takes away (Zeiler & Fergus 2014).
- ``rise``: random smooth masks keep about half of the image each, in complementary pairs; a
  pixel's saliency is the slope of the score on how much of it a mask kept (Petsiuk et al.
  2018, as a regression so that it needs dozens of masks, not thousands).

Hidden pixels are not painted grey or black, which the model may read as content, but
replaced by a smoothed copy of the image, as meaningful perturbations do (Fong & Vedaldi
2017): detail and brushwork go, colour stays. The smoothing is a median filter, not a blur,
because a median keeps hard edges: the border of a painting on a wall or a mount is not
smeared onto the wall. A pixel that equals its smoothed self (a flat margin, a blank wall)
cannot change any score, and the map says so exactly: each method's effect is shared among
the pixels it changed, in proportion to how much it changed them. Maps are non-negative (evidence
for the label; what argues against it is cut at zero) and deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from artylyze.errors import ArtyLyzeError
from artylyze.options import Explain

Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]
METHODS = ("rise", "occlusion")
OCCLUSION_WINDOW = 4  # the window is 1/4 of the side ...
OCCLUSION_STEPS = 8  # ... and moves by 1/8 of it: 7 positions per side
OCCLUSION_POSITIONS = OCCLUSION_STEPS - OCCLUSION_STEPS // OCCLUSION_WINDOW + 1
RISE_KEEP = 0.5  # share of mask cells kept
CHANGE_SMOOTH = 0.01  # the change map is smoothed by this share of the side (2 px at 224)


class SaliencyError(ArtyLyzeError):
    """An unknown saliency method or option."""


@dataclass(frozen=True)
class SaliencyOptions:
    """Every default of the perturbation methods in one place; the CLI reads them."""

    method: str = Explain.method.default
    masks: int = Explain.masks.default  # rise: forward passes (complementary pairs: even)
    grid: int = 5  # rise: mask cells per side (coarser cells: steadier maps from few masks)
    smooth: float = 0.12  # median window of the baseline, as a share of the side
    batch_size: int = 24
    seed: int = Explain.seed.default

    def check(self) -> SaliencyOptions:
        if self.method not in METHODS:
            raise SaliencyError(f"unknown saliency method {self.method!r}; expected one of "
                                f"{', '.join(METHODS)}")
        if self.masks < 2 or self.grid < 2 or self.batch_size < 1 or not 0 < self.smooth < 1:
            raise SaliencyError(f"bad saliency options {self}: masks >= 2, grid >= 2, "
                                "batch_size >= 1 and 0 < smooth < 1")
        return self

    @property
    def passes(self) -> int:
        """Forward passes per image, the reference pass included."""
        if self.method == "occlusion":
            return OCCLUSION_POSITIONS ** 2 + 1
        return self.masks + self.masks % 2 + 1


def baseline(pixels: np.ndarray, window: float) -> np.ndarray:
    """What hidden pixels become: a median filter of ``window`` pixels, run at half
    resolution (4x cheaper, same look) and scaled back; uint8 [S, S, 3]."""
    size = pixels.shape[0]
    half = Image.fromarray(pixels).resize((size // 2, size // 2), Image.Resampling.BOX)
    median = half.filter(ImageFilter.MedianFilter(max(3, int(window / 2) | 1)))
    return np.asarray(median.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def occlusion_masks(size: int) -> np.ndarray:
    """Keep-masks [K, S, S] (1 = shown, 0 = hidden), one per position of the sliding window."""
    window, step = size // OCCLUSION_WINDOW, size // OCCLUSION_STEPS
    starts = [i * step for i in range(OCCLUSION_POSITIONS)]
    starts[-1] = size - window  # the last window ends at the border when size % 8 != 0
    masks = np.ones((len(starts) ** 2, size, size), np.float32)
    for k, (y, x) in enumerate((y, x) for y in starts for x in starts):
        masks[k, y:y + window, x:x + window] = 0.0
    return masks


def rise_masks(size: int, count: int, grid: int, seed: int) -> np.ndarray:
    """Smooth random keep-masks [count, S, S]: a ``grid`` x ``grid`` coin toss per cell,
    upsampled bilinearly and shifted by a random fraction of a cell; every second mask is
    the complement of the one before, so each pixel is kept exactly half the time."""
    rng = np.random.default_rng(seed)
    cell = -(-size // grid)
    big = (grid + 1) * cell
    pairs = (count + 1) // 2
    masks = np.empty((2 * pairs, size, size), np.float32)
    for i in range(pairs):
        coins = (rng.random((grid + 1, grid + 1)) < RISE_KEEP).astype(np.float32)
        up = np.asarray(Image.fromarray(coins, "F").resize((big, big), Image.Resampling.BILINEAR))
        dy, dx = rng.integers(0, cell, size=2)
        masks[2 * i] = up[dy:dy + size, dx:dx + size]
        masks[2 * i + 1] = 1.0 - masks[2 * i]
    return masks


def change_map(pixels: np.ndarray, base: np.ndarray, size: int) -> np.ndarray:
    """How much hiding each pixel changes it (mean absolute RGB difference, lightly smoothed)."""
    diff = np.abs(pixels.astype(np.float32) - base.astype(np.float32)).mean(axis=2)
    return smooth(diff, CHANGE_SMOOTH * size)


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of a 2-D float array (Pillow blurs only 8-bit images)."""
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values.astype(np.float32), radius, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 1, padded, kernel, "valid")
    return np.apply_along_axis(np.convolve, 0, rows, kernel, "valid").astype(np.float32)


def masked_outputs(predict: Predictor, pixels: np.ndarray, base: np.ndarray,
                   masks: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Every output of the model for the reference image (row 0) and each masked copy."""
    img, bg = pixels.astype(np.float32), base.astype(np.float32)
    keep = np.concatenate([np.ones((1, *masks.shape[1:]), np.float32), masks])
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(keep), batch_size):
        batch = bg + keep[start:start + batch_size, ..., None] * (img - bg)
        for name, value in predict(np.rint(batch).astype(np.uint8)).items():
            parts.setdefault(name, []).append(np.asarray(value, np.float32))
    return {name: np.concatenate(v) for name, v in parts.items()}


def occlusion_map(ref: float, scores: np.ndarray, masks: np.ndarray,
                  change: np.ndarray) -> np.ndarray:
    """Each window's score drop, shared among its pixels by how much hiding changed them,
    averaged over the windows that cover each pixel (borders are covered by fewer)."""
    hidden = (1.0 - masks) * change
    share = hidden / np.maximum(hidden.sum(axis=(1, 2), keepdims=True), 1e-12)
    drops = np.maximum(ref - scores, 0.0)
    cover = (1.0 - masks).sum(axis=0)
    return np.tensordot(drops, share, axes=1) * change.size / np.maximum(cover, 1.0)


def rise_map(scores: np.ndarray, masks: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Per pixel, the slope of the score on the mask (how much keeping it raises the score),
    weighted by how much hiding changes that pixel."""
    s = scores - scores.mean()
    m = masks - masks.mean(axis=0)
    slope = np.tensordot(s, m, axes=1) / np.maximum((m * m).sum(axis=0), 1e-12)
    return np.maximum(slope, 0.0) * change / max(float(change.mean()), 1e-12)


@dataclass
class Perturbed:
    """The model's outputs on one image and its masked copies: maps for any label follow
    without another forward pass."""

    method: str
    outputs: dict[str, np.ndarray]  # row 0: the image itself; then one row per mask
    masks: np.ndarray  # [K, S, S] keep-masks
    change: np.ndarray  # [S, S] how much hiding changes each pixel

    @property
    def reference(self) -> dict[str, np.ndarray]:
        """Every output for the unmasked image."""
        return {name: v[0] for name, v in self.outputs.items()}

    def map(self, output: str, cls: int) -> np.ndarray:
        """The saliency map [S, S] (non-negative, float32) of class ``cls`` of ``output``."""
        scores = self.outputs[output][:, cls].astype(np.float64)
        if self.method == "occlusion":
            found = occlusion_map(float(scores[0]), scores[1:], self.masks, self.change)
        else:
            found = rise_map(scores[1:], self.masks, self.change)
        return found.astype(np.float32)


def perturb(predict: Predictor, pixels: np.ndarray,
            opts: SaliencyOptions = SaliencyOptions()) -> Perturbed:
    """Run the reference pass and every masked pass of one uint8 [S, S, 3] image."""
    opts.check()
    size = pixels.shape[0]
    base = baseline(pixels, opts.smooth * size)
    masks = (occlusion_masks(size) if opts.method == "occlusion"
             else rise_masks(size, opts.masks, opts.grid, opts.seed))
    return Perturbed(opts.method, masked_outputs(predict, pixels, base, masks, opts.batch_size),
                     masks, change_map(pixels, base, size))


def mass_inside(saliency_map: np.ndarray, region: np.ndarray) -> float:
    """Share of a map's total inside a boolean region (0.0 for an all-zero map)."""
    total = float(saliency_map.sum())
    return float(saliency_map[region].sum()) / total if total > 0 else 0.0
