"""The duplicate search, end to end: exact groups, candidates, the second check, groups.

1. Files with the same sha256 are one exact group; only one of each goes on.
2. Candidate pairs: embeddings within ``candidate`` cosine of each other (a chunked FAISS
   range search, at most ``per_item`` per work), see ``artylyze.duplicates.candidates``.
3. Each candidate is verified on its pixels (``artylyze.duplicates.verify``) and kept when
   the aligned images correlate at least ``check``. A pair whose images cannot be read is
   kept only if its embeddings agree at least ``unchecked`` (so a missing image never
   joins two merely similar works); ``check=None`` skips step 3 and uses that rule for all.
4. Kept pairs and exact groups are joined transitively; each group gets its keeper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from PIL import Image

from artylyze.duplicates.candidates import CHUNK, NPROBE, PER_ITEM, Pairs, candidate_pairs, unit
from artylyze.duplicates.groups import Item, build_groups, exact_groups, sharpness, summary
from artylyze.duplicates.source import Collection
from artylyze.duplicates.verify import THRESHOLD, Checker

#: Candidate cosine, chosen on the validation split for recall (docs/duplicates.md).
CANDIDATE = 0.40
#: Embedding cosine that alone makes a pair when its pixels cannot be checked.
UNCHECKED = 0.97
CHECK_SIDE = 512
SAMPLE_MAX = 100_000


@dataclass
class Options:
    candidate: float = CANDIDATE
    check: float | None = THRESHOLD  # None: embeddings only (no pixels read)
    unchecked: float = UNCHECKED
    per_item: int = PER_ITEM
    chunk: int = CHUNK
    nprobe: int = NPROBE
    seed: int = 0


@dataclass
class Found:
    """The groups table plus what the run saw, for the summary line."""

    table: pa.Table
    candidates: int = 0
    checked: int = 0
    unreadable: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    pairs: Pairs | None = None
    scores: np.ndarray | None = None  # check score per candidate (nan: not checked)


def image_loader(collection: Collection,
                 thumbnail: Callable[[int], Image.Image | None] | None = None
                 ) -> Callable[[int], Image.Image | None]:
    """Item -> PIL image at most CHECK_SIDE px (its file, else its packed thumbnail)."""
    from artylyze.imaging import ImageError, load_thumbnail

    def load(i: int) -> Image.Image | None:
        file = collection.file(i)
        if file.is_file():
            try:
                return Image.fromarray(load_thumbnail(file, CHECK_SIDE).pixels)
            except (ImageError, OSError):
                pass
        return thumbnail(i) if thumbnail is not None else None

    return load


def find_duplicates(collection: Collection, opts: Options | None = None,
                    load: Callable[[int], Image.Image | None] | None = None,
                    log: Callable[[str], None] | None = None) -> Found:
    """Group ``collection`` (see the module's steps); ``load`` gives an item's image."""
    opts = opts or Options()
    log = log or (lambda _m: None)
    load = load or image_loader(collection)
    n = len(collection)
    exact = exact_groups(collection.sha256)
    reps = np.flatnonzero(exact == np.arange(n))  # one item per distinct content
    vectors = collection.vectors
    log(f"{n} files, {n - len(reps)} exact copies; searching {len(reps)} embeddings "
        f"(cosine >= {opts.candidate})")
    rng = np.random.default_rng(opts.seed)
    sample = None
    if len(reps) > 50_000:
        sample = vectors[np.sort(rng.choice(reps, min(SAMPLE_MAX, len(reps)), replace=False))]

    def chunks():
        for s in range(0, len(reps), 65_536):
            yield vectors[reps[s:s + 65_536]]

    pairs = candidate_pairs(chunks, len(reps), vectors.shape[1], opts.candidate,
                            opts.per_item, opts.chunk, sample, opts.seed, opts.nprobe)
    pairs = Pairs(reps[pairs.a], reps[pairs.b], pairs.score)
    log(f"{len(pairs)} candidate pairs")
    keep, check, unreadable = _verify(pairs, opts, load)
    a, b = pairs.a[keep], pairs.b[keep]

    def similarity(i: int, j: int) -> float:
        u = unit(vectors[[i, j]])
        return float(u[0] @ u[1])

    def sharp(i: int) -> float | None:
        img = load(i)
        return None if img is None else sharpness(img)

    copies = np.flatnonzero(exact != np.arange(n))
    width, height = _sizes(collection, np.unique(np.concatenate([a, b, copies, exact[copies]])))
    items = Item(collection.paths, collection.sha256, width, height)
    table = build_groups(items, a, b, np.nan_to_num(check[keep], nan=0.0), similarity, sharp)
    found = Found(table, len(pairs), int(np.isfinite(check).sum()), unreadable, summary(table))
    found.pairs, found.scores = pairs, check  # for benchmarks: every candidate and its score
    return found


def _sizes(collection: Collection, members: np.ndarray
           ) -> tuple[list[int | None], list[int | None]]:
    """Widths and heights, filled in from the file headers of ``members`` where the source
    had none (an index keeps no sizes); the keeper rule compares them."""
    width, height = list(collection.width), list(collection.height)
    for i in members.tolist():
        if width[i] is None or height[i] is None:
            try:
                with Image.open(collection.file(i)) as img:  # the header only
                    width[i], height[i] = img.size
            except (OSError, ValueError, Image.DecompressionBombError):
                pass
    return width, height


def _verify(pairs: Pairs, opts: Options,
            load: Callable[[int], Image.Image | None]) -> tuple[np.ndarray, np.ndarray, int]:
    """(kept mask, check score or nan, pairs whose images could not be read)."""
    check = np.full(len(pairs), np.nan, np.float32)
    if opts.check is None:
        return pairs.score >= opts.unchecked, check, 0
    if len(pairs):
        try:
            import cv2  # noqa: F401
        except ImportError as e:
            from artylyze.duplicates.source import DuplicatesError

            raise DuplicatesError("the pixel check needs OpenCV (pip install "
                                  "opencv-python-headless); or pass --no-check") from e
    checker = Checker(load)
    unreadable = 0
    order = np.lexsort((pairs.b, pairs.a))
    for k in order.tolist():
        s = checker.score(int(pairs.a[k]), int(pairs.b[k]))
        if s is None:
            unreadable += 1
        else:
            check[k] = s
    keep = np.where(np.isnan(check), pairs.score >= opts.unchecked, check >= opts.check)
    return keep, check, unreadable
