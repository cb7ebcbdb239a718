"""Checkpoint -> model bundle: export, check, optionally quantize, then publish atomically.

Order of work: the torch graph is exported to ONNX and checked (``onnx.checker`` and the
bundle contract), its outputs are compared with torch on real images (parity), for
``quantize="int8"`` an int8 model is calibrated, evaluated against fp32 on a labelled set
and timed; only then is ``model.onnx`` written, followed by ``manifest.json``, into a temp
directory beside ``out_dir`` that replaces it in one rename. A failed check leaves the old
bundle (if any) untouched. The measured stages are :mod:`artylyze.export.stages`, what the
manifest takes from the checkpoint :mod:`artylyze.export.spec`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from artylyze.atomic import recover_dir, replace_dir
from artylyze.export.errors import ExportError
from artylyze.export.quantize import MAX_STYLE_DROP
from artylyze.export.samples import default_source, load_pixels, read_samples
from artylyze.export.spec import BundleSpec, describe_source, portable_training, summarise_metrics
from artylyze.export.stages import Progress, export_fp32, quantize_measured
from artylyze.model.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    Task,
    load_bundle,
    sha256_file,
    usable_cores,
    write_manifest,
)
from artylyze.options import DEFAULT_OPSET
from artylyze.options import Export as O

QUANTIZE_CHOICES = ("int8",)
CHECK_COUNT: int = O.check_count.default
CALIBRATION_COUNT: int = O.calibration_count.default


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
    recover_dir(out)  # a previous export cut short between its two renames
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
            fp32_path, parity, reference = export_fp32(model, spec, pixels, work, opset,
                                                       threads, report, temperatures,
                                                       fitted.get("bias", {}))
            final, quant = fp32_path, {"dtype": "float32"}
            if quantize == "int8":
                final = work / "int8.onnx"
                quant = quantize_measured(
                    fp32_path, final, spec, work, threads, report, pixels=pixels,
                    reference=reference, calibration=cal_samples, evaluation=eval_samples,
                    eval_source=describe_source(eval_source), max_style_drop=max_style_drop)
            shutil.copyfile(final, staging / MODEL_FILE)
        _copy_reference(Path(ckpt_dir), staging, fitted)
        manifest = Manifest(
            name=spec.name, backbone=spec.backbone, input_size=spec.input_size,
            resize=spec.resize, tasks=spec.tasks, embedding_dim=spec.embedding_dim,
            model_sha256=sha256_file(staging / MODEL_FILE),
            extra={
                "training": portable_training(config.get("data")),
                "metrics": (summarise_metrics(test_metrics) if test_metrics is not None
                            else config.get("metrics")),
                "parity": {**parity.to_dict(), "source": describe_source(check_source)},
                "quantization": quant,
                **({"calibration": fitted} if fitted else {}),
                "opset": opset,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "exporter": _versions(),
            },
        )
        write_manifest(staging, manifest)
        _smoke_test(staging, pixels[:2], spec.tasks)
        replace_dir(staging, out)  # one swap; a crash mid-way is undone by recover_dir
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _copy_reference(ckpt_dir: Path, staging: Path, fitted: dict) -> None:
    """The novelty reference set (``calibration.novelty.file``) travels beside the graph, its
    sha256 in the manifest, so loading checks it as it checks ``model.onnx``."""
    name = (fitted.get("novelty") or {}).get("file")
    if not name:
        return
    src = ckpt_dir / name
    if Path(name).name != name or name in (MODEL_FILE, MANIFEST_FILE) or not src.is_file():
        raise ExportError(f"{src}: the calibration names a novelty reference file that the "
                          "checkpoint does not have")
    if sha256_file(src) != fitted["novelty"].get("sha256"):
        raise ExportError(f"{src}: sha256 differs from calibration.json's; re-run calibration")
    shutil.copyfile(src, staging / name)


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
