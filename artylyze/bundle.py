"""Model bundles: a directory with ``model.onnx`` and ``manifest.json``.

The manifest is the single source of truth that travels with the weights: input size and
resize policy, the ordered labels of every task, the embedding size and the sha256 of the
graph. Loading verifies the hash, so a tampered or half-copied model is refused.
This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.atomic import atomic_write_text
from artylyze.errors import ArtyLyzeError
from artylyze.imaging import RESIZE_POLICIES

FORMAT_VERSION = 2  # 2: the model id covers the whole manifest, not only model.onnx
SUPPORTED_FORMATS = (1, 2)
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
DEFAULT_BUNDLE_DIR = Path(__file__).parent / "assets" / "bundle"


class BundleError(ArtyLyzeError):
    """A bundle is missing, malformed, tampered with or of an unknown format."""


YEAR_KIND = "year"


@dataclass(frozen=True)
class Task:
    """One prediction head: its name and ordered labels. A ``year`` head's labels are the
    first years of consecutive ``step``-year bins; its outputs become a date and a period."""

    name: str
    labels: tuple[str, ...]
    kind: str = "class"
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        extra = {"kind": self.kind, "step": self.step} if self.kind != "class" else {}
        return {"name": self.name, "labels": list(self.labels), **extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        kind = str(d.get("kind", "class"))
        if kind not in ("class", YEAR_KIND):
            raise BundleError(f"task {d.get('name')!r}: unknown kind {kind!r}")
        task = cls(str(d["name"]), tuple(str(x) for x in d["labels"]), kind,
                   int(d["step"]) if kind == YEAR_KIND else None)
        if kind == YEAR_KIND:
            starts = [int(x) for x in task.labels]
            if any(b - a != task.step for a, b in zip(starts, starts[1:], strict=False)):
                raise BundleError(f"task {task.name!r}: year bins are not {task.step} apart")
        return task


@dataclass(frozen=True)
class Manifest:
    """Everything needed to run and describe a bundle, as stored in ``manifest.json``."""

    name: str
    backbone: str
    input_size: int
    resize: str
    tasks: tuple[Task, ...]
    embedding_dim: int
    model_sha256: str
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """Short, stable id that indexes and Parquet rows refer to. It hashes the graph's
        sha256 with everything else the manifest says (labels, calibration, ...), so one id
        names exactly one manifest: an edited label list is another model, or a refused one.
        Format 1 bundles hashed ``model.onnx`` alone."""
        if self.format_version < 2:
            return f"{self.name}@{self.model_sha256[:12]}"
        body = {k: v for k, v in self.to_dict(with_id=False).items()}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False)
                                .encode()).hexdigest()
        return f"{self.name}@{digest[:12]}"

    @property
    def task_names(self) -> tuple[str, ...]:
        """The graph's heads, in output order."""
        return tuple(t.name for t in self.tasks)

    @property
    def year_task(self) -> Task | None:
        return next((t for t in self.tasks if t.kind == YEAR_KIND), None)

    @property
    def label_tasks(self) -> tuple[str, ...]:
        """What rows carry as ``<task>``/``_score``/``_top``: the class heads, plus ``period``
        derived from a year head."""
        names = tuple(t.name for t in self.tasks if t.kind == "class")
        return names + ("period",) if self.year_task and "period" not in names else names

    @property
    def calibration(self) -> dict[str, Any]:
        """What was fitted on validation data after training (empty for older bundles)."""
        return dict(self.extra.get("calibration") or {})

    def labels(self, task: str) -> tuple[str, ...]:
        for t in self.tasks:
            if t.name == task:
                return t.labels
        raise BundleError(f"bundle {self.name!r} has no task {task!r}; it has {self.task_names}")

    def to_dict(self, with_id: bool = True) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            **({"model_id": self.model_id} if with_id else {}),
            "backbone": self.backbone,
            "input": {"size": self.input_size, "resize": self.resize, "dtype": "uint8",
                      "layout": "NHWC", "channels": "RGB"},
            "tasks": [t.to_dict() for t in self.tasks],
            "embedding_dim": self.embedding_dim,
            "model_sha256": self.model_sha256,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        version = d.get("format_version")
        if type(version) is not int or version not in SUPPORTED_FORMATS:
            raise BundleError(f"bundle format version {version!r} is not supported (expected "
                              f"one of {SUPPORTED_FORMATS})")
        try:
            known = {"format_version", "name", "model_id", "backbone", "input", "tasks",
                     "embedding_dim", "model_sha256"}
            manifest = cls(
                name=str(d["name"]),
                backbone=str(d["backbone"]),
                input_size=int(d["input"]["size"]),
                resize=str(d["input"]["resize"]),
                tasks=tuple(Task.from_dict(t) for t in d["tasks"]),
                embedding_dim=int(d["embedding_dim"]),
                model_sha256=str(d["model_sha256"]),
                format_version=version,
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"manifest is malformed: missing or bad field {e}") from e
        if manifest.resize not in RESIZE_POLICIES:
            raise BundleError(f"unknown resize policy {manifest.resize!r}; "
                              f"expected one of {RESIZE_POLICIES}")
        if version >= 2 and d.get("model_id") != manifest.model_id:
            raise BundleError(f"manifest says model {d.get('model_id')!r} but its contents hash "
                              f"to {manifest.model_id!r}: it was edited after export; "
                              "re-export the bundle")
        return manifest


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large files use little memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename)."""
    path = Path(bundle_dir) / MANIFEST_FILE
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return path


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(device: str) -> list[str]:
    """Map ``cpu`` / ``cuda`` / ``auto`` to onnxruntime execution providers."""
    device = device.lower()
    have = available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in have:
            raise BundleError("--device cuda asked, but onnxruntime has no CUDA provider "
                              f"(available: {have}); install artylyze[gpu] on a GPU machine")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in have:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    raise BundleError(f"unknown device {device!r}; expected cpu, cuda or auto")


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads or usable_cores()
            opts.inter_op_num_threads = 1
            if not self.spin:
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(
                str(self.model_path), sess_options=opts,
                providers=resolve_providers(self.device),
            )
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
        outputs = self.session.run(names, {"image": images})
        return dict(zip(names, outputs, strict=True))

    def close(self) -> None:
        self._session = None


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


def load_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{path}: no manifest.json; is {bundle_dir} a model bundle?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: manifest is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path}: manifest must be a JSON object")
    return Manifest.from_dict(data)


def load_bundle(bundle_dir: str | os.PathLike[str] | None = None, device: str = "cpu",
                threads: int | None = None, verify: bool = True) -> Bundle:
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
    return Bundle(path, manifest, device=device, threads=threads)
