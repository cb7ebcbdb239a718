"""Copies of a work as archives make them: the labelled positives of the duplicate benchmark.

Each transform takes an RGB PIL image and a seeded ``random.Random`` and returns another scan
of the same work: a crop of 5-30%, a rescale to 30-200%, JPEG at quality 30-95, a turn by
90/180 degrees or a tilt of 1-3 degrees, an exposure change with a colour cast, an added frame
or scan border, and a perspective "photo of the painting" on a wall. ``archive_copy`` chains
one of each kind chosen at random with a JPEG round trip, as a rescan-then-web-copy does.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

Transform = Callable[[Image.Image, random.Random], Image.Image]


def crop(img: Image.Image, rng: random.Random) -> Image.Image:
    """Cut 5-30% of the area away, unevenly from the sides (a detail or a trimmed scan)."""
    w, h = img.size
    keep = 1.0 - rng.uniform(0.05, 0.30)
    side = keep ** 0.5
    cw, ch = max(8, int(w * side)), max(8, int(h * side))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def rescale(img: Image.Image, rng: random.Random) -> Image.Image:
    """Resize to 30-200% of each side (a web thumbnail or an upsampled print)."""
    f = rng.uniform(0.30, 2.0)
    w, h = img.size
    return img.resize((max(8, round(w * f)), max(8, round(h * f))), Image.Resampling.BICUBIC)


def jpeg(img: Image.Image, rng: random.Random) -> Image.Image:
    """Re-encode as JPEG at quality 30-95."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=rng.randint(30, 95))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def turn(img: Image.Image, rng: random.Random) -> Image.Image:
    """Turn by 90 or 180 degrees (a scan fed sideways), or tilt by 1-3 degrees."""
    if rng.random() < 0.5:
        return img.rotate(rng.choice([90, 180, 270]), expand=True)
    angle = rng.uniform(1.0, 3.0) * rng.choice([-1, 1])
    return img.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


def exposure(img: Image.Image, rng: random.Random) -> Image.Image:
    """Brighter or darker by up to 40%, a gamma of 0.7-1.4 and a colour cast of up to 15%."""
    x = np.asarray(img.convert("RGB"), np.float32) / 255.0
    x = np.clip(x * rng.uniform(0.6, 1.4), 0, 1) ** rng.uniform(0.7, 1.4)
    cast = np.array([rng.uniform(0.85, 1.15) for _ in range(3)], np.float32)
    return Image.fromarray((np.clip(x * cast, 0, 1) * 255).astype(np.uint8))


def border(img: Image.Image, rng: random.Random) -> Image.Image:
    """A frame, mat or scan bed around the work: 3-15% of the short side on every side."""
    w, h = img.size
    pad = max(2, int(min(w, h) * rng.uniform(0.03, 0.15)))
    colour = rng.choice([(255, 255, 255), (20, 20, 20), (120, 90, 50), (200, 200, 190)])
    out = ImageOps.expand(img, border=pad, fill=colour)
    if rng.random() < 0.5:  # a thin inner line, as a mat's bevel
        out = ImageOps.expand(ImageOps.expand(img, border=2, fill=(240, 235, 220)),
                              border=pad, fill=colour)
    return out


def perspective(img: Image.Image, rng: random.Random) -> Image.Image:
    """A photograph of the painting on a wall: corners moved by up to 12% toward the inside,
    the wall around it, a little darker."""
    w, h = img.size
    pad = int(0.12 * max(w, h))
    wall = tuple(rng.randint(150, 230) for _ in range(3))
    canvas = Image.new("RGB", (w + 2 * pad, h + 2 * pad), wall)
    canvas.paste(img, (pad, pad))
    cw, ch = canvas.size
    j = [rng.uniform(0, 0.12) for _ in range(8)]
    # where the output's corners come from in the input (PIL's QUAD: ul, ll, lr, ur)
    quad = (-j[0] * w, -j[1] * h, -j[2] * w, ch + j[3] * h,
            cw + j[4] * w, ch + j[5] * h, cw + j[6] * w, -j[7] * h)
    out = canvas.transform((cw, ch), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC,
                           fillcolor=wall)
    return exposure(out, rng)


TRANSFORMS: dict[str, Transform] = {
    "crop": crop, "rescale": rescale, "jpeg": jpeg, "turn": turn, "exposure": exposure,
    "border": border, "perspective": perspective,
}


def archive_copy(img: Image.Image, rng: random.Random, kind: str | None = None,
                 extra: int = 1) -> tuple[Image.Image, str]:
    """One copy: the transform ``kind`` (random when None), ``extra`` more at random, then a
    JPEG round trip; returns the image and the names of the transforms applied."""
    names = [kind or rng.choice(sorted(TRANSFORMS))]
    names += rng.sample([n for n in sorted(TRANSFORMS) if n not in names], extra)
    out = img.convert("RGB")
    for name in names:
        out = TRANSFORMS[name](out, rng)
    return jpeg(out, rng), "+".join(names)
