"""Why styles7's two sources score apart: style accuracy per source on the test split, overall
and on the styles both sources hold, and how much JPEG quality alone costs (``wam``'s test
images of those styles re-compressed at several qualities), for one or more bundles.

    python benchmarks/source_gap.py artylyze/assets/bundle runs/bundle-v3

Prints a table per bundle; nothing is written.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from artylyze.imaging import load_image
from artylyze.model.bundle import load_bundle

DATA = Path(os.environ.get("ARTYLYZE_DATA", Path(__file__).resolve().parents[2] / "shared" /
                           "datasets")) / "styles7"
QUALITIES = (75, 50, 30, 15)


def recompressed(path: Path, quality: int, size: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB").resize((size, size), Image.BICUBIC))


def accuracy(bundle, pixels: list[np.ndarray], truth: pd.Series) -> float:
    labels = bundle.manifest.labels("style")
    picked = np.concatenate([bundle.run(np.stack(pixels[i:i + 64]))["style"].argmax(1)
                             for i in range(0, len(pixels), 64)])
    return float(np.mean([labels[j] == t for j, t in zip(picked, truth, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="+")
    args = ap.parse_args()
    df = pd.read_csv(DATA / "labels.csv")
    df = df[df["split"] == "test"].reset_index(drop=True)
    both = sorted(s for s, g in df.groupby("style") if g["source"].nunique() == 2)
    sizes = {src: np.mean([(DATA / "images" / p).stat().st_size for p in g["path"]]) / 1024
             for src, g in df[df["style"].isin(both)].groupby("source")}
    print(f"styles both sources hold: {', '.join(both)}; mean file size "
          + ", ".join(f"{s} {kb:.1f} KB" for s, kb in sizes.items()))
    for bundle_dir in args.bundles:
        bundle = load_bundle(bundle_dir)
        m = bundle.manifest
        print(f"\n{bundle_dir} ({m.model_id})")
        print(f"{'images':<44}{'n':>6}{'style acc':>11}")
        for src, g in df.groupby("source"):
            for name, rows in ((f"{src}, all its styles", g),
                               (f"{src}, the shared styles", g[g["style"].isin(both)])):
                px = [load_image(DATA / "images" / p, m.input_size, m.resize).pixels
                      for p in rows["path"]]
                print(f"{name:<44}{len(rows):>6}{accuracy(bundle, px, rows['style']):>11.3f}")
        wam = df[(df["source"] == "wam") & df["style"].isin(both)]
        for q in QUALITIES:
            px = [recompressed(DATA / "images" / p, q, m.input_size) for p in wam["path"]]
            name = f"wam, shared styles, re-saved at JPEG q{q}"
            print(f"{name:<44}{len(wam):>6}{accuracy(bundle, px, wam['style']):>11.3f}")


if __name__ == "__main__":
    main()
