"""What ``explain`` costs per image, and how well each method keeps to the painting.

For the shipped bundle, times ``Explainer.explain`` (decode + masked forward passes + maps, the
onnxruntime session already warm) on the example paintings, per method; the whole command
``artylyze explain IMG`` from a cold start; and Grad-CAM's part on a randomly initialised
EfficientNet-Lite0 (the shipped architecture: the cost does not depend on the weights), when
torch and timm are installed. Each method's maps are compared with RISE at 128 masks (another
seed), the answer more masks converge to. With wikiart11 at hand it also measures the test's
localisation:
each style's first test painting pasted on a flat grey canvas (a quarter of the area), and the
share of the predicted style's saliency that falls on the painting.

    python benchmarks/explain_cost.py [--repeat 3] [--json benchmarks/results/explain_cost.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from artylyze.explain.core import open_explainer
from artylyze.explain.saliency import SaliencyOptions, mass_inside

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))
WIKIART = ROOT.parent / "shared" / "datasets" / "wikiart11"
SETTINGS = [("rise", 16), ("rise", 32), ("rise", 64), ("occlusion", 0)]
REFERENCE = SaliencyOptions(masks=128, seed=99)  # what the maps should converge to


def reference_maps() -> list[np.ndarray]:
    """RISE maps of the examples with many masks (another seed): the converged answer."""
    ex = open_explainer(options=REFERENCE)
    maps = [ex.explain(image, ["style"]).maps["rise"][0] for image in EXAMPLES]
    ex.close()
    return maps


def per_image(method: str, masks: int, repeat: int, reference: list[np.ndarray]) -> dict:
    """Median and p90 seconds per image over every example, after a warm-up image; and how
    well the maps agree with the reference (Pearson r, mean over the examples)."""
    options = SaliencyOptions(method=method, masks=masks or SaliencyOptions.masks)
    ex = open_explainer(options=options)
    ex.explain(EXAMPLES[0], ["style"])  # session start-up is not per image
    times, cpu, agree = [], [], []
    for _ in range(repeat):
        for image, ref in zip(EXAMPLES, reference, strict=True):
            start, start_cpu = time.perf_counter(), time.process_time()
            found = ex.explain(image, ["style"]).maps[method][0]
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)  # all threads of the process
            agree.append(float(np.corrcoef(found.ravel(), ref.ravel())[0, 1]))
    ex.close()
    times.sort()
    return {"method": method, "masks": masks or None, "passes": options.passes,
            "median_s": statistics.median(times), "p90_s": times[int(0.9 * (len(times) - 1))],
            "cpu_s": statistics.median(cpu), "images": len(times),
            "agreement_r": float(np.mean(agree))}


def localisation(method: str, masks: int) -> dict | None:
    """Mean and least share of saliency on a painting pasted on a grey canvas."""
    if not (WIKIART / "labels.csv").is_file():
        return None
    firsts: dict[str, Path] = {}
    with open(WIKIART / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "test":
                firsts.setdefault(row["style"], WIKIART / "images" / row["path"])
    ex = open_explainer(options=SaliencyOptions(method=method,
                                                masks=masks or SaliencyOptions.masks))
    region = np.zeros((224, 224), bool)
    region[56:168, 56:168] = True
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        for style, painting in sorted(firsts.items()):
            canvas = Image.new("RGB", (448, 448), (128, 128, 128))
            canvas.paste(Image.open(painting).convert("RGB").resize((224, 224)), (112, 112))
            canvas.save(Path(tmp) / f"{style}.png")
            found = ex.explain(Path(tmp) / f"{style}.png", ["style"])
            shares.append(mass_inside(found.maps[method][0], region))
    ex.close()
    return {"mean": float(np.mean(shares)), "min": float(np.min(shares)), "n": len(shares)}


def cold_command(repeat: int) -> float:
    """Median wall seconds of ``artylyze explain IMG`` as a fresh process (imports, bundle
    check, session, one image, figure and page)."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "from artylyze.cli.main import main; main()",
                            "explain", str(EXAMPLES[0]), "--out", tmp], check=True,
                           capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def gradcam_cost(repeat: int) -> float | None:
    """Median seconds of Grad-CAM for one label on a random-init EfficientNet-Lite0."""
    try:
        import torch

        from artylyze.train.gradcam import gradcam
        from artylyze.train.models import build_model
    except ImportError:
        return None
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", {"style": 11}, pretrained=False).eval()
    pixels = np.asarray(Image.open(EXAMPLES[0]).convert("RGB").resize((224, 224)))
    gradcam(model, pixels, [("style", 0)])
    times = []
    for _ in range(repeat * 4):
        start = time.perf_counter()
        gradcam(model, pixels, [("style", 0)])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the examples")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    reference = reference_maps()
    rows = []
    for method, masks in SETTINGS:
        row = per_image(method, masks, args.repeat, reference)
        row["on_painting"] = localisation(method, masks)
        rows.append(row)
    cold = cold_command(args.repeat)
    cam = gradcam_cost(args.repeat)
    print(f"{len(EXAMPLES)} example paintings x {args.repeat}, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'method':<22} {'passes':>6} {'wall s/image p50':>16} {'p90':>6} "
          f"{'CPU s/image':>11} {'r vs 128 masks':>14} {'on painting mean / min':>23}")
    for r in rows:
        name = f"{r['method']}" + (f" ({r['masks']} masks)" if r["masks"] else " (7x7)")
        loc = r["on_painting"]
        where = f"{loc['mean']:.3f} / {loc['min']:.3f}" if loc else "-"
        print(f"{name:<22} {r['passes']:>6} {r['median_s']:>16.3f} {r['p90_s']:>6.3f} "
              f"{r['cpu_s']:>11.3f} {r['agreement_r']:>14.2f} {where:>23}")
    print(f"artylyze explain IMG, cold process, default (rise, {SaliencyOptions.masks} masks, "
          f"one figure and the page): {cold:.2f} s")
    if cam is not None:
        print(f"Grad-CAM, EfficientNet-Lite0 (torch, one label): {cam:.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"load_start": load, "rows": rows, "cold_command_s": cold,
                                         "gradcam_s": cam}, indent=2) + "\n")


if __name__ == "__main__":
    main()
