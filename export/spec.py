"""What the bundle manifest takes from a checkpoint, checked before any export work."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artylyze.export.errors import ExportError
from artylyze.model.bundle import RESIZE_POLICIES, BundleError, Task


@dataclass(frozen=True)
class BundleSpec:
    """What the manifest needs from the checkpoint config, checked before any work."""

    name: str
    backbone: str
    tasks: tuple[Task, ...]
    embedding_dim: int
    input_size: int
    resize: str

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BundleSpec:
        try:
            backbone = str(config["backbone"])
            spec = cls(
                name=str(config.get("name") or f"artylyze-{backbone}"),
                backbone=backbone,
                tasks=tuple(Task.from_dict(t) for t in config["tasks"]),
                embedding_dim=int(config["embedding_dim"]),
                input_size=int(config.get("input_size", 224)),
                resize=str(config.get("resize", "stretch")),
            )
        except (KeyError, TypeError, ValueError, BundleError) as e:
            raise ExportError(f"checkpoint config is missing or has a bad field: {e}") from e
        if spec.resize not in RESIZE_POLICIES:
            raise ExportError(f"checkpoint resize policy {spec.resize!r} is not one of "
                              f"{RESIZE_POLICIES}")
        names = spec.task_names
        if not names or "embedding" in names or len(set(names)) != len(names):
            raise ExportError(f"task names must be unique, non-empty and not 'embedding': "
                              f"{names}")
        return spec


def portable_training(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The training summary without paths of the machine that trained (bundles travel)."""
    if not data or not data.get("manifest"):
        return data
    return {**data, "manifest": Path(str(data["manifest"])).name}


def describe_source(path: str | os.PathLike[str]) -> str:
    """A source as the manifest records it: no absolute paths of the machine that exported."""
    p = Path(path)
    return "/".join(p.parts[-3:]) if p.is_absolute() else str(p)


def summarise_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The headline figures of an evaluate metrics.json (no confusion matrices)."""
    try:
        result = json.loads(Path(path).read_text())
        tasks = {t: {k: m[k] for k in ("n", "accuracy", "macro_f1", "top3_accuracy", "ece")
                     if k in m} for t, m in result["tasks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path}: not an `artylyze evaluate` metrics.json ({e})") from e
    return {"split": result.get("split"), "n": result.get("n"), "tasks": tasks,
            **{k: result[k] for k in ("date", "style_by_source") if k in result}}
