"""Model bundles: a directory with ``model.onnx`` and ``manifest.json``.

Loading verifies the graph's sha256 against the manifest, so a tampered or half-copied model
is refused; :class:`Bundle` then runs it. The manifest itself is
:mod:`artylyze.model.manifest`, sessions come from :mod:`artylyze.model.runtime`; their names are
importable from here too, as they always were. This module never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.imaging import RESIZE_POLICIES
from artylyze.model.manifest import (
    ARTWORK,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    SUPPORTED_FORMATS,
    YEAR_KIND,
    BundleError,
    Manifest,
    Task,
    load_manifest,
    sha256_file,
    write_manifest,
)
from artylyze.model.runtime import (
    available_providers,
    open_session,
    resolve_providers,
    usable_cores,
)

__all__ = [
    "DEFAULT_BUNDLE_DIR", "FORMAT_VERSION", "MANIFEST_FILE", "MODEL_FILE", "RESIZE_POLICIES",
    "SUPPORTED_FORMATS", "YEAR_KIND", "Bundle", "BundleError", "Manifest", "Task",
    "available_providers", "check_graph", "knn_novelty", "load_bundle", "load_manifest",
    "resolve_providers",
    "sha256_file", "usable_cores", "write_manifest",
]

DEFAULT_BUNDLE_DIR = Path(__file__).parents[1] / "assets" / "bundle"


class Bundle:
    """A verified model bundle; the onnxruntime session is created on first use."""

    def __init__(self, path: Path, manifest: Manifest, device: str = "cpu",
                 threads: int | None = None, spin: bool = True) -> None:
        self.path = path
        self.manifest = manifest
        self.device = device
        self.threads = threads
        # onnxruntime's idle threads spin for work by default: right when inference has the
        # cores to itself, wasteful when decode threads share them (see engine.plan_threads)
        self.spin = spin
        self._session = None
        self._reference: np.ndarray | None = None

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def session(self):
        """The onnxruntime session, created lazily with the requested providers and threads."""
        if self._session is None:
            session = open_session(self.model_path, self.device, self.threads, spin=self.spin)
            check_graph(session, self.manifest, self.model_path)
            self._session = session
        return self._session

    @property
    def provider(self) -> str:
        """The execution provider actually in use (``CPUExecutionProvider``, ...)."""
        return self.session.get_providers()[0]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a uint8 ``[N, S, S, 3]`` batch; returns ``embedding`` and one array per task."""
        size = self.manifest.input_size
        if (images.dtype != np.uint8 or images.ndim != 4
                or images.shape[1:] != (size, size, 3)):
            raise BundleError(f"expected uint8 [N, {size}, {size}, 3] images, got "
                              f"{images.dtype} {list(images.shape)}")
        names = ["embedding", *self.manifest.task_names]
        outputs = dict(zip(names, self.session.run(names, {"image": images}), strict=True))
        novelty = self.manifest.calibration.get("novelty", {})
        if "file" in novelty:
            score = knn_novelty(outputs["embedding"], self.reference, int(novelty.get("k", 1)))
            domain = self.manifest.domain_task
            if novelty.get("plus_domain") and domain is not None:
                score = score + 1.0 - outputs[domain.name][:, domain.labels.index(ARTWORK)]
            outputs["novelty"] = score.astype(np.float32)
        return outputs

    @property
    def reference(self) -> np.ndarray:
        """The novelty reference set (unit embeddings of training paintings), read once."""
        if self._reference is None:
            self._reference = read_reference(self.path, self.manifest)
        return self._reference

    def close(self) -> None:
        self._session = None


def knn_novelty(embedding: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance of each unit embedding to its ``k`` nearest reference paintings:
    high for images unlike anything the model was taught. float32 ``[N]``."""
    sims = np.asarray(embedding, np.float32) @ reference.T
    k = max(1, min(k, reference.shape[0]))
    nearest = np.partition(-sims, k - 1, axis=1)[:, :k]
    return (1.0 + nearest.mean(axis=1)).astype(np.float32)


def read_reference(path: Path, manifest: Manifest, verify: bool = True) -> np.ndarray:
    """The bundle's reference file named by its calibration, sha256-checked like the graph."""
    spec = manifest.calibration.get("novelty", {})
    file = path / str(spec.get("file", ""))
    if not spec.get("file") or not file.is_file():
        raise BundleError(f"{file}: the novelty reference set is missing from the bundle")
    if verify and sha256_file(file) != spec.get("sha256"):
        raise BundleError(f"{file}: sha256 does not match the manifest's; the reference set "
                          "was modified or is incomplete")
    with np.load(file, allow_pickle=False) as data:
        ref = np.asarray(data["reference"], np.float32)
    if ref.ndim != 2 or ref.shape[1] != manifest.embedding_dim:
        raise BundleError(f"{file}: reference set of shape {list(ref.shape)}, expected "
                          f"[N, {manifest.embedding_dim}]")
    return ref


def check_graph(session: Any, manifest: Manifest, where: Path) -> None:
    """The manifest must describe the graph: input size, output names and widths."""
    size = manifest.input_size
    inputs = [(i.name, list(i.shape)[1:]) for i in session.get_inputs()]
    if inputs != [("image", [size, size, 3])]:
        raise BundleError(f"{where}: the graph takes {inputs}, the manifest says image "
                          f"[N, {size}, {size}, 3]")
    widths = {o.name: (o.shape[-1] if o.shape else None) for o in session.get_outputs()}
    want = {"embedding": manifest.embedding_dim,
            **{t.name: len(t.labels) for t in manifest.tasks}}
    wrong = {k: (widths.get(k), v) for k, v in want.items() if widths.get(k) != v}
    if wrong:
        raise BundleError(f"{where}: graph outputs and manifest disagree (name: graph width, "
                          f"manifest width) {wrong}")


def load_bundle(bundle_dir: str | os.PathLike[str] | None = None, device: str = "cpu",
                threads: int | None = None, verify: bool = True, spin: bool = True) -> Bundle:
    """Load and verify a bundle (the shipped default when ``bundle_dir`` is None)."""
    path = Path(bundle_dir) if bundle_dir is not None else DEFAULT_BUNDLE_DIR
    if not path.is_dir():
        hint = " (the default bundle is not installed)" if bundle_dir is None else ""
        raise BundleError(f"{path}: model bundle directory not found{hint}")
    manifest = load_manifest(path)
    model = path / MODEL_FILE
    if not model.is_file():
        raise BundleError(f"{model}: model.onnx is missing from the bundle")
    if verify:
        actual = sha256_file(model)
        if actual != manifest.model_sha256:
            raise BundleError(
                f"{model}: sha256 {actual[:12]}… does not match the manifest's "
                f"{manifest.model_sha256[:12]}…; the model was modified or is incomplete"
            )
    bundle = Bundle(path, manifest, device=device, threads=threads, spin=spin)
    if "file" in manifest.calibration.get("novelty", {}):
        bundle._reference = read_reference(path, manifest, verify)  # refused now, not mid-run
    return bundle
