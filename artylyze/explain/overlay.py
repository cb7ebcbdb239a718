"""Saliency drawn over a painting: a heat layer whose opacity follows the map, on a dimmed
copy of the image, so the painting stays legible where the model does not look."""

from __future__ import annotations

import numpy as np
from PIL import Image

DIM = 0.55  # brightness of the painting under the heat layer
MAX_ALPHA = 0.8
GAMMA = 0.8  # < 1 lifts mid values a little, so secondary regions still show
# "inferno"-like ramp from dark purple to pale yellow (no matplotlib needed for tiles)
RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                np.float32)


def normalized(saliency: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] by its 99.5th percentile (one hot pixel does not wash out the
    rest); an all-zero map stays zero."""
    top = float(np.percentile(saliency, 99.5)) if saliency.size else 0.0
    if top <= 0:
        return np.zeros_like(saliency, dtype=np.float32)
    return np.clip(saliency / top, 0.0, 1.0).astype(np.float32)


def resized_map(saliency: np.ndarray, width: int, height: int) -> np.ndarray:
    """The map at ``width`` x ``height`` (bilinear), as the model's stretch undoes."""
    img = Image.fromarray(saliency.astype(np.float32), "F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def colours(values: np.ndarray) -> np.ndarray:
    """[0, 1] values -> RGB float [.., 3] along ``RAMP``."""
    pos = np.clip(values, 0, 1) * (len(RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(RAMP) - 2)
    frac = (pos - lo)[..., None]
    return RAMP[lo] * (1 - frac) + RAMP[lo + 1] * frac


def overlay(image: Image.Image, saliency: np.ndarray) -> Image.Image:
    """``image`` with ``saliency`` (any size; it is resized to the image) drawn over it."""
    rgb = np.asarray(image.convert("RGB"), np.float32)
    heat = normalized(resized_map(saliency, image.width, image.height)) ** GAMMA
    alpha = (heat * MAX_ALPHA)[..., None]
    out = rgb * DIM * (1 - alpha) + colours(heat) * alpha
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")
