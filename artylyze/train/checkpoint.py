"""Checkpoints as safetensors + JSON (no pickle), written atomically.

A checkpoint directory holds ``model.safetensors``, ``checkpoint.json`` (the config needed to
rebuild the network, the labels of every task, metrics and history) and, for resuming,
``optimizer.safetensors`` with the optimizer's tensors and the RNG state, plus
``online.safetensors`` when ``model.safetensors`` holds averaged weights (the online weights
are what training continues from).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from artylyze.atomic import staged_dir, swap_in_dir
from artylyze.errors import ArtyLyzeError
from artylyze.train.models import MultiTaskNet, build_model, head_layout

CONFIG_FILE = "checkpoint.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
ONLINE_FILE = "online.safetensors"


class CheckpointError(ArtyLyzeError):
    """A checkpoint directory is missing files or does not fit its config."""


def save_checkpoint(out_dir: str | Path, model: MultiTaskNet, config: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None,
                    online: MultiTaskNet | None = None) -> Path:
    """Write into a temp directory, then swap it in, so a crash never leaves half a checkpoint."""
    out = Path(out_dir)
    tmp = staged_dir(out)  # where recover_dir finds a complete one after a crash
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_weights(model), str(tmp / WEIGHTS_FILE))
    if online is not None:
        save_file(_weights(online), str(tmp / ONLINE_FILE))
    if optimizer is not None:
        save_file(_optimizer_tensors(optimizer), str(tmp / OPTIMIZER_FILE))
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    swap_in_dir(out)
    return out


def _weights(model: MultiTaskNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{i}.{key}"] = t.contiguous()
    return tensors


def load_optimizer(ckpt_dir: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore optimizer moments and the torch RNG saved by :func:`save_checkpoint`."""
    tensors = load_file(str(Path(ckpt_dir) / OPTIMIZER_FILE))
    torch.set_rng_state(tensors.pop("rng.torch"))
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, i, key = name.split(".", 2)
        state.setdefault(int(i), {})[key] = value
    sd["state"] = state
    optimizer.load_state_dict(sd)


def read_config(ckpt_dir: str | Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir}: no {CONFIG_FILE}; is it a checkpoint directory?")
    return json.loads(path.read_text())


def load_checkpoint(ckpt_dir: str | Path) -> tuple[MultiTaskNet, dict[str, Any]]:
    """Rebuild the network from its config and load its weights (eval mode)."""
    config = read_config(ckpt_dir)
    tasks, feature_heads = head_layout(config["tasks"])
    model = build_model(config["backbone"], tasks, config["embedding_dim"], pretrained=False,
                        feature_heads=feature_heads)
    load_weights(model, ckpt_dir)
    return model.eval(), config


def load_weights(model: MultiTaskNet, ckpt_dir: str | Path, name: str = WEIGHTS_FILE) -> None:
    """Load the weights file ``name`` of a checkpoint into ``model``, with a clear error."""
    weights = Path(ckpt_dir) / name
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise CheckpointError(f"{weights} does not fit its config: {e}") from e
