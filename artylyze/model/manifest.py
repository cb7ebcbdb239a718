"""The bundle manifest (``manifest.json``): what a bundle's graph takes and returns.

The single source of truth that travels with the weights: input size and resize policy,
the ordered labels of every task, the embedding size and the sha256 of the graph. Kept
apart from :mod:`artylyze.model.bundle` (which runs the graph) because exporting, indexing and
reading Parquet metadata need the manifest without onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artylyze.atomic import atomic_write_text
from artylyze.errors import ArtyLyzeError
from artylyze.imaging import RESIZE_POLICIES
from artylyze.untrusted import UntrustedFileError, read_json

FORMAT_VERSION = 2  # 2: the model id covers the whole manifest, not only model.onnx
SUPPORTED_FORMATS = (1, 2)
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


class BundleError(ArtyLyzeError):
    """A bundle is missing, malformed, tampered with or of an unknown format."""


YEAR_KIND = "year"
MAX_MANIFEST_BYTES = 16 * 1024**2  # a bundle manifest is a few KB to a few hundred
#: The head that says what an image is (``artwork`` or what instead); a gate, not a label:
#: rows carry ``domain``/``domain_score`` and no ``domain_top`` or ``domain_confident``.
DOMAIN_TASK = "domain"
ARTWORK = "artwork"
#: The artist head's answer for works by artists outside its classes: never "confident",
#: since it names no one.
OTHER_ARTIST = "another artist"


@dataclass(frozen=True)
class Task:
    """One prediction head: its name and ordered labels. A ``year`` head's labels are the
    first years of consecutive ``step``-year bins; its outputs become a date and a period.
    A head with ``hidden`` units reads the backbone features, not the embedding (what
    ``recover`` needs to rebuild it; tagging reads only the output)."""

    name: str
    labels: tuple[str, ...]
    kind: str = "class"
    step: int | None = None
    hidden: int | None = None

    def to_dict(self) -> dict[str, Any]:
        extra = {"kind": self.kind, "step": self.step} if self.kind != "class" else {}
        if self.hidden:
            extra["hidden"] = self.hidden
        return {"name": self.name, "labels": list(self.labels), **extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        kind = str(d.get("kind", "class"))
        if kind not in ("class", YEAR_KIND):
            raise BundleError(f"task {d.get('name')!r}: unknown kind {kind!r}")
        hidden = d.get("hidden")
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int)
                                   or hidden < 1):
            raise BundleError(f"task {d.get('name')!r}: hidden must be a positive int")
        task = cls(str(d["name"]), tuple(str(x) for x in d["labels"]), kind,
                   int(d["step"]) if kind == YEAR_KIND else None, hidden)
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
        names = tuple(t.name for t in self.tasks if t.kind == "class" and t.name != DOMAIN_TASK)
        return names + ("period",) if self.year_task and "period" not in names else names

    @property
    def domain_task(self) -> Task | None:
        """The ``domain`` head (Model v5), if the bundle has one."""
        return next((t for t in self.tasks if t.name == DOMAIN_TASK and ARTWORK in t.labels),
                    None)

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


def load_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{path}: no manifest.json; is {bundle_dir} a model bundle?")
    try:  # untrusted: a regular file of bounded size; no ValueError/RecursionError escapes
        data = read_json(path, MAX_MANIFEST_BYTES)
    except UntrustedFileError as e:
        raise BundleError(f"{path}: manifest {e.reason}") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path}: manifest must be a JSON object")
    return Manifest.from_dict(data)
