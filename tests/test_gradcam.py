"""Grad-CAM on checkpoints: it finds the last feature map of every backbone family, adds a
second map to ``explain --checkpoint``, and points at what a trained net learned to use."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.train.checkpoint import save_checkpoint
from artylyze.train.gradcam import GradCamError, gradcam
from artylyze.train.models import MultiTaskNet, build_model

SIZE = 192  # cnn3 divides by 64: a 3 x 3 last feature map
GRID = 3
CELL = SIZE // GRID


def tiny_checkpoint(path, model: MultiTaskNet, size: int = SIZE):
    config = {"backbone": "cnn3", "embedding_dim": 8, "input_size": size, "resize": "stretch",
              "name": "cnn3-test",
              "tasks": [{"name": "style", "labels": ["red", "blue"]},
                        {"name": "genre", "labels": ["x", "y", "z"]}]}
    return save_checkpoint(path, model, config)


def squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey noisy canvases, each with one red (class 0) or blue (class 1) square in a random
    cell of a 3 x 3 grid; returns images, classes and the square's cell (row, col)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(128, 12, size=(n, SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
    classes = rng.integers(0, 2, n)
    cells = rng.integers(0, GRID, size=(n, 2))
    for img, c, (r, q) in zip(images, classes, cells, strict=True):
        img[r * CELL:(r + 1) * CELL, q * CELL:(q + 1) * CELL] = (220, 30, 30) if c == 0 \
            else (30, 30, 220)
    return images, classes, cells


def test_gradcam_finds_the_feature_map_of_each_backbone_family():
    torch.manual_seed(0)
    pixels = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    for name in ("cnn3", "efficientnet_lite0", "efficientnet_lite0_texture",
                 "mobilenet_v3_small"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision nets warn that they start from scratch
            model = build_model(name, {"style": 3, "genre": 2}, embedding_dim=8,
                                pretrained=False)
        maps = gradcam(model, pixels, [("style", 1), ("genre", 0)])
        assert [m.shape for m in maps] == [(224, 224)] * 2, name
        assert all(np.isfinite(m).all() and (m >= 0).all() for m in maps), name
        np.testing.assert_array_equal(maps[0], gradcam(model, pixels, [("style", 1)])[0])


def test_a_backbone_without_a_feature_map_is_a_clear_error():
    model = build_model("cnn3", {"style": 2}, embedding_dim=4, pretrained=False)
    model.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(128))
    with pytest.raises(GradCamError, match="cannot find the last feature map"):
        gradcam(model, np.zeros((64, 64, 3), np.uint8), [("style", 0)])


def test_explain_with_a_checkpoint_draws_both_maps(tmp_path):
    torch.manual_seed(0)
    model = build_model("cnn3", {"style": 2, "genre": 3}, embedding_dim=8, pretrained=False)
    ckpt = tiny_checkpoint(tmp_path / "ck", model)
    images, _, _ = squares(1, seed=0)
    Image.fromarray(images[0]).save(tmp_path / "sq.png")
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "sq.png"), "--checkpoint",
                                      str(ckpt), "--json", "--masks", "8", "--task", "all",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)[0]["explained"]
    assert [t["task"] for t in done] == ["style", "genre"]
    assert set(done[0]["maps"]) == {"rise", "gradcam"}
    both = CliRunner().invoke(app, ["explain", str(tmp_path / "sq.png"), "--checkpoint",
                                    str(ckpt), "--model", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output


@pytest.mark.slow
def test_gradcam_of_a_trained_net_points_at_the_square():
    torch.manual_seed(0)
    model = build_model("cnn3", {"style": 2}, embedding_dim=8, pretrained=False)
    images, classes, _ = squares(64, seed=1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(classes)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        i = torch.from_numpy(np.random.default_rng(step).choice(len(x), 24, replace=False))
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x[i])["style"], y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test, test_classes, cells = squares(24, seed=2)
    with torch.no_grad():
        pred = model(torch.from_numpy(test).permute(0, 3, 1, 2).float())["style"].argmax(1)
    assert (pred.numpy() == test_classes).mean() >= 0.9
    hits = 0
    for img, c, (r, q) in zip(test, test_classes, cells, strict=True):
        cam = gradcam(model, img, [("style", int(c))])[0]
        per_cell = cam.reshape(GRID, CELL, GRID, CELL).sum(axis=(1, 3))
        hits += np.unravel_index(int(per_cell.argmax()), (GRID, GRID)) == (r, q)
    assert hits / len(test) >= 0.75, hits
