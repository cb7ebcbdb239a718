"""Recover a bundle's fine-tuned network from its ONNX graph, so a new model can start from it.

A bundle keeps no torch checkpoint, only ``model.onnx``, whose exporter folded every batch norm
into the convolution before it (a weight and a ``<name>_bias`` per conv). Loading those into
the torch network with each batch norm set to the identity plus that bias gives the same
function in eval mode, which is what frozen-feature training and warm starts need. The
initializer names are the torch parameter names (``model.backbone.blocks.0.0.conv_dw.weight``),
and every convolution of an EfficientNet is followed by its batch norm in module order.

    python -m artylyze.train.from_bundle artylyze/assets/bundle --out runs/v1-backbone.safetensors
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artylyze.errors import ArtyLyzeError
from artylyze.model.bundle import MODEL_FILE, load_manifest
from artylyze.train.models import MultiTaskNet, build_model, head_layout

PREFIX = "model."


class RecoverError(ArtyLyzeError):
    """The bundle's graph does not hold the weights this network needs."""


def graph_weights(bundle_dir: str | Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(Path(bundle_dir) / MODEL_FILE))
    return {i.name[len(PREFIX):]: numpy_helper.to_array(i) for i in model.graph.initializer
            if i.name.startswith(PREFIX)}


def _conv_bn_pairs(net: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    pairs, pending = [], None
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs.append((*pending, module))
            pending = None
    return pairs


def load_folded(model: MultiTaskNet, weights: dict[str, np.ndarray]) -> None:
    """Copy folded conv weights + biases and the linear layers into ``model`` (in place)."""
    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise RecoverError(f"the graph has no weight {PREFIX + key!r}; was it exported "
                               "from this backbone?")
        return torch.from_numpy(weights[key].copy())

    with torch.no_grad():
        for name, conv, bn in _conv_bn_pairs(model.backbone):
            w = take(f"backbone.{name}.weight")
            if w.shape != conv.weight.shape:
                raise RecoverError(f"backbone.{name}: graph weight {list(w.shape)}, network "
                                   f"{list(conv.weight.shape)}")
            conv.weight.copy_(w)
            bn.weight.fill_(1.0)
            bn.bias.copy_(take(f"backbone.{name}.weight_bias"))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) == x
        for name, param in model.named_parameters():
            if name.startswith(("embed.", "heads.", "feature_heads.")):
                param.copy_(take(name))


def recover(bundle_dir: str | Path) -> MultiTaskNet:
    """The bundle's network in torch, in eval mode, equal to the graph up to float rounding."""
    manifest = load_manifest(bundle_dir)
    tasks, feature_heads = head_layout([t.to_dict() for t in manifest.tasks])
    model = build_model(manifest.backbone, tasks, manifest.embedding_dim, pretrained=False,
                        feature_heads=feature_heads)
    load_folded(model, graph_weights(bundle_dir))
    return model.eval()


def save_backbone(bundle_dir: str | Path, out: str | Path) -> Path:
    """Write the recovered backbone as safetensors, in the backbone's own order, for
    ``artylyze train --weights`` (which loads backbone tensors by position)."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in recover(bundle_dir).backbone.state_dict().items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artylyze.train.from_bundle",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--out", required=True, help="backbone .safetensors to write")
    args = parser.parse_args(argv)
    print(f"wrote {save_backbone(args.bundle, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
