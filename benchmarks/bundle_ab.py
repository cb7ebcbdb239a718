"""What one bundle costs against another on the same decoded images: graph plus
:func:`~artylyze.model.predict.predictions` (novelty from a reference set included), runs
alternated so that drift of a shared machine hits both alike. Decoding is left out: it is the
same for any bundle of the same input size, and on a busy machine its noise hides a few
percent of model cost (``tag_throughput.py`` measures the whole command).

    python benchmarks/bundle_ab.py runs/v4-bundle artylyze/assets/bundle --images 64 --reps 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from artylyze.imaging import load_image
from artylyze.model.bundle import load_bundle
from artylyze.model.predict import predictions

WIKIART = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "wikiart11"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    paths = pd.read_csv(WIKIART / "labels.csv")["path"].head(a.images)
    bundles = {name: load_bundle(name, threads=a.threads) for name in (a.before, a.after)}
    size = bundles[a.after].manifest.input_size
    px = np.stack([load_image(WIKIART / "images" / p, size, "stretch").pixels for p in paths])
    for b in bundles.values():  # warm-up: sessions, reference sets
        predictions(b.run(px[:8]), b.manifest, 3)
    times: dict[str, list[float]] = {name: [] for name in bundles}
    for _ in range(a.reps):
        for name, b in bundles.items():
            t0 = time.perf_counter()
            predictions(b.run(px), b.manifest, 3)
            times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        print(f"{name}: {len(px) / min(t):.1f} images/s best, "
              f"{len(px) / float(np.median(t)):.1f} median ({a.reps} runs of {len(px)})")
    ratio = min(times[a.before]) / min(times[a.after])
    print(f"after / before speed: {ratio:.3f} (best), "
          f"{np.median(times[a.before]) / np.median(times[a.after]):.3f} (median)")


if __name__ == "__main__":
    main()
