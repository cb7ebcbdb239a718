"""What training minimizes, and how fast: the masked multi-task loss and the learning-rate
schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from artylyze.train import data


def masked_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                weights: dict[str, torch.Tensor | None], smoothing: float) -> torch.Tensor:
    """Sum over tasks of cross-entropy on the rows whose label is known (others are skipped);
    the year's target is a Gaussian over neighbouring decades, not one class."""
    total = outputs["embedding"].new_zeros(())
    for task, y in targets.items():
        known = y != data.UNKNOWN
        if not known.any():
            continue
        logits = outputs[task][known].float()
        if task == data.YEAR_TASK:
            soft = data.soft_year_targets(y[known], logits.shape[1])
            total = total + F.cross_entropy(logits, soft)
        else:
            total = total + F.cross_entropy(logits, y[known], weight=weights[task],
                                            label_smoothing=smoothing)
    return total


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
