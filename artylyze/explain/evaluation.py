"""Evaluate a checkpoint or an ONNX bundle on a manifest split: metrics.json and plots.

Both paths feed the same uint8 pixels (``load_image`` with the model's size and resize
policy), so a checkpoint and its fp32 export give the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from artylyze.atomic import atomic_write_text
from artylyze.errors import ArtyLyzeError
from artylyze.explain.looks_at import EXAMPLES as SHEET_EXAMPLES
from artylyze.imaging import load_image
from artylyze.options import Evaluate
from artylyze.train.metrics import UNKNOWN, task_metrics

if TYPE_CHECKING:
    from artylyze.model.bundle import Manifest
    from artylyze.model.predict import Prediction

Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]
ECE_BINS = 15


class EvaluationError(ArtyLyzeError):
    """The model or manifest cannot be evaluated together."""


def score_bins(scores: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """The equal-width score bin (0 .. bins - 1) of each score."""
    edges = np.linspace(0, 1, bins + 1)
    return np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)


def ece(scores: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the mean |accuracy - confidence| over equal-width score
    bins, weighted by how many predictions fall in each (per bin: |right - sum of scores|)."""
    which = score_bins(scores, bins)
    gap = (np.bincount(which, correct.astype(np.float64), bins)
           - np.bincount(which, scores.astype(np.float64), bins))
    return float(np.abs(gap).sum() / max(len(scores), 1))


def ece_floor(scores: np.ndarray, bins: int = ECE_BINS, draws: int = 200,
              seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these scores would show on this many works:
    the mean ECE over ``draws`` label sets in which each prediction is right with probability
    its score. On a few hundred works it is several points, so an ECE near it is noise."""
    rng = np.random.default_rng(seed)
    which = np.eye(bins)[score_bins(scores, bins)]  # [n, bins] one-hot
    right = (rng.random((draws, len(scores))) < scores).astype(np.float64) @ which
    gap = right - np.asarray(scores, np.float64) @ which
    return float(np.abs(gap).sum(axis=1).mean() / max(len(scores), 1))


def reliability(scores: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per score bin: mean score, accuracy and count (the reliability diagram's points)."""
    edges = np.linspace(0, 1, bins + 1)
    which = score_bins(scores, bins)
    return [{"low": round(float(edges[b]), 4), "high": round(float(edges[b + 1]), 4),
             "n": int((which == b).sum()),
             "score": float(scores[which == b].mean()) if (which == b).any() else None,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else None}
            for b in range(bins)]


def open_model(path: str | Path) -> tuple[Predictor, Manifest, dict]:
    """A predictor (uint8 batch -> the bundle's outputs, calibrated), the model's manifest
    (a checkpoint's is built from its config and ``calibration.json``), and info."""
    from artylyze.model.bundle import Manifest, Task

    path = Path(path)
    if (path / "manifest.json").is_file():
        from artylyze.model.bundle import load_bundle

        bundle = load_bundle(path)
        return bundle.run, bundle.manifest, {"kind": "bundle", **bundle.manifest.to_dict()}
    if (path / "checkpoint.json").is_file():
        from artylyze.train.calibrate import read_calibration, scale
        from artylyze.train.checkpoint import load_checkpoint
        from artylyze.train.inputs import predict

        model, config = load_checkpoint(path)
        calibration = read_calibration(path) or {}
        temps = calibration.get("temperature", {})
        biases = calibration.get("bias", {})
        manifest = Manifest(
            name=str(config.get("name") or "checkpoint"), backbone=config["backbone"],
            input_size=config["input_size"], resize=config["resize"],
            tasks=tuple(Task.from_dict(t) for t in config["tasks"]),
            embedding_dim=config["embedding_dim"], model_sha256="",
            extra={"calibration": calibration} if calibration else {})

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            out = predict(model, x)
            return {k: scale(v, temps[k], biases.get(k)).astype(np.float32) if k in temps
                    else v for k, v in out.items()}

        return run, manifest, {"kind": "checkpoint", "history": config.get("history", [])}
    raise EvaluationError(f"{path}: neither a bundle (manifest.json) nor a checkpoint "
                          "(checkpoint.json)")


def _label_codes(values: pd.Series, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return np.array([index.get(v, UNKNOWN) if isinstance(v, str) else UNKNOWN for v in values],
                    np.int64)


def _ranked(preds: list[Prediction], task: str, names: list[str]) -> np.ndarray:
    """A score matrix whose order is each prediction's ranking (top-1 = what rows say; for
    a derived period that is the period of the year estimate, not the largest mass)."""
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(preds), len(names)), np.float32)
    for i, p in enumerate(preds):
        for rank, (label, _) in enumerate(p.top[task]):
            out[i, index[label]] = len(names) - rank
    return out


def date_metrics(preds: list[Prediction], years: np.ndarray) -> dict[str, Any]:
    """MAE in years, share within 25 and 50 years, and how often the interval holds."""
    dated = np.flatnonzero(~np.isnan(years))
    if not len(dated) or preds[0].year is None:
        return {"n": 0}
    est = np.array([preds[i].year.year for i in dated], np.float64)
    low = np.array([preds[i].year.low for i in dated])
    high = np.array([preds[i].year.high for i in dated])
    err = np.abs(est - years[dated])
    return {"n": int(len(dated)), "mae_years": round(float(err.mean()), 2),
            "median_error_years": round(float(np.median(err)), 2),
            "within_25": round(float((err <= 25).mean()), 4),
            "within_50": round(float((err <= 50).mean()), 4),
            "interval_coverage": round(float(((low <= years[dated]) & (years[dated] <= high))
                                             .mean()), 4),
            "interval_mean_width": round(float((high - low).mean()), 1)}


def evaluate(model_path: str | Path, manifest: str | Path, split: str = Evaluate.split.default,
             out_dir: str | Path | None = None, batch_size: int = 64,
             limit: int | None = None, plots: bool = Evaluate.plots.default,
             saliency: int = SHEET_EXAMPLES) -> dict:
    """Metrics per task on ``split``; writes ``metrics.json`` (+ PNGs) into ``out_dir``, with
    ``saliency`` right and wrong examples per class in the "what the model looks at" sheets."""
    from artylyze.model.predict import predictions
    from artylyze.train.manifest import read_manifest

    predictor, man, info = open_model(model_path)
    df, root = read_manifest(manifest)
    df = df[df["split"] == split].reset_index(drop=True)
    if limit:
        df = df.iloc[:limit]
    if df.empty:
        raise EvaluationError(f"{manifest}: no rows in split {split!r}")
    size, resize = man.input_size, man.resize
    images = np.stack([load_image(root / p, size, resize).pixels for p in df["path"]])
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch_size):
        for k, v in predictor(images[i:i + batch_size]).items():
            parts.setdefault(k, []).append(np.asarray(v))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    preds = predictions(out, man, 3)
    labels = {t.name: list(t.labels) for t in man.tasks if t.kind == "class"}
    if man.year_task is not None:
        labels["period"] = sorted({label for p in preds for label, _ in p.top["period"]}
                                  | {v for v in df.get("period", []) if isinstance(v, str)})
    metrics, codes, scores = {}, {}, {}
    for task, names in labels.items():
        if task not in df:
            continue
        codes[task] = _label_codes(df[task], names)
        scores[task] = out[task] if task in out else _ranked(preds, task, names)
        metrics[task] = task_metrics(codes[task], scores[task], names)
        known = codes[task] != UNKNOWN
        top1 = np.array([p.top[task][0][1] for p in preds])[known]
        right = scores[task][known].argmax(1) == codes[task][known]
        metrics[task]["ece"] = round(ece(top1, right), 4)
        metrics[task]["ece_floor"] = round(ece_floor(top1), 4)
        metrics[task]["reliability"] = reliability(top1, right)
        flags = [p.confident.get(task) for p in preds]
        if any(f is not None for f in flags):
            sure = np.array([bool(f) for f in flags])[known]
            metrics[task]["confident_share"] = round(float(sure.mean()), 4)
            metrics[task]["confident_accuracy"] = (round(float(right[sure].mean()), 4)
                                                   if sure.any() else None)
    result: dict[str, Any] = {"model": str(model_path), "split": split, "n": len(df),
                              "tasks": metrics}
    if "style" in codes and "source" in df:
        right = scores["style"].argmax(1) == codes["style"]
        result["style_by_source"] = {
            str(src): {"n": int(rows.sum()), "accuracy": round(float(right[rows].mean()), 4)}
            for src, rows in ((s, (df["source"] == s).to_numpy() & (codes["style"] >= 0))
                              for s in sorted(df["source"].dropna().unique())) if rows.any()}
    if man.year_task is not None and "year" in df:
        result["date"] = date_metrics(preds, np.asarray(df["year"], np.float64))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
        if plots:
            from artylyze.train.plots import write_plots

            write_plots(out_dir, metrics, info.get("history", []), images, codes, scores,
                        labels)
            if saliency:  # the model's own heads only (a derived period has no map)
                from artylyze.explain.looks_at import write_sheets

                write_sheets(out_dir, predictor, images, codes, out, labels, saliency)
    return result


def summary_table(result: dict
                  ) -> list[tuple[str, int, float, float, float, float, float]]:
    """(task, n, accuracy, macro-F1, top-3 accuracy, ECE, ECE floor) rows for printing."""
    return [(t, m["n"], m["accuracy"], m["macro_f1"], m["top3_accuracy"], m.get("ece", np.nan),
             m.get("ece_floor", np.nan)) for t, m in result["tasks"].items()]
