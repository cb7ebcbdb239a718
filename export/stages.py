"""The measured stages of an export: the fp32 graph against torch (parity), then int8
calibration, accuracy against fp32 and timing. Each reports progress and raises
:class:`~artylyze.export.errors.ExportError` when its bar is not met."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.export import parity as parity_mod
from artylyze.export.samples import Sample, batches
from artylyze.export.spec import BundleSpec

BATCH = 16
Progress = Callable[[str, int, int], None]  # (stage, done, total); done=0 opens the stage


def export_fp32(model, spec: BundleSpec, pixels: np.ndarray, work: Path, opset: int,
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


def quantize_measured(fp32_path: Path, int8_path: Path, spec: BundleSpec, work: Path,
                      threads: int, report: Progress, *, pixels: np.ndarray,
                      reference: dict[str, np.ndarray], calibration: list[Sample],
                      evaluation: list[Sample], eval_source: str,
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
    cal_stream = counted(batches(calibration, size, resize, BATCH), "calibrate",
                         len(calibration), report)
    info = quantize_int8(fp32_path, int8_path, (px for _, px in cal_stream), work)

    int8 = open_session(int8_path, threads)
    vs_torch = parity_mod.compare(reference, run(int8, pixels, ["embedding", *names]), names)
    # Informational: int8 is not expected to meet the fp32 bar; accuracy decides below.
    info["vs_torch"] = {k: v for k, v in vs_torch.to_dict().items() if k not in ("passed", "atol")}

    eval_stream = counted(batches(evaluation, size, resize, BATCH), "evaluate",
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


def counted(stream: Iterator[tuple[list[Sample], np.ndarray]], stage: str, total: int,
            report: Progress) -> Iterator[tuple[list[Sample], np.ndarray]]:
    """``stream`` unchanged, reporting how many samples of ``total`` have passed."""
    report(stage, 0, total)
    done = 0
    for chunk, pixels in stream:
        yield chunk, pixels
        done += len(chunk)
        report(stage, done, total)
