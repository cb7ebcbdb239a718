"""Build a small but real ONNX model bundle without torch, for tests of tagging and indexing.

The graph honours the bundle contract: uint8 ``[N, S, S, 3]`` in, an L2-normalized
``embedding`` and one softmax per task out. Its features are the image's mean colour per
quadrant, so different images really get different predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from artylyze.model.bundle import MODEL_FILE, Manifest, Task, sha256_file, write_manifest

DEFAULT_TASKS = {
    "style": ("Baroque", "Cubism", "Impressionism", "Pop_Art"),
    "genre": ("landscape", "portrait", "still_life"),
}


def make_tiny_bundle(out_dir: str | Path, tasks: dict[str, tuple[str, ...]] | None = None,
                     dim: int = 16, size: int = 32, seed: int = 0,
                     name: str = "tiny") -> Path:
    """Write ``model.onnx`` + ``manifest.json`` into ``out_dir`` and return it."""
    tasks = tasks or DEFAULT_TASKS
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    half = size // 2
    inits = [
        numpy_helper.from_array(rng.normal(size=(12, dim)).astype(np.float32), "w_emb"),
        numpy_helper.from_array(np.array([-1, 12], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([-1, 2, half, 2, half, 3], np.int64), "quad_shape"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "quad_shape"], ["xq"]),
        helper.make_node("ReduceMean", ["xq"], ["m"], axes=[2, 4], keepdims=0),
        helper.make_node("Reshape", ["m", "flat_shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w_emb"], ["h0"]),
        helper.make_node("Sin", ["h0"], ["h"]),
        helper.make_node("ReduceL2", ["h"], ["n"], axes=[1], keepdims=1),
        helper.make_node("Div", ["h", "n"], ["embedding"]),
    ]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])]
    for name_, labels in tasks.items():
        w = rng.normal(scale=3.0, size=(dim, len(labels))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w_{name_}"))
        nodes += [
            helper.make_node("MatMul", ["embedding", f"w_{name_}"], [f"logit_{name_}"]),
            helper.make_node("Softmax", [f"logit_{name_}"], [name_], axis=1),
        ]
        outputs.append(helper.make_tensor_value_info(name_, TensorProto.FLOAT, ["N", len(labels)]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                      ["N", size, size, 3])],
        outputs, initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(out / MODEL_FILE))
    manifest = Manifest(
        name=name, backbone="tiny", input_size=size, resize="stretch",
        tasks=tuple(Task(k, tuple(v)) for k, v in tasks.items()), embedding_dim=dim,
        model_sha256=sha256_file(out / MODEL_FILE),
    )
    write_manifest(out, manifest)
    return out
