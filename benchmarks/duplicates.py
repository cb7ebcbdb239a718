"""Duplicate pairs found by ArtyLyze and by imagededup's hashes, on one labelled set.

The set: ``--originals`` wikiart11 works of one split (``test`` by default; ``val`` is where
the thresholds were chosen), drawn in runs of works by one artist in one style, so every
work sits beside hard negatives (other works by its artist, same style and period). Each
work gets ``--copies`` archive copies (artylyze.duplicates.synthetic: crop, rescale, JPEG,
turn or tilt, exposure and colour cast, frame or scan border, a perspective photo), every
copy re-encoded as JPEG at quality 30-95. Works whose file name appears twice in wikiart11
(one painting filed under two styles) are left out, as their copies would count as false.

Truth: two files are a duplicate pair when they come from one work. Each method is run in a
subprocess of its own, so its time and peak memory (max RSS) are its own; ArtyLyze's time
is the grouping (its embeddings come from ``tag``; the embedding time is printed apart).

    nice -n 10 python benchmarks/duplicates.py                 # test split, 300 x 4
    nice -n 10 python benchmarks/duplicates.py --split val --sweep   # choose thresholds
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "wikiart11"
HASHES = ("PHash", "DHash", "WHash")


def choose_works(labels: Path, split: str, count: int, seed: int) -> list[dict[str, str]]:
    rows = list(csv.DictReader(labels.open()))
    names = collections.Counter(Path(r["path"]).name for r in rows)
    by = collections.defaultdict(list)
    for r in rows:
        if r["split"] == split and r["artist"] and names[Path(r["path"]).name] == 1:
            by[(r["artist"], r["style"])].append(r)
    runs = [sorted(v, key=lambda r: r["path"]) for v in by.values() if len(v) >= 2]
    random.Random(seed).shuffle(runs)
    chosen: list[dict[str, str]] = []
    for run in runs:
        chosen += run[:6]
        if len(chosen) >= count:
            break
    return chosen[:count]


def make_set(out: Path, split: str, count: int, copies: int, seed: int) -> dict:
    from PIL import Image

    from artylyze.duplicates.synthetic import TRANSFORMS, archive_copy

    out.mkdir(parents=True, exist_ok=True)
    works = choose_works(DATA / "labels.csv", split, count, seed)
    rng = random.Random(seed)
    kinds = sorted(TRANSFORMS)
    files, work, kind = [], [], []
    for w, row in enumerate(works):
        img = Image.open(DATA / "images" / row["path"]).convert("RGB")
        name = f"{w:04d}_0.jpg"
        img.save(out / name, quality=95)
        files.append(name)
        work.append(w)
        kind.append("original")
        for c in range(copies):
            copy, how = archive_copy(img, rng, kinds[(w * copies + c) % len(kinds)], extra=0)
            name = f"{w:04d}_{c + 1}.jpg"
            copy.save(out / name, quality=rng.randint(30, 95))
            files.append(name)
            work.append(w)
            kind.append(how)
    meta = {"files": files, "work": work, "kind": kind, "split": split,
            "works": [r["path"] for r in works], "artists": len({r["artist"] for r in works})}
    (out / "set.json").write_text(json.dumps(meta))
    return meta


def embed(out: Path, files: list[str]) -> float:
    from artylyze.imaging import load_image
    from artylyze.model.bundle import load_bundle

    t = time.perf_counter()
    bundle = load_bundle(threads=2)
    man = bundle.manifest
    vectors = []
    for s in range(0, len(files), 32):
        px = np.stack([load_image(out / f, man.input_size, man.resize).pixels
                       for f in files[s:s + 32]])
        vectors.append(bundle.run(px)["embedding"])
    np.save(out / "embeddings.npy", np.concatenate(vectors).astype(np.float32))
    return time.perf_counter() - t


def truth_pairs(work: list[int]) -> set[tuple[int, int]]:
    by = collections.defaultdict(list)
    for i, w in enumerate(work):
        by[w].append(i)
    return {(a, b) for m in by.values() for i, a in enumerate(m) for b in m[i + 1:]}


def group_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    by = collections.defaultdict(list)
    for i, g in enumerate(labels.tolist()):
        by[g].append(i)
    return {(a, b) for m in by.values() for i, a in enumerate(m) for b in m[i + 1:]}


def score(pred: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    tp = len(pred & truth)
    return (tp / len(pred) if pred else 1.0), tp / len(truth)


# -- one method, in its own process -------------------------------------------------------

def run_artylyze(out: Path, meta: dict, args) -> dict:
    from PIL import Image

    from artylyze.duplicates.find import Options, find_duplicates
    from artylyze.duplicates.groups import join
    from artylyze.duplicates.source import Collection

    files = meta["files"]
    vectors = np.load(out / "embeddings.npy")
    coll = Collection(out, str(out), files, [None] * len(files), [None] * len(files),
                      [None] * len(files), vectors)
    sweep = args.sweep
    opts = Options(candidate=args.candidate if not sweep else min(args.candidate, 0.25),
                   check=-1.0 if sweep else args.check, per_item=args.per_item)

    def load(i: int):
        return Image.open(out / files[i]).convert("RGB")

    found = find_duplicates(coll, opts, load)
    name_of = {p: i for i, p in enumerate(files)}
    groups = found.table.column("group").to_pylist()
    labels = np.arange(len(files))
    for g, p in zip(groups, found.table.column("path").to_pylist(), strict=True):
        labels[name_of[p]] = len(files) + g
    result = {"pred": sorted(group_pairs(labels)), "candidates": found.candidates}
    if sweep:
        pairs, scores = found.pairs, found.scores
        truth = truth_pairs(meta["work"])
        rows = []
        for cand in (0.3, 0.4, 0.5):
            for chk in (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
                keep = (pairs.score >= cand) & (scores >= chk)
                lab = join(len(files), pairs.a[keep], pairs.b[keep])
                p, r = score(group_pairs(lab), truth)
                rows.append({"candidate": cand, "check": chk, "precision": round(p, 4),
                             "recall": round(r, 4), "pairs": int((pairs.score >= cand).sum())})
        result["sweep"] = rows
    return result


def run_hash(out: Path, meta: dict, name: str, threshold: int | None) -> dict:
    import imagededup.methods as methods

    hasher = getattr(methods, name)(verbose=False)
    enc = hasher.encode_images(image_dir=str(out), num_enc_workers=0)
    index = {f: i for i, f in enumerate(meta["files"])}
    result: dict = {}
    if threshold is None:  # every pair's Hamming distance, for the sweep
        bits = np.array([[int(c, 16) >> k & 1 for c in enc[f] for k in (3, 2, 1, 0)]
                         for f in meta["files"]], np.int16)
        dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
        truth = truth_pairs(meta["work"])
        sweep = []
        for t in range(0, 33, 2):
            ii, jj = np.nonzero(np.triu(dist <= t, 1))
            p, r = score(set(zip(ii.tolist(), jj.tolist(), strict=True)), truth)
            sweep.append({"threshold": t, "precision": round(p, 4), "recall": round(r, 4)})
        result["sweep"] = sweep
        threshold = 10
    dup = hasher.find_duplicates(encoding_map=enc, max_distance_threshold=threshold)
    pred = {tuple(sorted((index[a], index[b]))) for a, others in dup.items() for b in others
            if a in index and b in index}
    result.update(pred=sorted(pred), threshold=threshold)
    return result


def child(args) -> None:
    out = Path(args.images)
    meta = json.loads((out / "set.json").read_text())
    t = time.perf_counter()
    if args.method == "ArtyLyze":
        result = run_artylyze(out, meta, args)
    else:
        result = run_hash(out, meta, args.method, args.threshold)
    result["seconds"] = time.perf_counter() - t
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def method(name: str, images: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--method", name, "--images", str(images), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", default=None, help="where the set is written (kept: reused)")
    ap.add_argument("--sweep", action="store_true", help="print threshold sweeps (val split)")
    ap.add_argument("--candidate", type=float, default=None)
    ap.add_argument("--check", type=float, default=None)
    ap.add_argument("--per-item", type=int, default=None, help="candidates kept per work")
    ap.add_argument("--hash-threshold", type=int, default=None,
                    help="imagededup max_distance_threshold (default: its own, 10)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--method", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threshold", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from artylyze.duplicates.find import CANDIDATE
    from artylyze.duplicates.verify import THRESHOLD

    args.candidate = CANDIDATE if args.candidate is None else args.candidate
    args.check = THRESHOLD if args.check is None else args.check
    from artylyze.duplicates.candidates import PER_ITEM

    args.per_item = PER_ITEM if args.per_item is None else args.per_item
    if args.method:
        return child(args)
    images = Path(args.images or f"/tmp/artylyze-dupes-{args.split}-{args.originals}x"
                  f"{args.copies}-{args.seed}")
    if (images / "set.json").is_file() and (images / "embeddings.npy").is_file():
        meta = json.loads((images / "set.json").read_text())
        embed_s = None
    else:
        meta = make_set(images, args.split, args.originals, args.copies, args.seed)
        embed_s = embed(images, meta["files"])
    truth = truth_pairs(meta["work"])
    print(f"set: {len(meta['works'])} {args.split} works by {meta['artists']} artists "
          f"(runs of one artist and style) x {args.copies} copies = {len(meta['files'])} "
          f"files, {len(truth)} duplicate pairs; {images}")
    if embed_s is not None:
        print(f"embedding (the tag pass, not counted below): {embed_s:.1f} s")
    extra = ["--candidate", str(args.candidate), "--check", str(args.check),
             "--per-item", str(args.per_item)]
    rows = {"ArtyLyze": method("ArtyLyze", images, extra + (["--sweep"] if args.sweep else []))}
    for name in HASHES:
        hx = [] if args.hash_threshold is None else ["--threshold", str(args.hash_threshold)]
        rows[name] = method(name, images, hx if not args.sweep else [])
    print(f"\n{'method':<10} {'precision':>9} {'recall':>7} {'pairs':>6} {'time s':>7} "
          f"{'peak MB':>8}  setting")
    figures = {}
    for name, r in rows.items():
        p, rec = score({tuple(x) for x in r["pred"]}, truth)
        setting = (f"candidate cos >= {args.candidate} (<= {args.per_item} a work), "
                   f"check >= {args.check}"
                   if name == "ArtyLyze" else f"max_distance_threshold={r['threshold']}")
        print(f"{name:<10} {p:9.4f} {rec:7.4f} {len(r['pred']):6d} {r['seconds']:7.1f} "
              f"{r['peak_mb']:8.0f}  {setting}")
        figures[name] = {"precision": round(p, 4), "recall": round(rec, 4),
                         "seconds": round(r["seconds"], 1), "peak_mb": round(r["peak_mb"]),
                         "setting": setting}
    by_kind = collections.defaultdict(lambda: [0, 0])
    pred = {tuple(x) for x in rows["ArtyLyze"]["pred"]}
    for a, b in truth:
        if meta["kind"][a] == "original":
            k = meta["kind"][b]
            by_kind[k][0] += (a, b) in pred
            by_kind[k][1] += 1
    print("\nArtyLyze recall of original-copy pairs by transform: " + ", ".join(
        f"{k} {v[0] / v[1]:.2f}" for k, v in sorted(by_kind.items())))
    if args.sweep:
        print("\nArtyLyze pairs that failed the check:", "; ".join(
            f"{meta['kind'][a]}|{meta['kind'][b]}" for a, b in sorted(truth - pred)[:40]))
        for name, r in rows.items():
            print(f"\nsweep {name}:")
            for s in r.get("sweep", []):
                print("  " + json.dumps(s))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
