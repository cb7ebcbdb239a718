"""onnxruntime sessions as the bundle runs them, for parity, evaluation and timing."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from artylyze.model import runtime


def open_session(model: str | os.PathLike[str], threads: int | None = None):
    """A CPU session as :class:`~artylyze.model.bundle.Bundle` opens one, without warnings."""
    return runtime.open_session(model, "cpu", threads, quiet=True)


def run(session, pixels: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Outputs ``names`` for one uint8 ``[N, S, S, 3]`` batch."""
    outputs = session.run(list(names), {"image": pixels})
    return dict(zip(names, outputs, strict=True))
