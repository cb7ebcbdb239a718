"""Evaluate a checkpoint or an ONNX bundle on a manifest split: metrics.json and plots.

Both paths feed the same uint8 pixels (``load_image`` with the model's size and resize
policy), so a checkpoint and its fp32 export give the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from artylyze.atomic import atomic_write_text
from artylyze.errors import ArtyLyzeError
from artylyze.imaging import load_image
from artylyze.train.metrics import UNKNOWN, task_metrics

Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]


class EvaluationError(ArtyLyzeError):
    """The model or manifest cannot be evaluated together."""


def open_model(path: str | Path) -> tuple[Predictor, dict[str, list[str]], int, str, dict]:
    """A predictor (uint8 batch -> probabilities), labels, input size, resize, and info."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        from artylyze.bundle import load_bundle

        bundle = load_bundle(path)
        m = bundle.manifest
        labels = {t.name: list(t.labels) for t in m.tasks}
        return bundle.run, labels, m.input_size, m.resize, {"kind": "bundle", **m.to_dict()}
    if (path / "checkpoint.json").is_file():
        from artylyze.train.checkpoint import load_checkpoint
        from artylyze.train.loop import predict

        model, config = load_checkpoint(path)
        labels = {t["name"]: t["labels"] for t in config["tasks"]}
        return (lambda x: predict(model, x)), labels, config["input_size"], config["resize"], {
            "kind": "checkpoint", "history": config.get("history", [])}
    raise EvaluationError(f"{path}: neither a bundle (manifest.json) nor a checkpoint "
                          "(checkpoint.json)")


def evaluate(model_path: str | Path, manifest: str | Path, split: str = "test",
             out_dir: str | Path | None = None, batch_size: int = 64,
             limit: int | None = None, plots: bool = True) -> dict:
    """Metrics per task on ``split``; writes ``metrics.json`` (+ PNGs) into ``out_dir``."""
    from artylyze.train.manifest import read_manifest

    predictor, labels, size, resize, info = open_model(model_path)
    df, root = read_manifest(manifest)
    df = df[df["split"] == split].reset_index(drop=True)
    if limit:
        df = df.iloc[:limit]
    if df.empty:
        raise EvaluationError(f"{manifest}: no rows in split {split!r}")
    images = np.stack([load_image(root / p, size, resize).pixels for p in df["path"]])
    probs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch_size):
        for k, v in predictor(images[i:i + batch_size]).items():
            probs.setdefault(k, []).append(np.asarray(v))
    out = {k: np.concatenate(v) for k, v in probs.items()}
    metrics = {}
    codes = {}
    for task, names in labels.items():
        if task not in df:
            continue
        index = {n: i for i, n in enumerate(names)}
        codes[task] = np.array([index.get(v, UNKNOWN) if v is not None else UNKNOWN
                                for v in df[task]], np.int64)
        metrics[task] = task_metrics(codes[task], out[task], names)
    result = {"model": str(model_path), "split": split, "n": len(df), "tasks": metrics}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
        if plots:
            from artylyze.train.plots import write_plots

            write_plots(out_dir, metrics, info.get("history", []), images, codes, out, labels)
    return result


def summary_table(result: dict) -> list[tuple[str, int, float, float, float]]:
    """(task, n, accuracy, macro-F1, top-3 accuracy) rows for printing."""
    return [(t, m["n"], m["accuracy"], m["macro_f1"], m["top3_accuracy"])
            for t, m in result["tasks"].items()]
