"""Group 1,000,000 embeddings (synthetic, with planted copies) and measure time and peak memory.

The vectors: ``--clusters`` centres in 256 dims, every work near one of them (cosine ~0.6,
as works of one style are), and ``--groups`` planted groups of 2-4 copies of a work (cosine
>= 0.95 to it, as rescans are). No pixels exist, so the run is embeddings-only
(``--no-check``'s rule: a pair needs cosine >= 0.97... here the candidate cut itself,
``--cosine``); what is measured is the part that grows with the collection: the chunked
range search, the pairs and the grouping. Recall is that of the planted pairs.

    nice -n 10 python benchmarks/duplicates_scale.py --n 1000000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def planted(n: int, dim: int, clusters: int, groups: int, seed: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors [n, dim] and the planted group of each (-1: none), made in blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        block = centres[rng.integers(0, clusters, m)] + \
            rng.normal(scale=1.3 / np.sqrt(dim), size=(m, dim)).astype(np.float32)
        x[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    label = np.full(n, -1, np.int64)
    sizes = rng.integers(2, 5, groups)
    slots = rng.permutation(n)[:int(sizes.sum())]
    pos = 0
    for g, size in enumerate(sizes.tolist()):
        members = slots[pos:pos + size]
        pos += size
        base = x[members[0]]
        noise = rng.normal(scale=0.2 / np.sqrt(dim), size=(size - 1, dim)).astype(np.float32)
        copies = base + noise
        x[members[1:]] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
        label[members] = g
    return x, label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=20_000)
    ap.add_argument("--cosine", type=float, default=0.9)
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from artylyze.duplicates.find import Options, find_duplicates
    from artylyze.duplicates.source import Collection

    t0 = time.perf_counter()
    x, label = planted(args.n, args.dim, args.clusters, args.groups, args.seed)
    made = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = args.n
    coll = Collection(None, None, [f"w{i}" for i in range(n)], [None] * n, [None] * n,
                      [None] * n, x)
    opts = Options(candidate=args.cosine, check=None, unchecked=args.cosine)
    if args.nprobe:
        opts.nprobe = args.nprobe
    t = time.perf_counter()
    found = find_duplicates(coll, opts, load=lambda i: None,
                            log=lambda m: print(f"  [{time.perf_counter() - t:6.1f} s] {m}"))
    took = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    groups = found.table.column("group").to_numpy()
    index = np.array([int(p[1:]) for p in found.table.column("path").to_pylist()], np.int64)
    pred = np.full(n, -1, np.int64)
    pred[index] = groups

    def pairs(lab: np.ndarray) -> set[tuple[int, int]]:
        out = set()
        order = np.argsort(lab, kind="stable")
        lab_sorted = lab[order]
        cut = np.flatnonzero(np.diff(lab_sorted)) + 1
        for members in np.split(order, cut):
            if len(members) > 1 and lab[members[0]] >= 0:
                m = sorted(members.tolist())
                out.update((a, b) for i, a in enumerate(m) for b in m[i + 1:])
        return out

    truth, found_pairs = pairs(label), pairs(pred)
    tp = len(truth & found_pairs)
    print(f"{n} embeddings of {args.dim} dims, {args.groups} planted groups "
          f"({len(truth)} pairs); made in {made:.0f} s, data {rss_data:.0f} MB")
    print(f"grouped in {took:.0f} s ({took / 60:.1f} min), peak RSS {peak:.0f} MB; "
          f"{found.candidates} candidate pairs; planted pairs: precision "
          f"{tp / max(1, len(found_pairs)):.4f}, recall {tp / len(truth):.4f}")


if __name__ == "__main__":
    main()
