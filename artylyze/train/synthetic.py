"""Synthetic non-artworks for the ``domain`` head: blank and tinted pages, gradients, colour
targets and text pages in many fonts, sizes and colours.

The shared ``notart`` set carries source cues a model can learn instead of the category (its
blanks come from one lab, its book pages are black and white, its coins lie on teal). These
generated cases vary exactly what those cues fix: paper tone, ink colour, typeface, layout,
aspect ratio and JPEG quality, so "document" has to mean text on a page and "blank" an
image with nothing painted on it. Written like ``notart``: ``images/<category>/...`` and a
``labels.csv`` with ``path, category, split, source``; the split is fixed by the seed.

    python -m artylyze.train.synthetic runs/synthetic --count 800
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from artylyze.atomic import atomic_write_text

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts",
             "C:/Windows/Fonts")
WORDS = (
    'the', 'of', 'and', 'to', 'in', 'inventory', 'number', 'received', 'letter', 'museum',
    'collection', 'folio', 'page', 'total', 'date', 'name', 'address', 'item', 'quantity',
    'price', 'signed', 'dear', 'sir', 'madam', 'report', 'catalogue', 'acquisition',
    'lot', 'paid', 'no', 'year', 'description', 'oil', 'canvas', 'frame', 'condition',
    'notes', 'remarks', 'archive', 'box', 'series', 'file', 'record', 'verso', 'recto',
    'entry', 'dimensions', 'cm', 'gift', 'loan',
)
SPLITS = (("train", 0.7), ("val", 0.85), ("test", 1.01))


def fonts() -> list[str]:
    """Scalable fonts found on this machine (an empty list falls back to PIL's own)."""
    found: list[str] = []
    for d in FONT_DIRS:
        p = Path(d)
        if p.is_dir():
            found += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in (".ttf", ".otf"))
    return found


def _font(rng: random.Random, faces: list[str], size: int) -> ImageFont.ImageFont:
    if faces:
        try:
            return ImageFont.truetype(rng.choice(faces), size)
        except OSError:
            pass
    return ImageFont.load_default(size=size)


def _size(rng: random.Random) -> tuple[int, int]:
    long, ratio = rng.randint(224, 400), rng.uniform(0.6, 1.0)
    short = int(long * ratio)
    return (long, short) if rng.random() < 0.4 else (short, long)


def _paper(rng: random.Random) -> tuple[int, int, int]:
    kind = rng.random()
    if kind < 0.45:  # white to cream paper
        v = rng.randint(215, 255)
        return (v, v - rng.randint(0, 12), v - rng.randint(0, 35))
    if kind < 0.75:  # any tint
        return tuple(rng.randint(120, 255) for _ in range(3))  # type: ignore[return-value]
    v = rng.randint(0, 200)  # grey to black (dark frames, card)
    return (v, v, v)


def _noise(img: Image.Image, rng: random.Random, amount: float) -> Image.Image:
    a = np.asarray(img, np.float32)
    a = a + np.random.default_rng(rng.randint(0, 2**31)).normal(0, amount, a.shape)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def blank_page(rng: random.Random, faces: list[str]) -> Image.Image:
    """An empty or tinted page, sometimes with a scanner's darker edge or a faint stain."""
    img = Image.new("RGB", _size(rng), _paper(rng))
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.4:
        w, h = img.size
        edge = tuple(max(0, c - rng.randint(20, 90)) for c in img.getpixel((0, 0)))
        t = rng.randint(2, 18)
        side = rng.choice(["left", "right", "top", "bottom"])
        box = {"left": (0, 0, t, h), "right": (w - t, 0, w, h), "top": (0, 0, w, t),
               "bottom": (0, h - t, w, h)}[side]
        draw.rectangle(box, fill=edge)
    if rng.random() < 0.2:
        w, h = img.size
        x, y, r = rng.randint(0, w), rng.randint(0, h), rng.randint(10, 60)
        stain = tuple(max(0, c - rng.randint(5, 25)) for c in img.getpixel((0, 0)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=stain)
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8)))
    return _noise(img, rng, rng.uniform(0, 6))


def gradient(rng: random.Random, faces: list[str]) -> Image.Image:
    """A linear or radial blend between two or three colours."""
    w, h = _size(rng)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    cols = np.array([[rng.randint(0, 255) for _ in range(3)]
                     for _ in range(rng.choice([2, 2, 3]))], np.float32)
    stops = np.linspace(0, 1, len(cols))
    out = np.stack([np.interp(t, stops, cols[:, c]) for c in range(3)], -1)
    return _noise(Image.fromarray(out.astype(np.uint8)), rng, rng.uniform(0, 4))


def colour_target(rng: random.Random, faces: list[str]) -> Image.Image:
    """A colour checker, grey ramp or dot grid on a card, as museum scans include."""
    w, h = _size(rng)
    bg = rng.choice([(rng.randint(0, 60),) * 3, (rng.randint(90, 160),) * 3,
                     (rng.randint(200, 255),) * 3])
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    kind = rng.random()
    rows, cols = rng.randint(2, 8), rng.randint(3, 12)
    mx, my = rng.randint(4, w // 8), rng.randint(4, h // 8)
    cw, ch = (w - 2 * mx) / cols, (h - 2 * my) / rows
    gap = rng.uniform(0.05, 0.25)
    for r in range(rows):
        for c in range(cols):
            if kind < 0.5:
                fill = tuple(rng.randint(0, 255) for _ in range(3))
            elif kind < 0.75:
                v = int(255 * (r * cols + c) / max(rows * cols - 1, 1))
                fill = (v, v, v)
            else:
                fill = (0, 0, 0) if sum(bg) > 300 else (255, 255, 255)
            x0, y0 = mx + c * cw + gap * cw / 2, my + r * ch + gap * ch / 2
            x1, y1 = x0 + cw * (1 - gap), y0 + ch * (1 - gap)
            if kind >= 0.75:
                rad = min(x1 - x0, y1 - y0) / rng.uniform(3, 6)
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=fill)
            else:
                draw.rectangle((x0, y0, x1, y1), fill=fill)
    if rng.random() < 0.4:
        draw.text((mx, h - my), "".join(rng.choice("ABCDEFGH0123456789") for _ in range(8)),
                  fill=(128, 128, 128), font=_font(rng, faces, rng.randint(8, 14)))
    return _noise(img, rng, rng.uniform(0, 5))


def _ink(rng: random.Random, paper: tuple[int, int, int]) -> tuple[int, int, int]:
    light = sum(paper) > 380
    if rng.random() < 0.6:
        v = rng.randint(0, 70) if light else rng.randint(190, 255)
        return (v, v, v)
    lo, hi = (0, 140) if light else (150, 255)
    return tuple(rng.randint(lo, hi) for _ in range(3))  # type: ignore[return-value]


def text_page(rng: random.Random, faces: list[str]) -> Image.Image:
    """Typed or printed text: letters, inventory cards, forms, receipts, book pages."""
    w, h = _size(rng)
    paper = _paper(rng)
    img = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(img)
    ink = _ink(rng, paper)
    size = rng.randint(7, 22)
    font = _font(rng, faces, size)
    margin = rng.randint(6, w // 6)
    y = rng.randint(4, h // 6)
    ruled = rng.random() < 0.3
    columns = 2 if w > 300 and rng.random() < 0.25 else 1
    col_w = (w - 2 * margin) // columns
    if rng.random() < 0.5:  # a heading in another size
        heading = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))).upper()
        draw.text((margin, y), heading, fill=_ink(rng, paper),
                  font=_font(rng, faces, size + rng.randint(3, 12)))
        y += size * 2 + 6
    top = y
    for col in range(columns):
        y, x0 = top, margin + col * col_w
        while y < h - margin:
            line, length = [], rng.randint(2, 12)
            while len(line) < length:
                word = rng.choice(WORDS)
                line.append(str(rng.randint(1, 1999)) if rng.random() < 0.1 else word)
            text = " ".join(line)
            if len(text) * size * 0.55 > col_w:
                text = text[: max(3, int(col_w / (size * 0.55)))]
            draw.text((x0, y), text, fill=ink, font=font)
            if ruled:
                draw.line((x0, y + size + 2, x0 + col_w - 8, y + size + 2), fill=ink, width=1)
            y += int(size * rng.uniform(1.2, 1.9))
            if rng.random() < 0.08:
                y += size * 2
    img = img.rotate(rng.uniform(-2, 2), fillcolor=paper, resample=Image.BILINEAR)
    return _noise(img, rng, rng.uniform(0, 5))


#: Generator, category, share of the images.
KINDS: tuple[tuple[Callable[[random.Random, list[str]], Image.Image], str, float], ...] = (
    (text_page, "document", 0.45),
    (blank_page, "blank", 0.2),
    (gradient, "blank", 0.15),
    (colour_target, "blank", 0.2),
)

CUMULATIVE = np.cumsum([share for *_, share in KINDS])


def generate(out: Path, count: int, seed: int = 0) -> Path:
    """Write ``count`` images and ``labels.csv`` under ``out``; returns the labels path."""
    rng, faces = random.Random(seed), fonts()
    rows = []
    for i in range(count):
        r = rng.random()
        pick = int(np.searchsorted(CUMULATIVE, r, side="right"))
        make, category, _ = KINDS[min(pick, len(KINDS) - 1)]
        img = make(rng, faces)
        rel = f"{category}/syn-{make.__name__}-{i:04d}.jpg"
        path = out / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, "JPEG", quality=rng.randint(60, 95))
        s = rng.random()
        split = next(name for name, upto in SPLITS if s < upto)
        rows.append({"path": rel, "category": category, "split": split,
                     "source": f"synthetic-{make.__name__}"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["path", "category", "split", "source"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    labels = out / "labels.csv"
    atomic_write_text(labels, buf.getvalue())
    return labels


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--count", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(f"wrote {generate(a.out, a.count, a.seed)}")


if __name__ == "__main__":
    main()
