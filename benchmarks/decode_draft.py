"""How much the JPEG draft (DCT-domain downscaling) saves when a big scan becomes a model input.

Makes a 4000x3000 JPEG (an example painting upscaled, quality 90) in a temp dir, then times
load_image(size=224) with the draft against the same pipeline with a full decode, per resize
policy, and prints ms/image (median of N), the speed-up and how far the two outputs differ.

    OMP_NUM_THREADS=1 python benchmarks/decode_draft.py --repeat 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from artylyze import imaging

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_scan(out_dir: Path, width: int, height: int) -> Path:
    """A large JPEG made from a real painting, so entropy and texture look like a scan."""
    source = sorted(EXAMPLES.glob("*.jpg"))[0]
    with Image.open(source) as img:
        big = img.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    path = out_dir / "scan.jpg"
    big.save(path, quality=90)
    return path


def median_ms(
    path: Path, size: int, policy: str, draft: bool, repeat: int
) -> tuple[float, np.ndarray]:
    """Median wall time of one decode, in ms, after one warm-up; and the last output."""
    out = imaging._load(path, size, policy, imaging.DEFAULT_MAX_PIXELS, draft=draft)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = imaging._load(path, size, policy, imaging.DEFAULT_MAX_PIXELS, draft=draft)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, out.pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed decodes per row")
    parser.add_argument("--size", type=int, default=224, help="model input side")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = make_scan(Path(tmp), args.width, args.height)
        print(f"{path.name}: {args.width}x{args.height}, {path.stat().st_size / 1e6:.1f} MB, "
              f"-> {args.size}x{args.size}, median of {args.repeat}")
        print(f"{'resize':<12} {'full ms':>8} {'draft ms':>9} {'speed-up':>9} {'mean |diff|':>12}")
        for policy in imaging.RESIZE_POLICIES:
            full_ms, full = median_ms(path, args.size, policy, False, args.repeat)
            draft_ms, fast = median_ms(path, args.size, policy, True, args.repeat)
            diff = np.abs(full.astype(np.int16) - fast.astype(np.int16)).mean()
            print(f"{policy:<12} {full_ms:>8.1f} {draft_ms:>9.1f} {full_ms / draft_ms:>8.1f}x "
                  f"{diff:>12.2f}")


if __name__ == "__main__":
    main()
