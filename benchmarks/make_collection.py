"""Build a benchmark collection of full-size "scans" from wikiart11, deterministically.

Archives hold scans of 2-12 megapixels, not 224 px thumbnails, and decoding them is half of
the work of tagging. Each benchmark image is a wikiart11 painting upscaled (bicubic) to a
random size between ``--min-mp`` and ``--max-mp`` megapixels at a random aspect ratio
(1:2 portrait to 2:1 landscape), with mild sensor-like grain so the files have the entropy
of a real scan (a plain upscale compresses, and decodes, unrealistically well). Most are
JPEG (quality 85-95, some progressive); one in 40 is a PNG and one in 40 an LZW TIFF.

Files land ImageFolder-style, ``OUT/<style>/<n>_<name>.<ext>``, so the naive torchvision
pipeline in ``tag_throughput.py`` reads the same folder. The same ``--seed`` and ``--count``
give byte-identical files; existing files are kept, so an interrupted build resumes.

    python benchmarks/make_collection.py --out /tmp/bench2000 --count 2000
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

WIKIART = Path(os.environ.get("ARTYLYZE_DATA")
               or Path(__file__).resolve().parents[2] / "shared" / "datasets") / "wikiart11"
PNG_EVERY = 40
TIFF_EVERY = 40
GRAIN_SIGMA = 3.0  # grain added at 1/2 resolution, then upscaled with the image


def plan(source: Path, count: int, seed: int, min_mp: float, max_mp: float) -> list[dict]:
    """What each benchmark file is: source painting, size, format, quality. Pure function of
    the arguments, so the collection is reproducible."""
    with open(source / "labels.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["path"])
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(rows))
    jobs = []
    for n in range(count):
        row = rows[picks[n % len(rows)]]
        megapixels = rng.uniform(min_mp, max_mp)
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))  # width / height
        width = round(math.sqrt(megapixels * 1e6 * aspect))
        height = round(megapixels * 1e6 / width)
        fmt = "png" if n % PNG_EVERY == 7 else "tif" if n % TIFF_EVERY == 27 else "jpg"
        name = f"{n:06d}_{Path(row['path']).stem[:60]}.{fmt}"
        jobs.append({"n": n, "source": str(source / "images" / row["path"]),
                     "out": str(Path(row["style"]) / name), "width": width, "height": height,
                     "quality": int(rng.integers(85, 96)), "progressive": bool(rng.random() < 0.2),
                     "seed": int(rng.integers(2**31))})
    return jobs


def make_one(job: dict, out_root: str) -> int:
    """Write one file (temp name, then rename); returns its size in bytes."""
    out = Path(out_root) / job["out"]
    if out.exists():
        return out.stat().st_size
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = job["width"], job["height"]
    with Image.open(job["source"]) as src:
        small = np.asarray(src.convert("RGB").resize((max(1, w // 2), max(1, h // 2)),
                                                     Image.Resampling.BICUBIC), np.float32)
    grain = np.random.default_rng(job["seed"]).normal(0.0, GRAIN_SIGMA, small.shape)
    small = Image.fromarray(np.clip(small + grain, 0, 255).astype(np.uint8))
    big = small.resize((w, h), Image.Resampling.BICUBIC)
    tmp = out.with_name(out.name + ".tmp")
    if job["out"].endswith(".png"):
        big.save(tmp, format="PNG", compress_level=6)
    elif job["out"].endswith(".tif"):
        big.save(tmp, format="TIFF", compression="tiff_lzw")
    else:
        big.save(tmp, format="JPEG", quality=job["quality"], progressive=job["progressive"])
    os.replace(tmp, out)
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="collection folder to fill")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-mp", type=float, default=2.0, help="smallest scan, megapixels")
    parser.add_argument("--max-mp", type=float, default=12.0, help="largest scan, megapixels")
    parser.add_argument("--source", type=Path, default=WIKIART, help="wikiart11 folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not (args.source / "labels.csv").is_file():
        parser.error(f"{args.source}: no labels.csv (pass --source, the wikiart11 folder)")

    jobs = plan(args.source, args.count, args.seed, args.min_mp, args.max_mp)
    t0, total = time.time(), 0
    with ProcessPoolExecutor(args.jobs) as pool:
        for i, size in enumerate(pool.map(make_one, jobs, [str(args.out)] * len(jobs),
                                          chunksize=4), 1):
            total += size
            if i % 100 == 0 or i == len(jobs):
                print(f"{i}/{len(jobs)} files, {total / 1e9:.2f} GB, {time.time() - t0:.0f}s",
                      flush=True)
    kinds = {ext: sum(j["out"].endswith(ext) for j in jobs) for ext in (".jpg", ".png", ".tif")}
    mp = [j["width"] * j["height"] / 1e6 for j in jobs]
    print(f"{args.out}: {len(jobs)} files ({kinds}), {min(mp):.1f}-{max(mp):.1f} MP "
          f"(mean {np.mean(mp):.1f}), {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
