"""int8 bundles: onnxruntime static QDQ quantization, its accuracy cost and its speed-up.

Static, per-channel QDQ (uint8 activations, int8 weights, MinMax ranges from training
images) is tried first: on EfficientNet-Lite0 it keeps top-1 agreement with fp32 around 95%
and runs ~2x faster on an AVX-512 VNNI CPU. Dynamic quantization (weights only, activations
ranged at run time) is only the fallback for graphs static quantization does not fit: on
the same network it was 4x slower than fp32 (ConvInteger) and far less accurate.

The stem (input normalization and first conv, see :func:`float_stem`) and the
post-processing after the last linear layers (softmax, L2 norm) stay float, so an int8
bundle still returns probabilities that sum to 1 and unit-norm embeddings.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from artylyze.export.errors import ExportError
from artylyze.export.runtime import open_session, run
from artylyze.model.bundle import Task
from artylyze.options import Export

LINEAR_OPS = ("Gemm", "MatMul")
STYLE_TASK = "style"
MAX_STYLE_DROP: float = Export.max_style_drop.default  # accuracy points


def float_tail(model: onnx.ModelProto) -> list[str]:
    """Nodes between the last linear layers and the graph outputs (softmax, L2 norm)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    tail: dict[str, None] = {}
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.op_type in LINEAR_OPS or node.name in tail:
            continue
        tail[node.name] = None
        stack.extend(node.input)
    return list(tail)


def float_stem(model: onnx.ModelProto) -> list[str]:
    """The first convolution and everything before it (layout change, normalization).

    Keeping it float is both faster and more accurate on this CPU: quantizing means a
    quantize/dequantize pass over the full-resolution input for a 3-channel conv that costs
    little anyway, and the stem is the layer int8 hurts most (EfficientNet-Lite0, 1 thread:
    4.5 vs 5.4 ms/image, top-1 agreement with fp32 94.2% vs 93.4%).
    """
    first = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    if first is None:
        return []
    producer = {out: node for node in model.graph.node for out in node.output}
    stem: dict[str, None] = {}
    stack = [first]
    while stack:
        node = stack.pop()
        if node.name in stem:
            continue
        stem[node.name] = None
        stack.extend(producer[i] for i in node.input if i in producer)
    return list(stem)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a stream of uint8 batches."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = iter(batches)
        self.images = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.images += len(batch)
        return {"image": batch}

    def rewind(self) -> None:  # pragma: no cover - only asked for by the TensorRT calibrator
        raise NotImplementedError


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Iterable[np.ndarray],
                  workdir: Path) -> dict[str, Any]:
    """Write an int8 model of ``fp32_path`` to ``out_path``; returns what was done."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = workdir / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared))
    keep_float = float_stem(graph) + float_tail(graph)
    info: dict[str, Any] = {"dtype": "int8", "weights": "int8 per-channel",
                            "float": "stem (input normalization, first conv) and outputs "
                                     f"(softmax, L2 norm): {len(keep_float)} nodes"}
    reader = _Calibration(calibration)
    try:
        quantize_static(
            str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
        )  # MinMax keeps two numbers per tensor and batch, so memory stays flat. Do not set
        # CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the batches it clears.
        info.update(method="static", format="QDQ", activations="uint8 (MinMax calibration)",
                    calibration_images=reader.images)
    except Exception as e:  # onnxruntime raises many types; all mean "static does not fit"
        quantize_dynamic(str(prepared), str(out_path), per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=keep_float)
        info.update(method="dynamic", format="QOperator", activations="dynamic uint8",
                    static_failed=f"{type(e).__name__}: {e}"[:500])
    return info


def compare_accuracy(fp32_session, int8_session, batches: Iterable[tuple[Sequence, np.ndarray]],
                     tasks: Sequence[Task]) -> dict[str, dict[str, Any]]:
    """Top-1 accuracy of both models per task on labelled samples, and their agreement.

    A sample counts for a task only when its label for that task is one of the bundle's
    labels; tasks without labels in the set (e.g. ``period``) get agreement only.
    """
    names = [t.name for t in tasks]
    index = {t.name: {label: i for i, label in enumerate(t.labels)} for t in tasks}
    truth: dict[str, list[int]] = {n: [] for n in names}
    preds: dict[str, dict[str, list[np.ndarray]]] = {"fp32": {n: [] for n in names},
                                                     "int8": {n: [] for n in names}}
    for samples, pixels in batches:
        for key, session in (("fp32", fp32_session), ("int8", int8_session)):
            out = run(session, pixels, names)
            for n in names:
                preds[key][n].append(out[n].argmax(1))
        for n in names:
            truth[n].extend(index[n].get(s.labels.get(n, ""), -1) for s in samples)
    report = {}
    for n in names:
        y = np.asarray(truth[n])
        p32, p8 = (np.concatenate(preds[k][n]) for k in ("fp32", "int8"))
        known = y >= 0
        row: dict[str, Any] = {"images": int(len(y)), "agreement": float(np.mean(p32 == p8)),
                               "labelled": int(known.sum())}
        if known.any():
            acc32 = float(np.mean(p32[known] == y[known]))
            acc8 = float(np.mean(p8[known] == y[known]))
            row.update(fp32_accuracy=acc32, int8_accuracy=acc8,
                       change_points=round(100 * (acc8 - acc32), 3))
        report[n] = row
    return report


def check_accuracy_bar(accuracy: dict[str, dict[str, Any]],
                       max_drop: float = MAX_STYLE_DROP, task: str = STYLE_TASK) -> None:
    """Refuse an int8 model that loses more than ``max_drop`` points of style accuracy."""
    row = accuracy.get(task)
    if row is None or not row.get("labelled"):
        raise ExportError(f"cannot check the int8 accuracy bar: no labelled {task!r} images in "
                          "the evaluation set (or the bundle has no such task)")
    drop = 0.0 - row["change_points"]  # not -x: no "-0.00 points"
    if drop > max_drop:
        raise ExportError(
            f"int8 refused: {task} accuracy {100 * row['int8_accuracy']:.2f}% vs fp32 "
            f"{100 * row['fp32_accuracy']:.2f}% on {row['labelled']} images, a drop of "
            f"{drop:.2f} points (allowed: {max_drop:g}); export without --quantize")


def benchmark(models: dict[str, Path], pixels: np.ndarray, threads: int,
              repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Median ms/image of each model on the same batch with the same threads.

    Runs alternate between the models, so background load hits them alike.
    """
    sessions = {k: open_session(p, threads) for k, p in models.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(warmup + repeats):
        for key, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {"image": pixels})
            if i >= warmup:
                times[key].append(time.perf_counter() - t0)
    result: dict[str, Any] = {"batch": int(len(pixels)), "threads": threads, "repeats": repeats,
                              "cpu": cpu_name()}
    for key, ts in times.items():
        result[f"{key}_ms_per_image"] = round(1000 * float(np.median(ts)) / len(pixels), 3)
    if hasattr(os, "getloadavg"):
        result["load_average"] = round(os.getloadavg()[0], 2)
    return result


def cpu_name() -> str:
    """The CPU model, for reading speed figures later."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

