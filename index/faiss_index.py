"""FAISS inner-product indexes: pick a type by size, build, tune for recall, search, load, save.

Exact search (``Flat``) up to ``EXACT_MAX`` vectors: it is fast enough there and never
wrong. Above that, IVF with ~4*sqrt(n) lists, its codes the most precise that fit
``CODES_BUDGET`` (1 GiB): ``Flat`` (4 bytes a dim) while they fit, then ``SQ8`` (one byte a
dim, near-exact: recall@10 0.975 on the benchmark's 256-dim vectors), then ``PQ{m}`` with
the most sub-quantizers that fit (PQ128: 0.82, PQ64: 0.52 on the same data, whose
neighbours are close in cosine; real embeddings are better structured). The number of
lists probed is raised until recall@10 on a held-out sample of queries reaches the target,
measured against exact search at build time, so the recall printed is a measurement, not
a promise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import faiss
import numpy as np

from artylyze.atomic import atomic_write
from artylyze.index.errors import IndexBuildError, IndexStoreError
from artylyze.index.recall import exact_neighbours, recall_per_query, without_self

EXACT_MAX = 50_000
#: Bytes the default index's codes may take (the ids add 8 bytes per vector).
CODES_BUDGET = 1 << 30
RECALL_TARGET = 0.95
RECALL_K = 10
RECALL_QUERIES = 500
IVF_TRAIN_PER_LIST = 40
TRAIN_MIN = 20_000
IVF_TRAIN_ITERATIONS = 10
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512, 1024)
MAX_SEARCH_PARAM = 1 << 16  # efSearch and the like: far above any useful value


@dataclass
class BuiltIndex:
    """A trained, filled index with the search parameters chosen for it."""

    index: faiss.Index
    factory: str
    params: dict[str, int] = field(default_factory=dict)
    recall: float = 1.0  # recall@10 against exact search, measured (1.0 for Flat)
    recall_queries: int = 0  # queries the recall was measured on (0: exact, not measured)

    @property
    def exact(self) -> bool:
        return self.factory == "Flat"

    def describe(self) -> str:
        if self.exact:
            return f"Flat (exact inner product, {self.index.ntotal} vectors): recall 1.0"
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{self.factory}{f' ({params})' if params else ''}: recall@{RECALL_K} "
                f"{self.recall:.3f} vs exact search, measured on {self.recall_queries} sampled "
                f"queries (each left out of its own results)")


def choose_factory(n: int, dim: int) -> str:
    """The one rule for the default index type (see the module docstring): exact up to
    ``EXACT_MAX``; beyond, IVF with ~4*sqrt(n) lists and the most precise codes whose n
    codes fit ``CODES_BUDGET``: Flat, SQ8, else PQ with m bytes, m the largest divisor of
    ``dim`` that fits (at most dim/2: PQ on 1-dim pieces is SQ8)."""
    if n <= EXACT_MAX:
        return "Flat"
    nlist = int(4 * math.sqrt(n))
    per_vector = CODES_BUDGET // n
    if per_vector >= 4 * dim:
        return f"IVF{nlist},Flat"
    if per_vector >= dim:
        return f"IVF{nlist},SQ8"
    m = max(k for k in range(1, max(1, min(per_vector, dim // 2)) + 1) if dim % k == 0)
    return f"IVF{nlist},PQ{m}"


def make_index(factory: str, dim: int) -> faiss.Index:
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else str(e)
        raise IndexBuildError(f"FAISS cannot make index type {factory!r} for {dim} dims: "
                              f"{first}") from e


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None


def search_knob(index: faiss.Index, factory: str) -> tuple[str, list[int]] | None:
    """The search-time knob of this index and the values to try, smallest (fastest) first."""
    ivf = ivf_of(index)
    if ivf is not None:
        steps = [2 ** i for i in range(int(math.log2(max(ivf.nlist, 1))) + 1)]
        return "nprobe", sorted({*steps, int(ivf.nlist)})
    if "HNSW" in factory:
        return "efSearch", list(EF_SEARCH_STEPS)
    return None


def set_params(index: faiss.Index, params: dict[str, int]) -> None:
    """Apply stored search parameters (``nprobe``, ``efSearch``) to a loaded index."""
    space = faiss.ParameterSpace()
    for name, value in params.items():
        ivf = ivf_of(index)
        most = int(ivf.nlist) if name == "nprobe" and ivf is not None else MAX_SEARCH_PARAM
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise IndexStoreError(f"search parameter {name}={value!r} is not a count from 1 "
                                  f"to {most}")
        try:
            space.set_index_parameter(index, name, int(value))
        except (RuntimeError, TypeError, ValueError, OverflowError) as e:
            raise IndexStoreError(f"index does not take search parameter {name}={value}") from e


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) by inner product; ids are -1 where fewer than k were found."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != index.d:
        raise IndexStoreError(f"queries have shape {list(q.shape)}, the index expects "
                              f"{index.d} dims")
    k = max(1, min(int(k), int(index.ntotal)))
    return index.search(q, k)


def train_index(index: faiss.Index, factory: str, sample: np.ndarray, seed: int,
                log: Callable[[str], None]) -> None:
    """Train an empty ``index`` on ``sample``, seeded, with a clear error when it cannot be."""
    ivf = ivf_of(index)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        ivf.cp.niter, ivf.cp.seed = IVF_TRAIN_ITERATIONS, seed
        # Polysemous codes speed up Hamming pre-filtering, which ArtyLyze never asks for,
        # and training them takes minutes for PQ64 (seconds even for PQ8).
        if isinstance(ivf, faiss.IndexIVFPQ):
            ivf.do_polysemous_training = False
        if int(ivf.nlist) > len(sample):
            raise IndexBuildError(f"{factory}: {ivf.nlist} lists for only {len(sample)} "
                                  "training vectors; use fewer lists")
    log(f"training {factory} on {len(sample)} vectors")
    try:
        index.train(np.ascontiguousarray(sample, np.float32))
    except RuntimeError as e:
        raise IndexBuildError(f"FAISS could not train {factory} on {len(sample)} vectors: "
                              f"{str(e).strip().splitlines()[-1]}") from e


def train_rows(factory: str) -> int:
    """Rows an empty index of type ``factory`` is trained on: ``IVF_TRAIN_PER_LIST`` per
    list, at least ``TRAIN_MIN`` (PQ codebooks learn 256 centroids per sub-quantizer)."""
    m = re.search(r"IVF(\d+)", factory)
    return max(TRAIN_MIN, IVF_TRAIN_PER_LIST * int(m.group(1)) if m else 0)


def trained_index(factory: str, sample: np.ndarray, rng: np.random.Generator, seed: int,
                  log: Callable[[str], None]) -> faiss.Index:
    """An empty index of type ``factory`` trained on (a random part of) ``sample``."""
    index = make_index(factory, sample.shape[1])
    if not index.is_trained:
        n, size = len(sample), train_rows(factory)
        part = sample if size >= n else sample[np.sort(rng.choice(n, size, replace=False))]
        train_index(index, factory, part, seed, log)
    return index


def build_index(vectors: np.ndarray, factory: str | None = None,
                recall_target: float = RECALL_TARGET, n_queries: int = RECALL_QUERIES,
                seed: int = 0, log: Callable[[str], None] | None = None) -> BuiltIndex:
    """Build the index for unit ``vectors`` and tune its search knob for ``recall_target``.

    The knob (``nprobe``, ``efSearch``) is raised until the recall's lower confidence bound
    reaches the target, so the promise holds on new queries too. Recall is measured with
    rows of the data as queries, each left out of both result lists, so it reflects new
    images near the collection rather than exact repeats.
    """
    log = log or (lambda _msg: None)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    factory = (factory or choose_factory(n, dim)).strip()
    rng = np.random.default_rng(seed)
    index = trained_index(factory, x, rng, seed, log)
    log(f"adding {n} vectors to {factory}")
    index.add(x)
    if factory == "Flat":
        return BuiltIndex(index=index, factory=factory)
    m = min(n_queries, n)
    qids = np.sort(rng.choice(n, m, replace=False))
    k = min(RECALL_K, n - 1) if n > 1 else 1
    truth = without_self(exact_neighbours(x, x[qids], k + 1), qids, k)
    return tune(index, factory, x[qids], qids, truth, recall_target, log=log)


def tune(index: faiss.Index, factory: str, queries: np.ndarray, qids: np.ndarray,
         truth: np.ndarray, recall_target: float = RECALL_TARGET, plateau: float | None = None,
         log: Callable[[str], None] | None = None) -> BuiltIndex:
    """Raise the search knob (``nprobe``, ``efSearch``) until recall@k's lower bound (mean
    - 2 standard errors over ``queries``, rows ``qids`` of the index, each left out of its
    own results) reaches ``recall_target``, so the promise holds on new queries too. With
    ``plateau``, also stop once a step gains less than that (PQ codes cap recall below
    exact) and keep the cheaper setting."""
    log = log or (lambda _msg: None)
    built = BuiltIndex(index=index, factory=factory, recall_queries=len(qids))
    if factory == "Flat" or not len(qids):
        built.recall_queries = 0
        return built
    k = truth.shape[1]
    knob = search_knob(index, factory)
    for value in knob[1] if knob else [None]:
        if knob:
            set_params(index, {knob[0]: value})
        per = recall_per_query(without_self(search(index, queries, k + 1)[1], qids, k), truth)
        recall, low = float(per.mean()), float(per.mean() - 2 * per.std() / np.sqrt(len(per)))
        if plateau is not None and knob and built.params and recall - built.recall < plateau:
            set_params(index, built.params)  # no gain: keep the cheaper setting
            break
        built.recall = recall
        if knob:
            built.params = {knob[0]: int(value)}
            log(f"{knob[0]}={value}: recall@{k} {recall:.3f} (lower bound {low:.3f})")
        if low >= recall_target:  # the target holds with ~97.5% confidence, not just on average
            break
    return built


def reconstruct(index: faiss.Index, ids: list[int]) -> np.ndarray:
    """Stored vectors of rows ``ids`` (approximate for compressed indexes)."""
    try:
        ivf = ivf_of(index)
        if ivf is not None and not ivf.direct_map.type:
            ivf.make_direct_map()
        return np.stack([index.reconstruct(int(i)) for i in ids]).astype(np.float32)
    except RuntimeError as e:
        raise IndexStoreError(f"this index type cannot return its stored vectors: {e}") from e


def save_index(index: faiss.Index, path: str | Path) -> None:
    """Write atomically (temp file, then rename), through a Python file object: faiss's own
    file writer only prints a failed close, so a full disk would leave a truncated index
    that looks written; this way it raises OSError."""

    def write(f: IO[bytes]) -> None:
        writer = faiss.PyCallbackIOWriter(f.write)
        faiss.write_index(index, writer)
        del writer  # flushes its buffer into f

    atomic_write(path, write)


def load_index(path: str | Path) -> faiss.Index:
    """Read a FAISS file, turning FAISS's C++ errors into one clear message."""
    path = Path(path)
    if not path.is_file():
        raise IndexStoreError(f"{path}: FAISS index file is missing")
    try:
        return faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as e:
        raise IndexStoreError(f"{path}: not a readable FAISS index (corrupt or truncated?)") from e
