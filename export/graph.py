"""The torch side of export: wrap the network in the bundle contract and write ONNX.

The bundle graph takes uint8 ``[N, H, W, 3]`` RGB, so callers never normalize or transpose;
the network's own ``normalize`` runs inside the graph. Outputs are the L2-normalized
embedding and one softmax per task, named ``embedding`` and the task names.

We use torch's dynamo exporter (``torch.export``): it folds TensorFlow-style "same" padding
(EfficientNet-Lite) into constant ``Pad`` ops, whereas the TorchScript exporter leaves a
shape-computing subgraph per padded conv that int8 quantization handles badly (embedding
cosine to fp32 0.88 vs 0.99 on EfficientNet-Lite0). It writes opset 18 natively; lower
opsets need a version conversion that fails for ``Pad``, hence ``MIN_OPSET``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from artylyze.export.errors import ExportError
from artylyze.options import DEFAULT_OPSET, MIN_OPSET

EPS = 1e-12  # as torch.nn.functional.normalize


class BundleGraph(nn.Module):
    """uint8 NHWC images -> (unit-norm embedding, softmax per task), in ``task_names`` order.
    A task's fitted temperature divides its logits and its class biases are added first
    (see ``artylyze.train.calibrate``), so the graph's probabilities are the calibrated ones."""

    def __init__(self, model: nn.Module, task_names: Sequence[str],
                 temperatures: dict[str, float] | None = None,
                 biases: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        self.model = model
        self.task_names = tuple(task_names)
        self.temperatures = {t: float((temperatures or {}).get(t, 1.0)) for t in task_names}
        for t in task_names:  # buffers, so the exporter folds them in as constants
            b = (biases or {}).get(t)
            self.register_buffer(f"bias_{t}", torch.tensor(b if b is not None else [0.0]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image.permute(0, 3, 1, 2))
        emb = out["embedding"]
        # Written out instead of F.normalize, whose expand_as becomes shape ops in the graph.
        emb = emb / torch.linalg.vector_norm(emb, dim=1, keepdim=True).clamp_min(EPS)
        return (emb, *(torch.softmax(out[name] / self.temperatures[name]
                                     + getattr(self, f"bias_{name}"), dim=1)
                       for name in self.task_names))


def torch_outputs(graph: BundleGraph, pixels: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
    """The reference: the torch model's outputs for uint8 ``[N, S, S, 3]`` pixels."""
    names = ("embedding", *graph.task_names)
    parts: list[tuple[np.ndarray, ...]] = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch):
            out = graph(torch.from_numpy(np.ascontiguousarray(pixels[i:i + batch])))
            parts.append(tuple(t.numpy() for t in out))
    columns = zip(*parts, strict=True)
    return {name: np.concatenate(cols) for name, cols in zip(names, columns, strict=True)}


def export_onnx(graph: BundleGraph, path: str | Path, input_size: int,
                opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write ``graph`` as a single-file ONNX model with a dynamic batch dimension; check it."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is not supported: the exporter writes opset "
                          f">= {MIN_OPSET}")
    graph.eval()
    example = torch.randint(0, 256, (2, input_size, input_size, 3), dtype=torch.uint8)
    names = ["embedding", *graph.task_names]
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    log = io.StringIO()
    try:
        # The exporter prints its steps; keep them for the error message instead.
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), str(path), input_names=["image"],
                              output_names=names, opset_version=opset, dynamo=True,
                              dynamic_shapes={"image": {0: batch}}, external_data=False)
    except Exception as e:  # the exporter raises many types; all mean "could not export"
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}\n"
                          f"{log.getvalue()[-2000:]}") from e
    model = onnx.load(str(path))
    check_graph(model, input_size, names, opset)
    return model


def check_graph(model: onnx.ModelProto, input_size: int, outputs: Sequence[str],
                opset: int) -> None:
    """onnx.checker plus the bundle contract: names, dtypes, shapes and the opset asked for."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected the exported graph: {e}") from e
    actual = {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")}
    if actual != {opset}:
        raise ExportError(f"asked for opset {opset} but the exporter wrote {sorted(actual)}")
    inputs = [(i.name, i.type.tensor_type.elem_type, _dims(i)) for i in model.graph.input]
    want = [("image", onnx.TensorProto.UINT8, ["batch", input_size, input_size, 3])]
    if inputs != want:
        raise ExportError(f"graph input is {inputs}, expected {want}")
    got = [o.name for o in model.graph.output]
    if got != list(outputs):
        raise ExportError(f"graph outputs are {got}, expected {list(outputs)}")
    for o in model.graph.output:
        if o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or _dims(o)[0] != "batch":
            raise ExportError(f"output {o.name!r} must be float32 [batch, C], got {_dims(o)}")


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
