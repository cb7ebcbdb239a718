"""Check a FAISS file against its manifest *before* FAISS reads it.

``faiss.read_index`` trusts every size field it meets: it resizes a vector to the declared
length and only then reads, so a file whose header declares 2^29 vectors costs gigabytes
before it is refused (2^31: ``std::bad_alloc``), even when the manifest's sha256 of the file
matches (an index can come from anyone, resealed). This module walks the file the way FAISS
would, without allocating anything, for the index types ArtyLyze builds by default
(:func:`artylyze.index.faiss_index.choose_factory`): ``Flat`` and ``IVF{n},Flat|SQ8|PQ{m}``
with an inner-product flat quantizer and array inverted lists, and the shipped gallery's
``SQfp16``. It checks that:

- the dims and vector count equal the manifest's, the metric is inner product;
- every declared vector (codes, ids, list sizes, direct map, codebooks) fits in the bytes
  that are left in the file, so FAISS can never be asked to allocate more than the file;
- the parts agree (quantizer dims, list count and code size, the lists' sizes sum to the
  vector count), every row id in the lists is one of 0..n-1, and the walk ends exactly
  at the end of the file.

Other types (``--index-type HNSW32,Flat`` and the like) get the header check only (dims and
count against the manifest, at least one byte per vector in the file), and then FAISS.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from artylyze.index.errors import IndexStoreError

METRIC_INNER_PRODUCT = 0
FLAT = (b"IxFI", b"IxF2", b"IxFl")
SQ = b"IxSQ"  # the shipped gallery's SQfp16
IVF = (b"IwFl", b"IwSq", b"IwSQ", b"IwPQ")
_HASHTABLE = 2  # DirectMap::Hashtable
MAX_PQ_BITS = 16
MAX_DIM = 1 << 16


class _Bad(Exception):
    """What is wrong with the file (turned into IndexStoreError with its name)."""


class _Reader:
    """Reads fields and skips vectors of a file, never past its end."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise _Bad(f"ends early (needs {n:,} more bytes at offset {self.pos:,})")
        data = self.f.read(n)
        if len(data) != n:
            raise _Bad(f"ends early at offset {self.pos:,}")
        self.pos += n
        return data

    def unpack(self, fmt: str) -> int | float:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.left():
            raise _Bad(f"declares {what} of {n:,} bytes with only {self.left():,} left")
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def vector(self, item: int, what: str) -> int:
        """A FAISS vector (uint64 length, then the items): skipped; returns the length."""
        n = int(self.unpack("Q"))
        if n > self.left() // item:
            raise _Bad(f"declares {what} of {n:,} items with only {self.left():,} bytes left")
        self.skip(n * item, what)
        return n


def _header(r: _Reader) -> tuple[int, int, int]:
    """read_index_header: (d, ntotal, metric)."""
    d, ntotal = int(r.unpack("i")), int(r.unpack("q"))
    r.take(16)  # two dummies
    r.take(1)  # is_trained
    metric = int(r.unpack("i"))
    if metric > 1:
        r.take(4)  # metric_arg
    if not 0 < d <= MAX_DIM or ntotal < 0:
        raise _Bad(f"header declares {d} dims and {ntotal} vectors")
    return d, ntotal, metric


def _flat(r: _Reader) -> tuple[int, int]:
    d, ntotal, metric = _header(r)
    if metric != METRIC_INNER_PRODUCT:
        raise _Bad(f"flat index with metric {metric}, not inner product")
    floats = int(r.unpack("Q"))  # READXBVECTOR: the count of 4-byte words
    if floats != ntotal * d:
        raise _Bad(f"flat index declares {ntotal:,} vectors of {d} dims but {floats:,} values")
    r.skip(floats * 4, "flat codes")
    return d, ntotal


def _scalar_quantizer(r: _Reader, d: int) -> int:
    """read_ScalarQuantizer; returns its code size."""
    r.take(12)  # qtype, rangestat, rangestat_arg
    sq_d, code_size = int(r.unpack("Q")), int(r.unpack("Q"))
    r.vector(4, "scalar quantizer ranges")
    if sq_d != d or not 0 < code_size <= 4 * d:
        raise _Bad("scalar quantizer disagrees with the index")
    return code_size


def _sq(r: _Reader) -> tuple[int, int]:
    d, ntotal, metric = _header(r)
    if metric != METRIC_INNER_PRODUCT:
        raise _Bad(f"scalar-quantized index with metric {metric}, not inner product")
    code_size = _scalar_quantizer(r, d)
    if r.vector(1, "codes") != ntotal * code_size:
        raise _Bad(f"holds codes for other than {ntotal:,} vectors")
    return d, ntotal


def _direct_map(r: _Reader) -> None:
    kind = r.take(1)[0]
    r.vector(8, "direct map")
    if kind == _HASHTABLE:
        r.vector(16, "direct map table")


def _invlists(r: _Reader, nlist: int, code_size: int, ntotal: int) -> None:
    if r.take(4) != b"ilar":
        raise _Bad("inverted lists are not FAISS array lists")
    if int(r.unpack("Q")) != nlist or int(r.unpack("Q")) != code_size:
        raise _Bad("inverted lists disagree with the index on lists or code size")
    sizes = [0] * nlist
    kind = r.take(4)
    if kind == b"full":
        if int(r.unpack("Q")) != nlist:
            raise _Bad("inverted list sizes do not match the list count")
        for i in range(nlist):
            sizes[i] = int(r.unpack("Q"))
    elif kind == b"sprs":
        n = int(r.unpack("Q"))
        if n % 2 or n > r.left() // 8:
            raise _Bad("sparse list sizes are malformed")
        for _ in range(n // 2):
            i, size = int(r.unpack("Q")), int(r.unpack("Q"))
            if i >= nlist:
                raise _Bad(f"list {i} of {nlist}")
            sizes[i] = size
    else:
        raise _Bad("inverted list sizes of an unknown kind")
    if sum(sizes) != ntotal:
        raise _Bad(f"inverted lists hold {sum(sizes):,} vectors, the header says {ntotal:,}")
    if ntotal * (code_size + 8) > r.left():
        raise _Bad(f"inverted lists need {ntotal * (code_size + 8):,} bytes, "
                   f"{r.left():,} are left")
    for n in sizes:  # codes skipped; ids read one list at a time (memory: the largest list)
        if n:
            r.skip(n * code_size, "inverted list codes")
            ids = np.frombuffer(r.take(n * 8), "<i8")
            if ids.min() < 0 or ids.max() >= ntotal:
                raise _Bad(f"inverted lists hold row ids outside 0..{ntotal - 1}")


def _ivf(r: _Reader, kind: bytes) -> tuple[int, int]:
    d, ntotal, metric = _header(r)
    nlist, _nprobe = int(r.unpack("Q")), int(r.unpack("Q"))
    if metric != METRIC_INNER_PRODUCT:
        raise _Bad(f"IVF index with metric {metric}, not inner product")
    if r.take(4) not in FLAT:
        raise _Bad("IVF coarse quantizer is not a flat index")
    qd, qn = _flat(r)
    if qd != d or qn != nlist or nlist == 0:
        raise _Bad(f"coarse quantizer has {qn} centroids of {qd} dims for {nlist} lists of {d}")
    _direct_map(r)
    if kind == b"IwFl":
        code_size = 4 * d
    elif kind in (b"IwSq", b"IwSQ"):
        sq_code = _scalar_quantizer(r, d)
        code_size = int(r.unpack("Q"))
        if kind == b"IwSq":
            r.take(1)  # by_residual
        if code_size != sq_code:
            raise _Bad("scalar quantizer disagrees with the index")
    else:  # IwPQ
        r.take(1)  # by_residual
        code_size = int(r.unpack("Q"))
        pq_d, m, nbits = int(r.unpack("Q")), int(r.unpack("Q")), int(r.unpack("Q"))
        if pq_d != d or not 0 < m <= d or d % m or not 0 < nbits <= MAX_PQ_BITS or \
                code_size != (m * nbits + 7) // 8:
            raise _Bad("product quantizer disagrees with the index")
        if r.vector(4, "product quantizer centroids") != d << nbits:
            raise _Bad("product quantizer has the wrong number of centroids")
    _invlists(r, nlist, code_size, ntotal)
    return d, ntotal


def check_faiss_file(path: str | Path, dim: int, count: int) -> None:
    """Refuse (IndexStoreError) a FAISS file that does not hold ``count`` vectors of ``dim``
    dims, or whose declared sizes do not fit its bytes; see the module docstring."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            r = _Reader(f, os.fstat(f.fileno()).st_size)
            kind = r.take(4)
            if kind in FLAT:
                d, ntotal = _flat(r)
            elif kind in IVF:
                d, ntotal = _ivf(r, kind)
            elif kind == SQ:
                d, ntotal = _sq(r)
            else:
                d, ntotal, _ = _header(r)
                if ntotal > r.left():
                    raise _Bad(f"declares {ntotal:,} vectors in {r.size:,} bytes")
                r.pos = r.size  # not walked: FAISS reads the rest
            if (d, ntotal) != (dim, count):
                raise _Bad(f"holds {ntotal:,} vectors of {d} dims, the manifest says "
                           f"{count:,} of {dim}")
            if r.left():
                raise _Bad(f"has {r.left():,} bytes after the index")
    except _Bad as e:
        raise IndexStoreError(f"{path}: not a readable FAISS index: {e}") from e
    except (OSError, struct.error) as e:
        raise IndexStoreError(f"{path}: cannot read the FAISS index ({e})") from e
