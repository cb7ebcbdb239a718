"""onnxruntime sessions, made one way for tagging, serving, explaining and export checks.

Every session ArtyLyze opens comes from :func:`open_session`, so thread counts, spinning
and graph optimizations cannot differ between the path that checks a bundle (export
parity, int8 timing) and the path that tags with it.
"""

from __future__ import annotations

import os
from typing import Any

from artylyze.model.manifest import BundleError

SPIN_OFF = ("session.intra_op.allow_spinning", "0")
QUIET = 3  # onnxruntime's ERROR level: quantized graphs warn about unused initializers


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(device: str) -> list[str]:
    """Map ``cpu`` / ``cuda`` / ``auto`` to onnxruntime execution providers."""
    device = device.lower()
    have = available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in have:
            raise BundleError("--device cuda asked, but onnxruntime has no CUDA provider "
                              f"(available: {have}); install artylyze[gpu] on a GPU machine")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in have:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    raise BundleError(f"unknown device {device!r}; expected cpu, cuda or auto")


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def open_session(model: str | os.PathLike[str], device: str = "cpu",
                 threads: int | None = None, *, spin: bool = True, quiet: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``device`` with ``threads`` intra-op threads
    (default: the usable cores) and one inter-op thread. ``spin=False`` keeps idle threads
    from busy-waiting, for when other work shares the cores (see ``engine.plan_threads``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or usable_cores()
    opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry(*SPIN_OFF)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if quiet:
        opts.log_severity_level = QUIET
    return ort.InferenceSession(str(model), sess_options=opts,
                                providers=resolve_providers(device))
