"""Helpers for the ``artylyze serve`` tests: a service over the shipped gallery, a small
calibrated (Model v2 style) collection with its index, uploads, and a real server process
on a free loopback port that is always stopped."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from test_index_support import write_images
from tiny_bundle import make_tiny_bundle

from artylyze.index.build import BuildOptions, build
from artylyze.model.bundle import load_bundle, load_manifest, write_manifest
from artylyze.serve.service import Service
from artylyze.tagging.engine import TagOptions, tag_collection

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
EXAMPLE = EXAMPLES / "marc-chagall_red-jew-1915.jpg"  # also in the shipped gallery
ERROR_KEYS = {"status", "kind", "message"}


def with_options(service: Service, **changes: object) -> Service:
    """Another service over the same index and catalog, with other limits (no reload)."""
    return Service(service.gallery, service.catalog,
                   dataclasses.replace(service.options, **changes))


def calibrate(bundle_dir: Path, confident: dict[str, float], seed: int = 0) -> Path:
    """Give a tiny bundle what calibration adds (confident thresholds, novelty centres)."""
    manifest = load_manifest(bundle_dir)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, manifest.embedding_dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    calibration = {"confident": confident,
                   "novelty": {"method": "centroid", "centres": centres.tolist()}}
    write_manifest(bundle_dir, dataclasses.replace(
        manifest, extra={**manifest.extra, "calibration": calibration}))
    return bundle_dir


def v2_collection(tmp: Path, n: int = 24, calibrated: bool = True) -> dict[str, Path]:
    """Images, a (calibrated) tiny bundle, the meta.parquet ``tag`` writes, and its index."""
    root = tmp / "images"
    write_images(root, n=n)
    bundle_dir = make_tiny_bundle(tmp / "bundle")
    if calibrated:
        calibrate(bundle_dir, {"style": 0.5, "genre": 0.5})
    meta = tmp / "meta.parquet"
    tag_collection(root, meta, load_bundle(bundle_dir), TagOptions(workers=1, threads=1))
    build(meta, tmp / "idx", BuildOptions(gmm_k=3, kmeans_k=3, bundle_dir=bundle_dir))
    return {"root": root, "bundle": bundle_dir, "meta": meta, "idx": tmp / "idx"}


_REAL: dict[str, dict[str, Path]] = {}


def real_collection(tmp_path_factory, wikiart: Path, per_style: int = 10) -> dict[str, Path]:
    """Real paintings (``per_style`` of each wikiart11 style, and the examples) tagged by the
    shipped bundle into meta.parquet, and its index with packed thumbnails: what a museum
    would serve. Built once per test session, whatever model is shipped at the time."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _REAL:
        tmp = tmp_path_factory.mktemp("real")
        root = tmp / "collection"
        for folder in sorted(p for p in (wikiart / "images").iterdir() if p.is_dir()):
            (root / folder.name).mkdir(parents=True)
            for f in sorted(folder.glob("*.jpg"))[:per_style]:
                (root / folder.name / f.name).write_bytes(f.read_bytes())
        (root / "examples").mkdir()
        for f in sorted(EXAMPLES.glob("*.jpg")):
            (root / "examples" / f.name).write_bytes(f.read_bytes())
        meta = tmp / "meta.parquet"
        tag_collection(root, meta, load_bundle(), TagOptions())
        build(meta, tmp / "idx", BuildOptions(gmm_k=4, kmeans_k=4, thumbnails=64))
        _REAL[key] = {"root": root, "meta": meta, "idx": tmp / "idx"}
    return _REAL[key]


def image_file(path: Path) -> dict[str, tuple[str, bytes, str]]:
    """``files=`` for a multipart upload of ``path`` in the ``image`` field."""
    return {"image": (path.name, path.read_bytes(), "image/jpeg")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    """Poll ``/healthz`` until it answers (bounded); fail with the server's output if not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no /healthz answer within {seconds} s: {log.read_text()}")


@contextmanager
def serve_process(log: Path, *args: str) -> Iterator[str]:
    """``artylyze serve`` on a free loopback port, its stderr in ``log``; yields its URL and
    stops it with SIGTERM (then SIGKILL if it lingers)."""
    port = free_port()
    cmd = [sys.executable, "-c", "from artylyze.cli.main import main; main()", "serve",
           "--port", str(port), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=err, stderr=err, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
