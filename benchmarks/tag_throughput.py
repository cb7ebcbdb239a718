"""Tagging throughput, side by side on the same files: ArtyLyze, the naive pipeline, the limits.

One run of this script times, on one collection (``make_collection.py``), each in its own
child process so that each gets its own peak RSS:

* ``decode only``: ArtyLyze's read + sha256 + decode to the model input (the engine's own
  ``decode_file``) in a thread per core: the decode limit ``D`` images/s.
* ``inference only``: onnxruntime on pre-decoded arrays, all cores: the inference limit ``I``.
* ``bound``: ``cores / (decode + inference core-seconds per image)`` = ``1 / (1/D + 1/I)``:
  what a perfect pipeline that keeps every core busy with useful work would reach.
* ``artylyze tag``: the real CLI with default settings, wall time of the whole command
  (start-up, bundle check and writing the Parquet output included).
* ``artylyze tag (re-run)``: the same command again on the unchanged collection.
* ``artylyze tag int8`` (``--int8 BUNDLE``) and ``artylyze tag --engine ray`` (``--ray``).
* ``previous bundle`` (``--previous-bundle DIR``): the same command with the bundle it
  replaces; ``previous code`` (``--previous-code PYTHON``): the same command run by another
  checkout's interpreter (e.g. a venv of the commit before a refactor). Both run in between
  two runs of the current one, and the table shows their mean, so that drift of the machine
  during the run shows up as the spread of the current pair rather than as a difference.
* ``naive``: what a user would write first: torchvision ``ImageFolder`` (full decode) +
  ``transforms.Resize`` + ``DataLoader(num_workers=cores)`` + the eager torch model (same
  EfficientNet-Lite0 multi-task network, fp32, ``torch.no_grad``); nothing written.

Every file is read once before the first stage, so all stages see the same (cached) files.
Prints a table (images/s, ratio to naive, fraction of the bound, peak RSS) and writes JSON.

    python benchmarks/make_collection.py --out /tmp/bench2000 --count 2000
    python benchmarks/tag_throughput.py /tmp/bench2000 --int8 runs/bundle-int8 --ray
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tag_throughput.json"
LIMITS = ("decode only", "inference only")  # the bound's parts: no "fraction of the bound"
# -I: not the working directory first on sys.path, so each interpreter runs its own checkout
CLI = [sys.executable, "-I", "-c", "from artylyze.cli.main import main; main()"]


# ---- stages that run inside a child process (``--stage NAME``) ------------------------------
def image_files(root: Path) -> list[Path]:
    from artylyze.tagging.walk import walk_collection

    return [Path(f.abspath) for f in walk_collection(root).files]


def stage_decode(root: Path, bundle_dir: str | None) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from artylyze.imaging import DEFAULT_MAX_PIXELS
    from artylyze.model.bundle import load_bundle, usable_cores
    from artylyze.tagging.engine import DecodeJob, decode_file

    manifest = load_bundle(bundle_dir).manifest
    files = image_files(root)
    size, resize = manifest.input_size, manifest.resize
    t0 = time.perf_counter()
    with ThreadPoolExecutor(usable_cores()) as pool:
        errors = sum(r.error is not None for r in pool.map(
            lambda p: decode_file(DecodeJob(str(p)), size, resize, DEFAULT_MAX_PIXELS), files))
    seconds = time.perf_counter() - t0
    return {"images": len(files), "seconds": seconds, "errors": errors}


def stage_inference(root: Path, bundle_dir: str | None, batch_size: int = 32,
                    distinct: int = 256) -> dict:
    import numpy as np

    from artylyze.imaging import load_image
    from artylyze.model.bundle import load_bundle, usable_cores

    bundle = load_bundle(bundle_dir, threads=usable_cores())
    m = bundle.manifest
    files = image_files(root)
    pixels = np.stack([load_image(p, m.input_size, m.resize).pixels for p in files[:distinct]])
    bundle.run(pixels[:batch_size])  # warm-up: session creation, first-run allocations
    t0 = time.perf_counter()
    for i in range(0, len(files), batch_size):
        n = min(batch_size, len(files) - i)
        start = i % (len(pixels) - batch_size + 1)
        bundle.run(pixels[start:start + n])
    return {"images": len(files), "seconds": time.perf_counter() - t0}


def stage_naive(root: Path, bundle_dir: str | None, batch_size: int = 32) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from artylyze.model.bundle import load_bundle, usable_cores
    from artylyze.train.models import build_model, head_layout

    m = load_bundle(bundle_dir).manifest
    linear, deep = head_layout([t.to_dict() for t in m.tasks])
    model = build_model(m.backbone, linear, m.embedding_dim, pretrained=False,
                        feature_heads=deep).eval()
    tf = transforms.Compose([transforms.Resize((m.input_size, m.input_size)),
                             transforms.PILToTensor()])
    loader = DataLoader(datasets.ImageFolder(str(root), transform=tf), batch_size=batch_size,
                        num_workers=usable_cores())
    t0, n = time.perf_counter(), 0
    with torch.no_grad():
        for x, _ in loader:
            out = model(x.float())
            n += len(x)
    assert out["embedding"].shape[1] == m.embedding_dim
    return {"images": n, "seconds": time.perf_counter() - t0}


STAGES = {"decode": stage_decode, "inference": stage_inference, "naive": stage_naive}


# ---- the parent: run each stage as a child, time it, read its peak RSS ----------------------
def run_child(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the child and its children, stdout)."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True,
                                env=env or os.environ.copy())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = proc.stderr.read()
        out.seek(0)
        stdout = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed ({proc.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stdout


def measure(name: str, cmd: list[str], images: int | None = None) -> dict:
    wall, rss, stdout = run_child(cmd)
    row = {"name": name, "wall_seconds": round(wall, 2), "peak_rss_mb": round(rss)}
    if images is None:  # a ``--stage`` child: it timed its own work and printed JSON
        inner = json.loads(stdout.strip().splitlines()[-1])
        row.update(images=inner["images"], seconds=round(inner["seconds"], 2))
    else:
        row.update(images=images, seconds=round(wall, 2))
    row["images_per_s"] = round(row["images"] / row["seconds"], 2)
    print(f"  {name}: {row['images']} images in {row['seconds']:.1f}s "
          f"({row['images_per_s']:.1f}/s), peak RSS {row['peak_rss_mb']} MB", flush=True)
    return row


def compare(name: str, tag_cmd: list[str], n: int, tmp: Path, python: str | None,
            model_dir: str | None) -> list[dict]:
    """The current tag, the other one, the current again (fresh outputs each time)."""
    def command(out: str, other: bool) -> list[str]:
        cmd = [*tag_cmd]
        cmd[cmd.index("--out") + 1] = str(tmp / out)
        if other and python:
            cmd[0] = python
        if other and model_dir:
            cmd = [*cmd[:cmd.index("--quiet") + 1], "--model", model_dir]
        return cmd

    slug = name.replace(" ", "-")
    first = measure("artylyze tag (a)", command(f"{slug}-a.parquet", False), n)
    other = measure(f"artylyze tag, {name}", command(f"{slug}.parquet", True), n)
    second = measure("artylyze tag (b)", command(f"{slug}-b.parquet", False), n)
    mean = (first["images_per_s"] + second["images_per_s"]) / 2
    print(f"  {name}: {other['images_per_s']:.1f}/s vs {mean:.1f}/s now "
          f"({other['images_per_s'] / mean:.1%}; now's two runs "
          f"{first['images_per_s']:.1f} and {second['images_per_s']:.1f})", flush=True)
    return [first, other, second]


def table(rows: list[dict], naive: float, bound: float) -> str:
    head = f"{'pipeline':<28}{'images/s':>10}{'x naive':>9}{'of bound':>10}{'peak RSS':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = r["images_per_s"]
        of_bound = "" if r["name"] in LIMITS else f"{rate / bound:.0%}"
        lines.append(f"{r['name']:<28}{rate:>10.1f}{rate / naive:>8.2f}x"
                     f"{of_bound:>10}{r['peak_rss_mb']:>7} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection", type=Path)
    parser.add_argument("--bundle", help="bundle dir (default: the shipped one)")
    parser.add_argument("--int8", help="also tag with this quantized bundle")
    parser.add_argument("--ray", action="store_true", help="also tag with --engine ray")
    parser.add_argument("--previous-bundle", help="also tag with this bundle (same code)")
    parser.add_argument("--previous-code", help="also tag with this python (another checkout)")
    parser.add_argument("--skip-naive", action="store_true", help="(for quick checks only)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.collection, args.bundle)))
        return

    from artylyze.model.bundle import usable_cores

    files = image_files(args.collection)
    n, cores = len(files), usable_cores()
    for p in files:  # warm the page cache: no stage, first or last, pays for the disk
        p.read_bytes()
    print(f"{args.collection}: {n} files, {sum(p.stat().st_size for p in files) / 1e9:.2f} GB;"
          f" {cores} cores ({platform.processor() or platform.machine()})", flush=True)
    me = [sys.executable, str(Path(__file__).resolve()), str(args.collection)]
    bundle = ["--bundle", args.bundle] if args.bundle else []
    model = ["--model", args.bundle] if args.bundle else []
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        decode = measure("decode only", me + bundle + ["--stage", "decode"])
        infer = measure("inference only", me + bundle + ["--stage", "inference"])
        out = str(Path(tmp) / "meta.parquet")
        tag_cmd = CLI + ["tag", str(args.collection), "--out", out, "--quiet"] + model
        rows.append(measure("artylyze tag", tag_cmd, n))
        rerun = measure("artylyze tag (re-run)", tag_cmd, n)
        for name, python, model_dir in (("previous bundle", None, args.previous_bundle),
                                         ("previous code", args.previous_code, None)):
            if python or model_dir:
                rows += compare(name, tag_cmd, n, Path(tmp), python, model_dir)
        if args.int8:
            rows.append(measure("artylyze tag int8", CLI + [
                "tag", str(args.collection), "--out", str(Path(tmp) / "int8.parquet"),
                "--quiet", "--model", args.int8], n))
        if args.ray:
            rows.append(measure("artylyze tag --engine ray", CLI + [
                "tag", str(args.collection), "--out", str(Path(tmp) / "ray") + "/", "--quiet",
                "--engine", "ray"] + model, n))
        naive = None if args.skip_naive else measure("naive torchvision",
                                                      me + bundle + ["--stage", "naive"])
    bound = 1 / (1 / decode["images_per_s"] + 1 / infer["images_per_s"])
    naive_rate = naive["images_per_s"] if naive else float("nan")
    shown = rows + ([naive] if naive else []) + [decode, infer]
    print()
    print(table(shown, naive_rate, bound))
    print(f"{'combined bound':<28}{bound:>10.1f}   = 1 / (1/decode + 1/inference)")
    print(f"re-run on the unchanged collection: {rerun['seconds']:.2f}s = "
          f"{rerun['seconds'] / rows[0]['seconds']:.1%} of the first run")
    result = {"collection": str(args.collection), "files": n, "cores": cores,
              "machine": platform.processor() or platform.machine(),
              "bound_images_per_s": round(bound, 2), "rows": shown, "rerun": rerun,
              "naive_images_per_s": naive_rate if naive else None}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
