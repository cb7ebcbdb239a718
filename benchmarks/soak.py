"""Soak: interrupt ``artylyze tag`` and ``artylyze index build`` at random moments, many times,
and check that every output is always complete, readable and equal to an uninterrupted run.

On a collection of real paintings (copies of wikiart11 files), with the shipped bundle:

1. reference runs, uninterrupted: ``tag`` into ``ref.parquet``, ``index build`` into ``ref-idx``;
2. ``tag`` soak: runs into one output (a file, then a dataset folder in turn; ``--full`` once
   an output exists, so every run has work to do), each stopped after a random delay by
   ``kill -9`` or SIGTERM, until the interruptions are spent. After every run: a SIGTERM run
   exited 143 (or 0 if it had finished) and left no lock and no temp file; an output, if
   there is one, reads and equals the reference; a run that finished left no work dir;
3. ``index build`` soak, the same way: an index, if there is one, loads with every file's
   sha256 verified and holds exactly the reference's files (builds are deterministic);
   SIGTERM left no lock and no temp folder;
4. one last uninterrupted run of each, compared again.

Delays are drawn from the length of an uninterrupted run (anywhere in it, or near its end,
where the merge and the swap happen; one run in ten is let finish). Prints a table, writes
JSON, exits 1 on any failed check.

    nice python benchmarks/soak.py --files 300 --interruptions 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
WIKIART = ROOT.parent / "shared" / "datasets" / "wikiart11" / "images"
RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
CLI = [sys.executable, "-c", "from artylyze.cli.main import main; main()"]
COMPARED = ("status", "error", "sha256", "size", "width", "height", "model")


@dataclass
class Tally:
    """What one soak target went through."""

    runs: int = 0
    sigkill: int = 0
    sigterm: int = 0
    finished_before_signal: int = 0
    sigterm_in_startup: int = 0  # before the CLI set its handler: the default action, -15
    completed: int = 0
    checks: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.checks += 1
        if not ok:
            self.failures.append(what)
            print(f"  FAILED: {what}", flush=True)

    def stopped(self, what: str, code: int, sig: int | None, before: set[str],
                after: set[str]) -> None:
        """Count one run and check how it ended: a finished run left nothing behind, a
        SIGTERM'd one exited 143 and added nothing (it may have cleaned a kill -9's)."""
        self.runs += 1
        self.sigkill += sig == signal.SIGKILL
        self.sigterm += sig == signal.SIGTERM
        self.finished_before_signal += sig is None
        if code == 0:
            self.completed += 1
            self.check(not after, f"{what}: finished but left {sorted(after)}")
        elif sig == signal.SIGTERM and code == 143:
            self.check(after <= before, f"{what}: left {sorted(after - before)}")
        elif sig == signal.SIGTERM and code == -signal.SIGTERM:
            self.sigterm_in_startup += 1
        else:
            self.check(sig == signal.SIGKILL and code == -signal.SIGKILL,
                       f"{what}: exit {code}")


def copy_collection(dest: Path, count: int, seed: int) -> None:
    files = sorted(WIKIART.rglob("*.jpg"))
    if len(files) < count:
        sys.exit(f"need {count} images under {WIKIART}, found {len(files)}")
    for src in random.Random(seed).sample(files, count):
        target = dest / src.relative_to(WIKIART)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)


def run_cli(args: list[str], delay: float | None = None,
            sig: int = signal.SIGKILL) -> tuple[int, bool]:
    """(exit status, whether the signal was sent) of one CLI run, stopped after ``delay``
    (None: run to the end)."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sent = False
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        sent = True
    err = proc.communicate()[1].decode(errors="replace")
    if proc.returncode not in (0, 143, -signal.SIGKILL):
        print(f"  exit {proc.returncode}: {err.strip()[-400:]}", flush=True)
    return proc.returncode, sent


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    code, _ = run_cli(args)
    if code != 0:
        sys.exit(f"reference run failed: {' '.join(args)}")
    return time.perf_counter() - t0


def draw_delay(rng: random.Random, length: float) -> float | None:
    """None (let it finish) one time in ten; else anywhere in a run, or near its end."""
    roll = rng.random()
    if roll < 0.1:
        return None
    return rng.uniform(0.0, length) if roll < 0.55 else rng.uniform(0.6 * length, length)


# ---------------------------------------------------------------- equality

def rows_of(path: Path) -> dict[str, dict]:
    table = pq.read_table(path)
    return {r["path"]: r for r in table.to_pylist()}


def same_rows(out: Path, ref: dict[str, dict]) -> str | None:
    """None when ``out`` holds exactly the reference's rows (embeddings within 1e-5)."""
    try:
        got = rows_of(out)
    except Exception as e:  # noqa: BLE001 - any unreadable output is a failure to report
        return f"{out} unreadable: {type(e).__name__}: {e}"
    if got.keys() != ref.keys():
        return f"{out}: {len(got)} paths, the reference has {len(ref)}"
    for path, want in ref.items():
        row = got[path]
        if any(row[c] != want[c] for c in COMPARED) or row["style"] != want["style"]:
            return f"{out}: row {path} differs"
        if want["embedding"] is not None and not np.allclose(
                row["embedding"], want["embedding"], atol=1e-5):
            return f"{out}: embedding of {path} differs"
    return None


def leftovers(folder: Path) -> set[str]:
    """Locks, temp files and temp folders under ``folder``."""
    return {p.name for p in folder.rglob("*")
            if p.name.endswith((".tmp", ".lock", ".new", ".old")) or ".build-" in p.name
            or ".stale-" in p.name}


def interrupted(args: list[str], rng: random.Random, length: float, folder: Path
                ) -> tuple[int, int | None, set[str], set[str]]:
    """One run stopped after a random delay: (exit, signal sent or None, leftovers before,
    leftovers after)."""
    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    before = leftovers(folder)
    code, sent = run_cli(args, draw_delay(rng, length), sig)
    return code, sig if sent else None, before, leftovers(folder)


# ---------------------------------------------------------------- the two soaks

def tag_args(col: Path, out: Path) -> list[str]:
    dataset = "dataset" in out.name
    args = ["tag", str(col), "--out", f"{out}/" if dataset else str(out), "--batch-size", "8",
            "--commit-every", "16", "--quiet"]
    return [*args, "--full"] if out.exists() else args  # every run has work to do


def soak_tag(work: Path, col: Path, ref: dict[str, dict], budget: int, length: float,
             rng: random.Random) -> Tally:
    tally = Tally()
    folder = work / "tag"
    folder.mkdir()
    outs = [folder / "meta.parquet", folder / "meta-dataset"]
    while tally.sigkill + tally.sigterm < budget:
        out = outs[tally.completed % 2]
        code, sig, before, after = interrupted(tag_args(col, out), rng, length, folder)
        what = f"tag run {tally.runs + 1} ({signal.Signals(sig).name if sig else 'no signal'})"
        tally.stopped(what, code, sig, before, after)
        for candidate in outs:
            if candidate.exists():  # an output, once there, is always whole and right
                problem = same_rows(candidate, ref)
                tally.check(problem is None, f"{what}: {problem}")
        print(f"  {what}: exit {code}", flush=True)
    for out in outs:  # one last uninterrupted run of each
        code, _ = run_cli(tag_args(col, out))
        problem = same_rows(out, ref)
        tally.check(code == 0 and problem is None, f"final tag run: exit {code}, {problem}")
    tally.check(not leftovers(folder), f"final tag runs left {sorted(leftovers(folder))}")
    return tally


def index_files(idx: Path) -> dict | str:
    """The verified index's files (name -> size and sha256), or what is wrong with it."""
    from artylyze.errors import ArtyLyzeError
    from artylyze.index.store import load_index_dir

    try:
        return load_index_dir(idx, verify=True).manifest.files
    except (ArtyLyzeError, OSError, ValueError) as e:
        return f"{idx} does not load: {e}"


def soak_index(work: Path, meta: Path, ref: dict, budget: int, length: float,
               rng: random.Random) -> Tally:
    tally = Tally()
    folder = work / "index"
    folder.mkdir()
    idx = folder / "idx"
    args = ["index", "build", str(meta), "--out", str(idx)]
    while tally.sigkill + tally.sigterm < budget:
        code, sig, before, after = interrupted(args, rng, length, folder)
        what = f"index run {tally.runs + 1} ({signal.Signals(sig).name if sig else 'no signal'})"
        tally.stopped(what, code, sig, before, after)
        if idx.exists():  # an index, once there, always loads, verified, and is the same
            files = index_files(idx)
            tally.check(files == ref, f"{what}: {files if isinstance(files, str) else 'differs'}")
        else:
            tally.check(not tally.completed, f"{what}: the index that existed is gone")
        print(f"  {what}: exit {code}", flush=True)
    code, _ = run_cli(args)
    tally.check(code == 0 and index_files(idx) == ref and not leftovers(folder),
                f"final index build: exit {code}")
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=300, help="paintings copied from wikiart11")
    ap.add_argument("--interruptions", type=int, default=100, help="signals sent, in all")
    ap.add_argument("--index-share", type=float, default=0.4,
                    help="share of the interruptions that go to index builds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="working folder (default: a temp folder)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="artylyze-soak-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        col = work / "col"
        copy_collection(col, args.files, args.seed)
        meta = work / "ref.parquet"
        tag_s = timed(["tag", str(col), "--out", str(meta), "--batch-size", "8", "--quiet"])
        idx_s = timed(["index", "build", str(meta), "--out", str(work / "ref-idx")])
        print(f"reference runs: tag {tag_s:.1f}s, index build {idx_s:.1f}s", flush=True)
        ref_rows = rows_of(meta)
        ref_files = index_files(work / "ref-idx")
        n_index = round(args.interruptions * args.index_share)
        tallies = {"tag": soak_tag(work, col, ref_rows, args.interruptions - n_index, tag_s, rng),
                   "index build": soak_index(work, meta, ref_files, n_index, idx_s, rng)}
    seconds = time.perf_counter() - t_start
    print(f"\nsoak: {args.files} paintings, {args.interruptions} interruptions, "
          f"{seconds / 60:.1f} min")
    print(f"{'command':<12} {'runs':>5} {'kill -9':>8} {'SIGTERM':>8} {'(in start-up)':>14} "
          f"{'no signal':>10} {'completed':>10} {'checks':>7} {'failed':>7}")
    for name, t in tallies.items():
        print(f"{name:<12} {t.runs:>5} {t.sigkill:>8} {t.sigterm:>8} "
              f"{t.sigterm_in_startup:>14} {t.finished_before_signal:>10} {t.completed:>10} "
              f"{t.checks:>7} {len(t.failures):>7}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "files": args.files, "interruptions": args.interruptions, "seed": args.seed,
        "seconds": round(seconds, 1), "cpus": os.cpu_count(),
        "reference_seconds": {"tag": round(tag_s, 2), "index build": round(idx_s, 2)},
        "targets": {k: asdict(v) for k, v in tallies.items()}}, indent=2) + "\n")
    if any(t.failures for t in tallies.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
