"""onnxruntime sessions as the bundle runs them, for parity, evaluation and timing."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from artylyze.bundle import usable_cores


def open_session(model: str | os.PathLike[str], threads: int | None = None):
    """A CPU session with the optimizations and thread settings :class:`Bundle` uses."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or usable_cores()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # quantized graphs warn about unused initializers
    return ort.InferenceSession(str(model), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def run(session, pixels: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Outputs ``names`` for one uint8 ``[N, S, S, 3]`` batch."""
    outputs = session.run(list(names), {"image": pixels})
    return dict(zip(names, outputs, strict=True))
