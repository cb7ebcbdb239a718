"""Grad-CAM (Selvaraju et al. 2017) on the last feature map of a checkpoint's backbone (torch).

The map is the feature map of the last convolutional block, its channels weighted by the
mean gradient of the class logit, summed, cut at zero and upsampled to the input: where the
features that raise the label's score sit. It needs the checkpoint (gradients); an ONNX
bundle is explained by :mod:`artylyze.explain.saliency` instead. One backward pass per target.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artylyze.errors import ArtyLyzeError
from artylyze.train.data import to_tensor
from artylyze.train.models import MultiTaskNet


class GradCamError(ArtyLyzeError):
    """The backbone has no spatial feature map that Grad-CAM can use."""


def _feature_map(backbone: nn.Module) -> nn.Module:
    """The module whose output is the backbone's last feature map: ``bn2`` of timm's
    EfficientNets (and of the texture backbone, whose statistics of earlier blocks then enter
    the head unchanged); the layer before the global pool of ArtyLyze's torchvision and cnn3
    Sequentials."""
    if isinstance(getattr(backbone, "bn2", None), nn.Module):
        return backbone.bn2
    if isinstance(backbone, nn.Sequential):
        for i, layer in enumerate(backbone):
            if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and i > 0:
                return backbone[i - 1]
    raise GradCamError(f"Grad-CAM cannot find the last feature map of a "
                       f"{type(backbone).__name__} backbone")


def gradcam(model: MultiTaskNet, pixels: np.ndarray,
            targets: list[tuple[str, int]]) -> list[np.ndarray]:
    """One Grad-CAM map [S, S] (non-negative, float32) per ``(task, class)`` target of one
    uint8 [S, S, 3] image, in the model's input pixels."""
    seen: list[torch.Tensor] = []
    hook = _feature_map(model.backbone).register_forward_hook(lambda m, i, o: seen.append(o))
    model.eval()
    x = model.normalize(to_tensor(pixels[None]))
    with torch.enable_grad():
        try:
            out = model.from_features(model.backbone(x))
        finally:
            hook.remove()
        fmap = seen[-1]
        if fmap.ndim != 4:
            raise GradCamError(f"the last feature map has shape {list(fmap.shape)}, not "
                               "[N, C, H, W]")
        maps = []
        for task, cls in targets:
            (grad,) = torch.autograd.grad(out[task][0, cls], fmap, retain_graph=True)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * fmap).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=pixels.shape[:2], mode="bilinear", align_corners=False)
            maps.append(cam[0, 0].detach().numpy().astype(np.float32))
    return maps
