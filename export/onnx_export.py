"""Checkpoint -> model bundle: export, check, optionally quantize, then publish atomically.

Order of work: the torch graph is exported to ONNX and checked (``onnx.checker`` and the
bundle contract), its outputs are compared with torch on real images (parity), for
``quantize="int8"`` an int8 model is calibrated, evaluated against fp32 on a labelled set
and timed; only then is ``model.onnx`` written, followed by ``manifest.json``, into a temp
directory beside ``out_dir`` that replaces it in one rename. A failed check leaves the old
bundle (if any) untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.atomic import replace_dir, restore_dir
from artylyze.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    RESIZE_POLICIES,
    BundleError,
    Manifest,
    Task,
    load_bundle,
    sha256_file,
    usable_cores,
    write_manifest,
)
from artylyze.export import parity as parity_mod
from artylyze.export.errors import ExportError
from artylyze.export.quantize import MAX_STYLE_DROP
from artylyze.export.samples import Sample, batches, default_source, load_pixels, read_samples
from artylyze.options import DEFAULT_OPSET
from artylyze.options import Export as O

QUANTIZE_CHOICES = ("int8",)
CHECK_COUNT: int = O.check_count.default
CALIBRATION_COUNT: int = O.calibration_count.default
BATCH = 16

Progress = Callable[[str, int, int], None]  # (stage, done, total); done=0 opens the stage


def export_bundle(
    ckpt_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    check_images: str | os.PathLike[str] | None = None,
    *,
    check_count: int = CHECK_COUNT,
    data: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    calibration_count: int = CALIBRATION_COUNT,
    eval_labels: str | os.PathLike[str] | None = None,
    eval_count: int | None = None,
    max_style_drop: float = MAX_STYLE_DROP,
    threads: int | None = None,
    progress: Progress | None = None,
    test_metrics: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Export the checkpoint in ``ckpt_dir`` as a bundle in ``out_dir`` and return its manifest.

    ``check_images`` (folder, CSV or manifest; default: ``check_count`` test images) drive the
    parity check. With ``quantize="int8"``: calibration on ``calibration`` (default: the
    train split), accuracy on ``eval_labels`` (default: the test split, all of it unless
    ``eval_count``). Defaults come from ``data`` (a wikiart11-like folder, CSV or manifest),
    else the training manifest named in the checkpoint, else ../shared/datasets/wikiart11.
    ``test_metrics``: an ``artylyze evaluate`` metrics.json, summarised into the manifest
    (the checkpoint's own ``metrics`` otherwise).
    Raises :class:`ExportError` when the graph, parity or the int8 bar fail.
    """
    from artylyze.train.calibrate import read_calibration
    from artylyze.train.checkpoint import load_checkpoint

    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ExportError(f"unknown quantization {quantize!r}; choose one of {QUANTIZE_CHOICES}")
    out = Path(out_dir)
    restore_dir(out)  # a previous export cut short between its two renames
    _check_target(out)
    report = progress or (lambda stage, done, total: None)
    model, config = load_checkpoint(ckpt_dir)
    spec = BundleSpec.from_config(config)
    fitted = read_calibration(ckpt_dir) or {}  # scores (calibrate.py), not int8 calibration
    temperatures = fitted.get("temperature", {})
    # Every image source is read before the slow work, so a bad path fails in seconds.
    default = default_source(data, config.get("data"))
    check_source = check_images if check_images is not None else default
    pixels = load_pixels(read_samples(check_source, split="test", count=check_count),
                         spec.input_size, spec.resize)
    if quantize == "int8":
        cal_samples = read_samples(calibration if calibration is not None else default,
                                   split="train", count=calibration_count)
        eval_source = eval_labels if eval_labels is not None else default
        eval_samples = read_samples(eval_source, split="test", count=eval_count)
    threads = threads or usable_cores()

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="artylyze-export-") as work_dir:
            work = Path(work_dir)
            fp32_path, parity, reference = _export_fp32(model, spec, pixels, work, opset,
                                                        threads, report, temperatures,
                                                        fitted.get("bias", {}))
            final, quant = fp32_path, {"dtype": "float32"}
            if quantize == "int8":
                final = work / "int8.onnx"
                quant = _quantize(fp32_path, final, spec, work, threads, report,
                                  pixels=pixels, reference=reference, calibration=cal_samples,
                                  evaluation=eval_samples, eval_source=_describe(eval_source),
                                  max_style_drop=max_style_drop)
            shutil.copyfile(final, staging / MODEL_FILE)
        manifest = Manifest(
            name=spec.name, backbone=spec.backbone, input_size=spec.input_size,
            resize=spec.resize, tasks=spec.tasks, embedding_dim=spec.embedding_dim,
            model_sha256=sha256_file(staging / MODEL_FILE),
            extra={
                "training": _portable(config.get("data")),
                "metrics": (summarise_metrics(test_metrics) if test_metrics is not None
                            else config.get("metrics")),
                "parity": {**parity.to_dict(), "source": _describe(check_source)},
                "quantization": quant,
                **({"calibration": fitted} if fitted else {}),
                "opset": opset,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "exporter": _versions(),
            },
        )
        write_manifest(staging, manifest)
        _smoke_test(staging, pixels[:2], spec.tasks)
        replace_dir(staging, out)  # one swap; a crash mid-way is undone by restore_dir
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _portable(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The training summary without paths of the machine that trained (bundles travel)."""
    if not data or not data.get("manifest"):
        return data
    return {**data, "manifest": Path(str(data["manifest"])).name}


def summarise_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The headline figures of an evaluate metrics.json (no confusion matrices)."""
    import json

    try:
        result = json.loads(Path(path).read_text())
        tasks = {t: {k: m[k] for k in ("n", "accuracy", "macro_f1", "top3_accuracy", "ece")
                     if k in m} for t, m in result["tasks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path}: not an `artylyze evaluate` metrics.json ({e})") from e
    return {"split": result.get("split"), "n": result.get("n"), "tasks": tasks,
            **{k: result[k] for k in ("date", "style_by_source") if k in result}}


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


def _export_fp32(model, spec: BundleSpec, pixels: np.ndarray, work: Path, opset: int,
                 threads: int, report: Progress, temperatures: dict[str, float],
                 biases: dict[str, list[float]]
                 ) -> tuple[Path, parity_mod.ParityReport, dict[str, np.ndarray]]:
    """Export the float graph and require parity with torch.

    Returns the graph's path, the parity report and torch's outputs on ``pixels``.
    """
    from artylyze.export.graph import BundleGraph, export_onnx, torch_outputs
    from artylyze.export.runtime import open_session, run

    report("export", 0, 1)
    graph = BundleGraph(model, spec.task_names, temperatures, biases)
    path = work / "fp32.onnx"
    export_onnx(graph, path, spec.input_size, opset)
    report("export", 1, 1)
    report("parity", 0, len(pixels))
    reference = torch_outputs(graph, pixels)
    candidate = run(open_session(path, threads), pixels, ["embedding", *spec.task_names])
    result = parity_mod.compare(reference, candidate, spec.task_names)
    report("parity", len(pixels), len(pixels))
    parity_mod.require(result)
    return path, result, reference


def _quantize(fp32_path: Path, int8_path: Path, spec: BundleSpec, work: Path, threads: int,
              report: Progress, *, pixels: np.ndarray, reference: dict[str, np.ndarray],
              calibration: list[Sample], evaluation: list[Sample], eval_source: str,
              max_style_drop: float) -> dict[str, Any]:
    """Quantize, measure (vs torch, accuracy vs fp32, speed) and apply the int8 bar."""
    from artylyze.export.quantize import (
        benchmark,
        check_accuracy_bar,
        compare_accuracy,
        quantize_int8,
    )
    from artylyze.export.runtime import open_session, run

    size, resize, names = spec.input_size, spec.resize, spec.task_names
    cal_stream = _counted(batches(calibration, size, resize, BATCH), "calibrate",
                          len(calibration), report)
    info = quantize_int8(fp32_path, int8_path, (px for _, px in cal_stream), work)

    int8 = open_session(int8_path, threads)
    vs_torch = parity_mod.compare(reference, run(int8, pixels, ["embedding", *names]), names)
    # Informational: int8 is not expected to meet the fp32 bar; accuracy decides below.
    info["vs_torch"] = {k: v for k, v in vs_torch.to_dict().items() if k not in ("passed", "atol")}

    eval_stream = _counted(batches(evaluation, size, resize, BATCH), "evaluate",
                           len(evaluation), report)
    accuracy = compare_accuracy(open_session(fp32_path, threads), int8, eval_stream, spec.tasks)
    info["evaluation"] = {"source": eval_source, "images": len(evaluation)}
    info["accuracy"] = accuracy
    info["max_style_drop"] = max_style_drop

    report("benchmark", 0, 1)
    speed = benchmark({"fp32": fp32_path, "int8": int8_path}, pixels, threads)
    speed["speedup"] = round(speed["fp32_ms_per_image"] / speed["int8_ms_per_image"], 2)
    info["speed"] = speed
    report("benchmark", 1, 1)
    check_accuracy_bar(accuracy, max_style_drop)
    return info


def _counted(stream: Iterator[tuple[list[Sample], np.ndarray]], stage: str, total: int,
             report: Progress) -> Iterator[tuple[list[Sample], np.ndarray]]:
    report(stage, 0, total)
    done = 0
    for chunk, pixels in stream:
        yield chunk, pixels
        done += len(chunk)
        report(stage, done, total)


def _describe(path: str | os.PathLike[str]) -> str:
    """A source as the manifest records it: no absolute paths of the machine that exported."""
    p = Path(path)
    return "/".join(p.parts[-3:]) if p.is_absolute() else str(p)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from artylyze import __version__

    return {"artylyze": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _smoke_test(bundle_dir: Path, pixels: np.ndarray, tasks: Sequence[Task]) -> None:
    """Load the staged bundle as users will (sha256 verified) and run it once."""
    bundle = load_bundle(bundle_dir, threads=1)
    try:
        out = bundle.run(pixels)
    finally:
        bundle.close()
    for t in tasks:
        if out[t.name].shape != (len(pixels), len(t.labels)):
            raise ExportError(f"bundle output {t.name!r} has shape {out[t.name].shape}")


def _check_target(out: Path) -> None:
    """Refuse to replace a folder that is not a bundle: it may hold someone's files."""
    if out.exists() and (not out.is_dir() or
                         (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file())):
        raise ExportError(f"{out} exists and is not a model bundle; refusing to replace it")
